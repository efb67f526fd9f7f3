"""The reference profile: a compact summary of the training features for drift checks.

The trainer calls ``build_reference_profile`` on the training features and stores the
result as ``metadata["profile"]``; the drift checker (``mlkube.runtime.drift``) compares
live windows against it without ever reading the training data again. It must therefore
hold enough for every drift test the checker offers, yet stay small and cheap:

- numeric: quantile bin edges (PSI, Jensen-Shannon, chi² on bins, histograms against which
  live chunks are counted), moments and range (Wasserstein normalisation by the reference
  standard deviation, ddof 0 as Evidently uses), and a seeded sample of at most
  ``sample_size`` non-missing values (KS and Wasserstein need values, not bins). When the
  reference has no more rows than the sample holds, the sample *is* the column, so the
  small-reference defaults (KS p-values) are exact.
- categorical: counts of at most ``max_categories`` categories (most frequent first), the
  remainder pooled in ``otherCount``, and the missing count.

Bins are ``(-inf, e0], (e0, e1], ..., (e_last, +inf)`` (``numpy.searchsorted(edges, x,
side="left")`` gives the bin index), so the open ends catch live values outside the
training range. Categories are compared as strings produced by ``category_keys`` on both
sides, so ``1``, ``1.0`` and ``"1"`` are the same category and JSON round trips are safe.

The document is plain JSON (``format`` = ``mlkube.profile/v1``); cost is one quantile pass
and one value count per column, about a second for 100k rows x 60 features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NotRequired, TypedDict

import numpy as np

from mlkube.runtime.artifact import FeatureSchema

if TYPE_CHECKING:
    import pandas as pd

PROFILE_FORMAT: Final = "mlkube.profile/v1"
DEFAULT_BINS: Final = 20
DEFAULT_SAMPLE_SIZE: Final = 5000
DEFAULT_MAX_CATEGORIES: Final = 200
DEFAULT_SEED: Final = 20240601


class ProfileError(ValueError):
    """The profile cannot be built or read; the message says which feature and why."""


class NumericProfile(TypedDict):
    kind: Literal["numeric"]
    count: int  # non-missing values
    missing: int
    mean: float | None
    std: float | None  # population (ddof 0)
    min: float | None
    max: float | None
    binEdges: list[float]  # inner edges, strictly increasing; len(binCounts) == len + 1
    binCounts: list[int]
    sample: list[float]  # seeded, without replacement, non-missing values only
    # distinct non-missing values: exact when the quantile edges are few (< 6), otherwise a
    # lower bound (> 5); the drift checker only asks whether there are at most five.
    distinct: int


class CategoricalProfile(TypedDict):
    kind: Literal["categorical"]
    count: int
    missing: int
    frequencies: dict[str, int]  # most frequent first, at most maxCategories entries
    otherCount: int  # non-missing values of categories beyond the kept ones
    distinct: NotRequired[int]


FeatureProfile = NumericProfile | CategoricalProfile


class ReferenceProfile(TypedDict):
    format: str
    rows: int
    sourceRows: NotRequired[int]
    """Training rows the profiled ``rows`` were sampled from (absent: all of them)."""
    bins: int
    sampleSize: int
    maxCategories: int
    seed: int
    features: dict[str, FeatureProfile]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def numeric_values(series: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The column as float64 with missing (and unparseable) values as NaN; bools as 0/1."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return np.array(series.astype("float64").to_numpy(na_value=np.nan), dtype=np.float64)
    converted = pd.to_numeric(series, errors="coerce")
    values = np.array(converted.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return values


def category_keys(series: pd.Series[Any]) -> pd.Series[Any]:
    """Category labels as strings, missing kept as missing; integral floats lose ``.0``.

    Both the profile and the live window go through this, so a category read from CSV as
    ``1``, from Parquet as ``1.0`` and from JSON as ``"1"`` counts as one category.
    """
    import pandas as pd

    mask = series.isna()
    if pd.api.types.is_bool_dtype(series.dtype):
        keys = series.map({True: "True", False: "False"})
    elif pd.api.types.is_integer_dtype(series.dtype):
        keys = series.astype("Int64").astype(str)
    elif pd.api.types.is_float_dtype(series.dtype):
        keys = series.map(_float_key)
    else:
        keys = series.map(category_key)
    return keys.astype(object).where(~mask, None)


def _float_key(value: float) -> str | None:
    if math.isnan(value):
        return None
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def category_key(value: Any) -> str | None:
    """One label as ``category_keys`` spells it (None for missing)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating):
        return _float_key(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def quantile_edges(values: np.ndarray[Any, np.dtype[np.float64]], bins: int) -> list[float]:
    """Inner edges at the 1/bins ... (bins-1)/bins quantiles, deduplicated (discrete data).

    ``values`` must be sorted; the interpolation is numpy.quantile's default ("linear").
    """
    if values.size == 0 or bins < 2:
        return []
    position = np.linspace(0.0, 1.0, bins + 1)[1:-1] * (values.size - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, values.size - 1)
    fraction = position - below
    quantiles = values[below] + (values[above] - values[below]) * fraction
    return [float(edge) for edge in np.unique(quantiles)]


def _distinct(sorted_values: np.ndarray[Any, np.dtype[np.float64]], edges: list[float]) -> int:
    if len(edges) >= 6:
        return len(edges) + 1
    return int(np.count_nonzero(np.diff(sorted_values)) + 1) if sorted_values.size else 0


def _numeric_profile(
    values: np.ndarray[Any, np.dtype[np.float64]],
    bins: int,
    sample_size: int,
    rng: np.random.Generator,
) -> NumericProfile:
    present = np.sort(values[~np.isnan(values)])
    edges = quantile_edges(present, bins)
    # one sort serves quantiles, bin counts (x <= edge, closed right) and distinct values
    at_or_below = np.searchsorted(present, np.asarray(edges), side="right")
    counts = np.diff(np.concatenate([[0], at_or_below, [present.size]]))
    if present.size > sample_size:
        sample = present[np.sort(rng.choice(present.size, size=sample_size, replace=False))]
    else:
        sample = present
    empty = present.size == 0
    return NumericProfile(
        kind="numeric",
        count=int(present.size),
        missing=int(values.size - present.size),
        mean=None if empty else _finite_or_none(float(present.mean())),
        std=None if empty else _finite_or_none(float(present.std())),
        min=None if empty else float(present.min()),
        max=None if empty else float(present.max()),
        binEdges=edges,
        binCounts=[int(c) for c in counts],
        sample=[float(v) for v in sample],
        distinct=_distinct(present, edges),
    )


def _categorical_profile(series: pd.Series[Any], max_categories: int) -> CategoricalProfile:
    import pandas as pd

    raw = series.value_counts(dropna=True)
    labels = category_keys(pd.Series(raw.index, dtype=object))
    counts = (
        pd.Series(raw.to_numpy(), index=labels.to_numpy())
        .groupby(level=0, sort=False)
        .sum()
        .sort_values(ascending=False, kind="stable")
    )
    kept = counts.iloc[:max_categories]
    present = int(counts.sum())
    return CategoricalProfile(
        kind="categorical",
        count=present,
        missing=int(len(series) - present),
        frequencies={str(k): int(v) for k, v in kept.items()},
        otherCount=int(present - kept.sum()),
        distinct=len(counts),
    )


def build_reference_profile(
    frame: pd.DataFrame,
    features: Sequence[FeatureSchema],
    *,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    seed: int = DEFAULT_SEED,
    source_rows: int | None = None,
) -> dict[str, Any]:
    """Summarises ``frame``'s ``features`` (training rows) as a JSON-serialisable profile.

    Deterministic for a given frame and seed. Raises ``ProfileError`` when a feature in
    the schema is not a column of ``frame``.
    """
    missing = [f["name"] for f in features if f["name"] not in frame.columns]
    if missing:
        raise ProfileError(f"features not in the training data: {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    profiles: dict[str, FeatureProfile] = {}
    for feature in features:
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            profiles[feature["name"]] = _numeric_profile(
                numeric_values(column), bins, sample_size, rng
            )
        else:
            profiles[feature["name"]] = _categorical_profile(column, max_categories)
    profile = ReferenceProfile(
        format=PROFILE_FORMAT,
        rows=len(frame),
        bins=bins,
        sampleSize=sample_size,
        maxCategories=max_categories,
        seed=seed,
        features=profiles,
    )
    if source_rows is not None and source_rows > len(frame):
        profile["sourceRows"] = source_rows
    return dict(profile)


def describe_rows(profile: ReferenceProfile) -> str:
    """Where the profile's rows come from, for a report: they are often not all the data."""
    rows, sample = profile["rows"], profile["sampleSize"]
    source = profile.get("sourceRows")
    text = (
        f"a seeded sample of {source} training rows (the trainer profiles at most "
        "MLKUBE_PROFILE_SAMPLE_ROWS rows, so its cost stays flat)"
        if source
        else "all training rows"
    )
    if rows > sample:
        text += f"; KS and Wasserstein use {sample} sampled values per feature"
    return text


def read_reference_profile(raw: Any) -> ReferenceProfile:
    """Checks the shape of a stored profile (``metadata["profile"]``) before it is used."""
    if not isinstance(raw, dict) or raw.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"the reference profile is missing or not an {PROFILE_FORMAT} document")
    features = raw.get("features")
    if not isinstance(features, dict) or not isinstance(raw.get("rows"), int):
        raise ProfileError("the reference profile has no features or no row count")
    for name, feature in features.items():
        kind = feature.get("kind") if isinstance(feature, dict) else None
        if kind == "numeric":
            edges = feature.get("binEdges")
            counts = feature.get("binCounts")
            if not (
                isinstance(edges, list)
                and isinstance(counts, list)
                and len(counts) == len(edges) + 1
                and isinstance(feature.get("sample"), list)
            ):
                raise ProfileError(f"reference profile of numeric feature {name!r} is malformed")
        elif kind == "categorical":
            if not isinstance(feature.get("frequencies"), dict):
                raise ProfileError(
                    f"reference profile of categorical feature {name!r} is malformed"
                )
        else:
            raise ProfileError(f"reference profile of feature {name!r} has unknown kind {kind!r}")
    return raw  # type: ignore[return-value]


# The holdout predictions of a version, profiled like one feature: prediction drift
# compares the logged outputs with them (see ``drift.outputs``).
PREDICTION_PROFILE: Final = "predictionProfile"
PREDICTION_FEATURE: Final = "prediction"


def prediction_profile(predictions: Any, task: str) -> dict[str, Any]:
    """The reference profile of a version's holdout predictions (feature ``prediction``)."""
    import pandas as pd

    kind: Literal["numeric", "categorical"] = (
        "categorical" if task == "classification" else "numeric"
    )
    feature: FeatureSchema = {
        "name": PREDICTION_FEATURE,
        "kind": kind,
        "dtype": "string" if kind == "categorical" else "float64",
        "nullable": False,
    }
    frame = pd.DataFrame({PREDICTION_FEATURE: np.asarray(predictions)})
    return build_reference_profile(frame, [feature])

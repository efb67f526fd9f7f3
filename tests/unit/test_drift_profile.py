"""The reference profile: bins, counts, moments, bounded seeded sample, categories, JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from mlkube.runtime.artifact import FeatureSchema
from mlkube.runtime.profile import (
    PROFILE_FORMAT,
    ProfileError,
    build_reference_profile,
    category_keys,
    read_reference_profile,
)


def _schema(frame: pd.DataFrame, categorical: set[str]) -> list[FeatureSchema]:
    return [
        FeatureSchema(
            name=str(c),
            kind="categorical" if c in categorical else "numeric",
            dtype="string" if c in categorical else "float64",
            nullable=True,
        )
        for c in frame.columns
    ]


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 12_000
    data = pd.DataFrame(
        {
            "x": rng.normal(3.0, 2.0, n),
            "k": rng.integers(0, 4, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    data.loc[:99, "x"] = np.nan
    data.loc[:9, "c"] = None
    return data


def test_numeric_profile_holds_bins_counts_moments_and_a_bounded_sample(
    frame: pd.DataFrame,
) -> None:
    profile = build_reference_profile(frame, _schema(frame, {"c"}), sample_size=1000)
    x = profile["features"]["x"]
    present = frame["x"].dropna().to_numpy()
    assert profile["format"] == PROFILE_FORMAT and profile["rows"] == len(frame)
    assert x["count"] == present.size and x["missing"] == 100
    assert x["mean"] == pytest.approx(present.mean())
    assert x["std"] == pytest.approx(present.std(ddof=0))
    assert (x["min"], x["max"]) == (present.min(), present.max())
    assert len(x["binEdges"]) == 19 and np.all(np.diff(x["binEdges"]) > 0)
    expected = np.histogram(present, bins=[-np.inf, *x["binEdges"], np.inf])[0]
    # numpy.histogram closes bins on the left, ours on the right; continuous data agrees
    assert sum(x["binCounts"]) == present.size
    assert np.abs(np.asarray(x["binCounts"]) - expected).max() <= 1
    assert len(x["sample"]) == 1000 and set(x["sample"]) <= set(present.tolist())


def test_discrete_numeric_feature_gets_deduplicated_edges(frame: pd.DataFrame) -> None:
    k = build_reference_profile(frame, _schema(frame, {"c"}))["features"]["k"]
    assert k["binEdges"] == [0.0, 1.0, 2.0, 3.0]
    assert k["binCounts"] == [*np.bincount(frame["k"]).tolist(), 0]


def test_small_reference_keeps_every_value_in_the_sample() -> None:
    iris = load_iris(as_frame=True).data
    profile = build_reference_profile(iris, _schema(iris, set()))
    for name in iris.columns:
        assert sorted(profile["features"][name]["sample"]) == sorted(iris[name].tolist())


def test_categorical_profile_bounds_categories_and_pools_the_rest(frame: pd.DataFrame) -> None:
    profile = build_reference_profile(frame, _schema(frame, {"c"}), max_categories=2)
    c = profile["features"]["c"]
    counts = frame["c"].value_counts()
    assert c["frequencies"] == {"a": counts["a"], "b": counts["b"]}
    assert c["otherCount"] == counts["c"] and c["missing"] == 10 and c["distinct"] == 3
    assert list(c["frequencies"]) == ["a", "b"]


def test_profile_is_deterministic_and_survives_a_json_round_trip(frame: pd.DataFrame) -> None:
    schema = _schema(frame, {"c"})
    first = build_reference_profile(frame, schema, sample_size=500)
    second = build_reference_profile(frame, schema, sample_size=500)
    text = json.dumps(first, allow_nan=False)
    assert json.loads(text) == first == second
    assert read_reference_profile(json.loads(text))["rows"] == len(frame)


def test_all_missing_numeric_column_profiles_without_error() -> None:
    data = pd.DataFrame({"x": [np.nan] * 5, "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    x = build_reference_profile(data, _schema(data, set()))["features"]["x"]
    assert x["count"] == 0 and x["missing"] == 5 and x["mean"] is None
    assert x["binEdges"] == [] and x["binCounts"] == [0] and x["sample"] == []


def test_category_keys_unify_ints_floats_strings_and_bools() -> None:
    assert category_keys(pd.Series([1, 2])).tolist() == ["1", "2"]
    assert category_keys(pd.Series([1.0, np.nan, 2.5])).tolist() == ["1", None, "2.5"]
    assert category_keys(pd.Series(["1", None, True], dtype=object)).tolist() == ["1", None, "True"]
    assert category_keys(pd.Series([True, False])).tolist() == ["True", "False"]


def test_missing_feature_and_malformed_profiles_are_refused(frame: pd.DataFrame) -> None:
    schema = [
        *_schema(frame, {"c"}),
        FeatureSchema(name="z", kind="numeric", dtype="float64", nullable=False),
    ]
    with pytest.raises(ProfileError, match="z"):
        build_reference_profile(frame, schema)
    bad: list[Any] = [
        None,
        {"format": "other"},
        {
            "format": PROFILE_FORMAT,
            "rows": 1,
            "features": {"x": {"kind": "numeric", "binEdges": [1.0], "binCounts": []}},
        },
    ]
    for raw in bad:
        with pytest.raises(ProfileError):
            read_reference_profile(raw)


def test_profile_of_100k_by_60_is_small(frame: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(100_000, 50)), columns=[f"n{i}" for i in range(50)])
    for i in range(10):
        wide[f"c{i}"] = rng.choice(list("abcdefgh"), 100_000)
    profile = build_reference_profile(wide, _schema(wide, {f"c{i}" for i in range(10)}))
    size = len(json.dumps(profile))
    assert size < 50 * 5000 * 25 + 100_000
    assert all(len(profile["features"][f"n{i}"]["sample"]) == 5000 for i in range(50))


def test_the_profile_says_where_its_rows_come_from() -> None:
    """A trainer profile of a sample says so, with the training rows it came from."""
    from mlkube.runtime.profile import (
        build_reference_profile,
        describe_rows,
        read_reference_profile,
    )

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=3000)})
    features = [FeatureSchema(name="x", kind="numeric", dtype="float64", nullable=False)]
    whole = read_reference_profile(build_reference_profile(frame, features, sample_size=1000))
    assert describe_rows(whole) == (
        "all training rows; KS and Wasserstein use 1000 sampled values per feature"
    )
    sampled = read_reference_profile(build_reference_profile(frame, features, source_rows=90_000))
    assert sampled["sourceRows"] == 90_000
    assert describe_rows(sampled).startswith("a seeded sample of 90000 training rows")
    assert "MLKUBE_PROFILE_SAMPLE_ROWS" in describe_rows(sampled)

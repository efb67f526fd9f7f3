"""The data-quality gate that runs before any fitting.

A model fitted on the wrong columns, on a handful of rows, on mostly-missing columns or
on a constant target is worse than no model: it would pass through to serving with a
misleading score. So each check fails the run with the offending columns named, and
cheaply (one ``isna`` pass over the frame), before the expensive fit.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import pandas as pd

from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.spec import DataSpec, QualitySpec, Task

_MAX_LISTED = 8


@dataclass(frozen=True)
class CheckedData:
    """The frame restricted to features + target, rows with a missing target dropped."""

    frame: pd.DataFrame
    features: list[str]
    target: str
    dropped_rows: int


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def unknown_column_message(missing: list[str], columns: list[str]) -> str:
    """ "column 'agee' (did you mean 'age'?)" style text for a list of absent columns."""
    parts = []
    for name in missing[:_MAX_LISTED]:
        close = difflib.get_close_matches(name, columns, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = len(missing) - _MAX_LISTED
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _check_missing(frame: pd.DataFrame, max_fraction: float) -> None:
    """Every column's missing share within ``max_fraction``, or one error naming each.

    numpy, not a Series mask: with text column labels that mask runs through
    pyarrow.compute, whose first use alone costs ~1 s of a training run (issue 16)."""
    missing_share = frame.isna().to_numpy().mean(axis=0)
    over = [
        (name, share)
        for name, share in zip(frame.columns, missing_share, strict=True)
        if share > max_fraction
    ]
    if over:
        described = [f"{name} ({share:.1%} missing)" for name, share in over]
        raise TrainingInputError(
            f"columns over dataQuality.maxMissingFraction={max_fraction:g}: " + _listing(described)
        )


def check_quality(
    frame: pd.DataFrame, data: DataSpec, quality: QualitySpec, task: Task
) -> CheckedData:
    """Applies the gate; raises ``TrainingInputError`` listing every offending column."""
    columns = [str(c) for c in frame.columns]
    frame.columns = pd.Index(columns)
    if data.target not in columns:
        raise TrainingInputError(
            f"target column {unknown_column_message([data.target], columns)} is not in the data "
            f"(columns: {_listing(columns)})"
        )
    features = list(data.features) if data.features else [c for c in columns if c != data.target]
    absent = [f for f in features if f not in columns]
    if absent:
        raise TrainingInputError(
            f"feature columns not in the data: {unknown_column_message(absent, columns)}"
        )
    if not features:
        raise TrainingInputError("the data has no feature columns besides the target")
    frame = frame[[*features, data.target]]
    if len(frame) < quality.min_rows:
        raise TrainingInputError(
            f"the data has {len(frame)} rows, fewer than dataQuality.minRows={quality.min_rows}"
        )
    _check_missing(frame, quality.max_missing_fraction)
    target = frame[data.target]
    keep = target.notna()
    dropped = int((~keep).sum())
    if dropped:
        frame = frame[keep]
        target = frame[data.target]
        if len(frame) < quality.min_rows:
            raise TrainingInputError(
                f"the data has {len(frame)} rows with a target, "
                f"fewer than dataQuality.minRows={quality.min_rows}"
            )
    if target.nunique() < 2:
        value = target.iloc[0] if len(target) else None
        raise TrainingInputError(f"target column {data.target!r} is constant ({value!r})")
    if task == "regression" and not pd.api.types.is_numeric_dtype(target.dtype):
        raise TrainingInputError(
            f"target column {data.target!r} is not numeric ({target.dtype}); "
            "a regression needs a numeric target"
        )
    if task == "classification":
        counts = target.value_counts()
        if len(counts) > max(50, len(frame) // 2):
            raise TrainingInputError(
                f"target column {data.target!r} has {len(counts)} distinct values in "
                f"{len(frame)} rows; is this a regression?"
            )
    return CheckedData(frame=frame, features=features, target=data.target, dropped_rows=dropped)

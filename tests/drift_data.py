"""Seeded synthetic reference/live data with a known set of shifted features, and a helper
that stores a real (tiny) model version with its reference profile, as the trainer does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlkube.runtime.artifact import FeatureSchema, Metadata, write_version
from mlkube.runtime.profile import build_reference_profile

NUMERIC = 45
CATEGORICAL = 15
MEAN_SHIFTED = [f"n{i}" for i in (1, 7, 13, 22, 30)]
SCALE_CHANGED = [f"n{i}" for i in (3, 11, 19, 27, 40)]
FREQUENCY_CHANGED = [f"c{i}" for i in (0, 4, 9, 14)]
SHIFTED = set(MEAN_SHIFTED + SCALE_CHANGED + FREQUENCY_CHANGED)
LEVELS = ["red", "green", "blue", "amber", "violet"]
BASE_SHARES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
MOVED_SHARES = np.array([0.2, 0.25, 0.3, 0.12, 0.13])


def _numeric_column(i: int, rng: np.random.Generator, n: int, shift: float, scale: float) -> Any:
    """A mix of shapes: normal, lognormal, uniform, and a small-integer count."""
    shape = i % 4
    if shape == 0:
        return rng.normal(10.0 + shift * 2.0, 2.0 * scale, n)
    if shape == 1:
        return np.exp(rng.normal(0.0 + shift * 0.5, 0.5 * scale, n))
    if shape == 2:
        half = 5.0 * scale
        centre = 5.0 + shift * 10.0 / np.sqrt(12.0)
        return rng.uniform(centre - half, centre + half, n)
    return rng.poisson(20.0 + shift * np.sqrt(20.0), n).astype(np.float64) * scale


def synthetic_frame(rows: int, seed: int, *, drifted: bool) -> pd.DataFrame:
    """60 features; with ``drifted`` the ``SHIFTED`` ones move (0.6 sd means, 1.6x scales,
    category shares), the others keep their distribution."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(NUMERIC):
        name = f"n{i}"
        shift = 0.6 if drifted and name in MEAN_SHIFTED else 0.0
        scale = 1.6 if drifted and name in SCALE_CHANGED else 1.0
        columns[name] = _numeric_column(i, rng, rows, shift, scale)
    for i in range(CATEGORICAL):
        name = f"c{i}"
        shares = MOVED_SHARES if drifted and name in FREQUENCY_CHANGED else BASE_SHARES
        columns[name] = rng.choice(LEVELS, rows, p=shares)
    return pd.DataFrame(columns)


def schema_of(frame: pd.DataFrame) -> list[FeatureSchema]:
    return [
        FeatureSchema(name=str(c), kind="categorical", dtype="string", nullable=True)
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype)
        else FeatureSchema(name=str(c), kind="numeric", dtype="float64", nullable=True)
        for c in frame.columns
    ]


def store_version(
    store: Path,
    reference: pd.DataFrame,
    *,
    name: str = "churn",
    namespace: str = "default",
    version: int = 1,
) -> Path:
    """Fits a tiny pipeline on a slice of ``reference`` and writes a version with its profile."""
    features = schema_of(reference)
    categorical = [f["name"] for f in features if f["kind"] == "categorical"]
    head = reference.head(200).fillna(0) if not categorical else reference.head(200)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="ignore"), categorical)],
                    remainder="passthrough",
                ),
            ),
            ("model", LinearRegression()),
        ]
    )
    numeric_head = head.drop(columns=categorical).fillna(0.0)
    pipeline.fit(
        pd.concat([numeric_head, head[categorical]], axis=1), np.arange(len(head), dtype=float)
    )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "version": version,
        "task": "regression",
        "estimator": {"class": "sklearn.linear_model.LinearRegression", "params": {}},
        "features": features,
        "target": {"name": "y"},
        "metric": "r2",
        "score": 0.0,
        "metrics": {},
        "slices": [],
        "profile": build_reference_profile(reference, features),
        "data": {"rows": len(reference)},
        "lineage": {"trigger": "initial"},
        "libraries": {},
        "trainedAt": "2024-06-01T00:00:00Z",
        "durationSeconds": 0.0,
    }
    target = store / namespace / name / f"v{version}"
    written: Metadata = write_version(target, pipeline, metadata)
    assert written["version"] == version
    return target

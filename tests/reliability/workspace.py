"""A real model store to break: one version trained by ``mlkube train`` itself.

The reference version is trained once (in-process, through the real CLI) on a small
churn-like table with numeric and categorical features, so its ``metadata.json``,
profile and artifact are exactly what the trainer writes. Each corpus case then works on
its own copy of that store, breaks one thing, and the runner compares the store tree
before and after the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL = "churn"
NAMESPACE = "default"
FEATURES = ("age", "income", "region", "plan")
TARGET = "churned"


def churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numeric, integer and categorical features with a learnable binary target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = rng.normal(50_000, 15_000, rows).round(2)
    region = rng.choice(["north", "south", "east", "west"], rows)
    plan = rng.choice(["basic", "pro"], rows, p=[0.7, 0.3])
    logit = 0.06 * (age - 50) - (income - 50_000) / 20_000 + (region == "north") * 1.0
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(
        {"age": age, "income": income, "region": region, "plan": plan, TARGET: churned}
    )


def bundled_model(
    name: str,
    *,
    task: str = "regression",
    estimator: str = "sklearn.linear_model.Ridge",
    data: str = "sklearn://diabetes",
    training: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Model on a data set scikit-learn ships: what the operator tests apply."""
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "task": task,
            "training": {
                "estimator": {"class": estimator},
                "data": {"uri": data, "target": "target"},
                **(training or {}),
            },
            **spec,
        },
    }


def model_manifest(
    uri: str,
    *,
    name: str = MODEL,
    target: str = TARGET,
    estimator: str = "sklearn.linear_model.LogisticRegression",
    params: dict[str, Any] | None = None,
    **training: Any,
) -> dict[str, Any]:
    """A Model manifest as a user applies it."""
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "task": "classification",
            "training": {
                "estimator": {"class": estimator, "params": params or {"max_iter": 500}},
                "data": {"uri": uri, "target": target},
                **training,
            },
        },
    }


@dataclass(frozen=True)
class Reference:
    """The pristine store (never modified) and where its parts are."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def data(self) -> Path:
        return self.root / "churn.csv"

    def version_dir(self, store: Path | None = None, version: int = 1) -> Path:
        return (store or self.store) / NAMESPACE / MODEL / f"v{version}"


def build_reference(root: Path) -> Reference:
    """Trains ``churn`` v1 into ``root/store`` through the real ``mlkube train`` CLI."""
    from mlkube.cli import main

    root.mkdir(parents=True, exist_ok=True)
    ref = Reference(root)
    churn_frame(600).to_csv(ref.data, index=False)
    manifest = root / "model.json"
    manifest.write_text(json.dumps(model_manifest(str(ref.data))), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "-f", str(manifest), "--store", str(ref.store), "--version", "1"])
    if code != 0:
        raise RuntimeError(f"the reference model did not train: {err.getvalue()}")
    return ref


def copy_store(ref: Reference, target: Path) -> Path:
    """A private copy of the reference store for one case."""
    shutil.copytree(ref.store, target)
    return target


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by sha256, directories as ``dir``; for diffs."""
    if not root.exists():
        return {}
    entries: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            entries[rel] = "dir"
        elif path.is_file():
            entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[rel] = "other"
    return entries


def tree_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable differences between two ``tree`` snapshots (empty when identical)."""
    changes = [f"+ {p}" for p in after if p not in before]
    changes += [f"- {p}" for p in before if p not in after]
    changes += [f"~ {p}" for p in before if p in after and before[p] != after[p]]
    return sorted(changes)

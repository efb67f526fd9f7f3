"""Helpers for the trainer's tests: manifests, a synthetic churn table, and running the CLI.

``run_cli`` calls ``mlkube.cli.main`` in-process (fast, real argument parsing and error
mapping); ``run_process`` runs ``python -m mlkube`` as a real child process, for the
tests where the process boundary (exit code, environment) is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlkube.cli import main


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, self.stdout
        document: dict[str, Any] = json.loads(lines[0])
        return document


def manifest(
    name: str = "churn",
    *,
    task: str = "classification",
    estimator: str = "sklearn.linear_model.LogisticRegression",
    params: dict[str, Any] | None = None,
    uri: str = "sklearn://iris",
    target: str = "target",
    validation: dict[str, Any] | None = None,
    quality: dict[str, Any] | None = None,
    **data: Any,
) -> dict[str, Any]:
    training: dict[str, Any] = {
        "estimator": {"class": estimator, "params": params or {}},
        "data": {"uri": uri, "target": target, **data},
        "validation": validation or {},
    }
    if quality is not None:
        training["dataQuality"] = quality
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"task": task, "training": training},
    }


def churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: numeric, integer and categorical features, a learnable target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = rng.normal(50_000, 15_000, rows).round(2)
    region = rng.choice(["north", "south", "east", "west"], rows)
    plan = rng.choice(["basic", "pro"], rows, p=[0.7, 0.3])
    logit = 0.06 * (age - 50) - (income - 50_000) / 20_000 + (region == "north") * 1.0
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(
        {"age": age, "income": income, "region": region, "plan": plan, "churned": churned}
    )


def write_manifest(directory: Path, document: dict[str, Any], name: str = "model.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Result:
    code = main(["train", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def train_in(
    capsys: pytest.CaptureFixture[str], directory: Path, document: dict[str, Any]
) -> Result:
    """``mlkube train -f`` on ``document``, in process, with a store and a termination log
    in ``directory``."""
    path = write_manifest(directory, document)
    store, log = directory / "store", directory / "log"
    return run_cli(capsys, "-f", path, "--store", store, "--termination-log", log)


def run_process(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    completed = subprocess.run(
        [sys.executable, "-m", "mlkube", "train", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def train_manifest_process(
    directory: Path,
    document: dict[str, Any],
    termination_log: Path,
    *extra: str | Path,
    env: dict[str, str] | None = None,
) -> Result:
    """Runs ``mlkube train -f <manifest> --store <directory>/store`` as a child process."""
    return run_process(
        "-f",
        write_manifest(directory, document),
        "--store",
        directory / "store",
        "--termination-log",
        termination_log,
        *extra,
        env=env,
    )


def store_files(store: Path) -> list[str]:
    """Every file and directory under the store, relative, so a test can see leftovers."""
    if not store.exists():
        return []
    return sorted(str(p.relative_to(store)) for p in store.rglob("*"))

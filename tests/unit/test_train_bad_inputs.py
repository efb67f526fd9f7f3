"""Bad input to ``mlkube train``: one line naming the problem, a non-zero exit, no leftovers.

Each case builds a broken manifest, data file or store, runs the real CLI and checks
that stderr is exactly one ``mlkube train: error: …`` line mentioning the problem, the
exit code is 2 (the user can fix it), the termination log holds ``{"error": …}`` with
the same text, and the store holds nothing new. The https 404 case lives with the
other remote-data tests in ``test_train_remote_data.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_support import churn_frame, manifest, run_cli, store_files, write_manifest

Setup = Callable[[Path], list[str]]


def _with(document: dict[str, Any]) -> Setup:
    def setup(tmp_path: Path) -> list[str]:
        return ["-f", str(write_manifest(tmp_path, document))]

    return setup


def _csv(frame_change: Callable[[Any], Any], **kwargs: Any) -> Setup:
    def setup(tmp_path: Path) -> list[str]:
        frame = frame_change(churn_frame(200))
        frame.to_csv(tmp_path / "data.csv", index=False)
        document = manifest(uri=str(tmp_path / "data.csv"), target="churned", **kwargs)
        return ["-f", str(write_manifest(tmp_path, document))]

    return setup


def _raw_file(content: bytes, name: str = "data.csv") -> Setup:
    def setup(tmp_path: Path) -> list[str]:
        (tmp_path / name).write_bytes(content)
        document = manifest(uri=str(tmp_path / name), target="churned")
        return ["-f", str(write_manifest(tmp_path, document))]

    return setup


def _existing_version(tmp_path: Path) -> list[str]:
    existing = tmp_path / "store" / "default" / "churn" / "v3"
    existing.mkdir(parents=True)
    (existing / "metadata.json").write_text("{}")
    return ["-f", str(write_manifest(tmp_path, manifest())), "--version", "3"]


def _store_is_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "store").write_text("not a directory")
    return ["-f", str(write_manifest(tmp_path, manifest()))]


def _slice(query: str) -> Setup:
    return _with(manifest(validation={"slices": [{"name": "s", "query": query}]}))


def _nan_every_third(frame: Any) -> Any:
    frame.loc[::3, "income"] = np.nan
    return frame


CASES: dict[str, tuple[Setup, str]] = {
    "missing data file": (_with(manifest(uri="/nonexistent/churn.csv")), "does not exist"),
    "unreadable csv": (_raw_file(b"a,b\n1,2\n3,4,5,6\n7,8\n"), "not readable as CSV"),
    "binary garbage as parquet": (
        _raw_file(b"\x00\x01garbage" * 10, "data.parquet"),
        "not readable as Parquet",
    ),
    "missing target": (
        _csv(lambda f: f.rename(columns={"churned": "churn"})),
        "target column 'churned' (did you mean 'churn'?) is not in the data",
    ),
    "constant target": (_csv(lambda f: f.assign(churned="no")), "is constant"),
    "too few rows": (_csv(lambda f: f.head(10)), "fewer than dataQuality.minRows=20"),
    "column over the missing threshold": (_csv(_nan_every_third), "income (33.5% missing)"),
    "unknown feature column": (
        _csv(lambda f: f, features=["age", "incme"]),
        "'incme' (did you mean 'income'?)",
    ),
    "estimator outside the allow-list": (
        _with(manifest(estimator="os.system")),
        "outside the estimator allow-list",
    ),
    "estimator of the wrong task": (
        _with(manifest(estimator="sklearn.linear_model.Ridge")),
        "not a classifier",
    ),
    "unknown estimator class": (
        _with(manifest(estimator="sklearn.ensemble.RandomForrestClassifier")),
        "did you mean sklearn.ensemble.RandomForestClassifier",
    ),
    "unknown param": (
        _with(manifest(params={"max_iters": 10})),
        "unknown parameter 'max_iters' (did you mean",
    ),
    "bad param value": (
        _with(
            manifest(
                estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": -5}
            )
        ),
        "'n_estimators' parameter of RandomForestClassifier must be an int",
    ),
    "slice syntax error": (_slice("age >> 50"), "slice 's': syntax error"),
    "slice on an unknown column": (
        _slice("sepal_lenght_cm > 5"),
        "unknown column 'sepal_lenght_cm' (did you mean",
    ),
    "slice comparing a number column with text": (
        _slice("sepal_length_cm == 'big'"),
        "compares numeric column 'sepal_length_cm'",
    ),
    "empty slice": (_slice("sepal_length_cm > 100"), "selects no rows"),
    "version dir already present": (_existing_version, "already exists"),
    "unwritable store": (_store_is_a_file, "is not a directory"),
    "metric of the other task": (
        _with(manifest(validation={"metric": "rmse"})),
        "'rmse' is not a classification metric",
    ),
    "metric needing probabilities the estimator lacks": (
        _with(manifest(estimator="sklearn.svm.SVC", validation={"metric": "roc_auc"})),
        "needs class probabilities",
    ),
    "unknown bundled data set": (_with(manifest(uri="sklearn://titanic")), "unknown bundled"),
    "folds of one": (_with(manifest(validation={"folds": 1})), "folds must be 0"),
    "regression on a text target": (
        _csv(lambda f: f, task="regression", estimator="sklearn.linear_model.Ridge"),
        "not numeric",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_one_line_and_leaves_the_store_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    setup, expected = CASES[case]
    args = setup(tmp_path)
    store = tmp_path / "store"
    before = store_files(store)
    log = tmp_path / "termination-log"
    result = run_cli(capsys, *args, "--store", store, "--termination-log", log)
    assert result.code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("mlkube train: error: ")
    assert expected in errors[0]
    assert result.stdout == ""
    assert json.loads(log.read_text()) == {"error": errors[0].removeprefix("mlkube train: error: ")}
    assert store_files(store) == before


def test_invalid_yaml_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("kind: Model\nmetadata: {name: [unclosed\n")
    result = run_cli(
        capsys, "-f", path, "--store", tmp_path / "store", "--termination-log", tmp_path / "log"
    )
    assert result.code == 2
    assert "is not valid YAML" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_model_json_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(
        capsys,
        "--model-json",
        "{kind: Model",
        "--store",
        tmp_path / "store",
        "--termination-log",
        tmp_path / "log",
    )
    assert result.code == 2 and "--model-json is not valid JSON" in result.stderr


def test_an_explicit_termination_log_must_be_writable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys,
        "-f",
        write_manifest(tmp_path, manifest()),
        "--store",
        tmp_path / "store",
        "--termination-log",
        tmp_path / "missing" / "log",
    )
    assert result.code == 2 and "cannot write the termination log" in result.stderr
    assert not (tmp_path / "store").exists()


def test_file_and_model_json_are_mutually_exclusive(tmp_path: Path) -> None:
    from mlkube.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-f", "x.yaml", "--model-json", "{}", "--store", str(tmp_path)])
    assert exit_info.value.code == 2

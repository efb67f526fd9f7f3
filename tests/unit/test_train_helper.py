"""The trainer's forked writer helper (issue 16): faster where two cores are usable,
never different, and never a reason for a run to fail.

- the helper's skops bytes and compiled model are the ones the trainer would make itself
  (same ONNX bytes and record; the skops file loads and predicts the same);
- a helper that died, or a pipeline that cannot be pickled, gives None and the trainer
  does the work itself;
- a whole run with one usable core (thread prefetch) and with two (the helper) writes the
  same compiled model and an artifact that predicts the same;
- the CPU count honours a cgroup v2 or v1 limit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from train_support import manifest, train_in

from mlkube.runtime.artifact import FeatureSchema, load_pipeline, read_metadata
from mlkube.runtime.compiled import compile_pipeline
from mlkube.runtime.train import helper as helper_module
from mlkube.runtime.train import run
from mlkube.runtime.train.helper import WriterHelper, _cgroup_cpus

X, Y = load_breast_cancer(return_X_y=True)
FEATURES = [
    FeatureSchema(name=f"f{i}", kind="numeric", dtype="float64", nullable=False)
    for i in range(X.shape[1])
]


def fitted() -> tuple[Any, tuple[Any, Any]]:
    model = Pipeline([("estimator", HistGradientBoostingClassifier(max_iter=20))])
    model.fit(X[:400], Y[:400])
    return model, (model.predict(X[400:]), model.predict_proba(X[400:]))


def test_the_helper_makes_what_the_trainer_would() -> None:
    model, expected = fitted()
    helper = WriterHelper(X[400:], "classification", FEATURES)
    helper.submit(model, expected)
    answer = helper.result()
    assert answer is not None
    artifact, compiled = answer
    here = compile_pipeline(model, X[400:], "classification", features=FEATURES, expected=expected)
    assert compiled.record == here.record
    assert compiled.record["verified"] is True
    assert compiled.onnx == here.onnx
    types = sio.get_untrusted_types(data=artifact)
    loaded = sio.loads(artifact, trusted=types)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_dead_helper_or_an_unpicklable_pipeline_gives_none() -> None:
    model, expected = fitted()
    helper = WriterHelper(X[400:], "classification", FEATURES)
    helper._process.kill()
    helper._process.join()
    helper.submit(model, expected)
    assert helper.result() is None
    helper = WriterHelper(X[400:], "classification", FEATURES)
    helper.submit(lambda rows: rows, expected)  # a lambda does not pickle
    assert helper.result() is None
    assert not helper._process.is_alive()


def test_a_run_writes_the_same_with_one_core_or_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document = manifest(
        "cancer",
        uri="sklearn://breast_cancer",
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_iter": 20, "random_state": 0},
        validation={"randomSeed": 3},
    )
    real_start = helper_module.start_helper
    answers = []
    for cpus in (1.0, 2.0):
        started: list[WriterHelper | None] = []

        def start(*args: Any, started: list[WriterHelper | None] = started) -> Any:
            started.append(real_start(*args))
            return started[-1]

        monkeypatch.setattr(run, "usable_cpus", lambda cpus=cpus: cpus)
        monkeypatch.setattr(run, "start_helper", start)
        directory = tmp_path / f"cpus-{cpus:g}"
        directory.mkdir()
        result = train_in(capsys, directory, document)
        assert result.code == 0, result.stderr
        # one core: the thread prefetch and no helper; two: a helper that answered
        assert len(started) == (1 if cpus >= 2 else 0)
        assert all(h is not None for h in started)
        version = directory / "store" / "default" / "cancer" / "v1"
        record = read_metadata(version)["compiled"]
        assert record["verified"] is True
        model = load_pipeline(version)
        answers.append((record, model.predict_proba(X)))
    assert answers[0][0] == answers[1][0]
    assert np.array_equal(answers[0][1], answers[1][1])


def test_the_cpu_count_honours_the_cgroup_limit(tmp_path: Path) -> None:
    assert _cgroup_cpus(tmp_path) == math.inf  # no limit files at all
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpus(tmp_path) == math.inf
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpus(tmp_path) == math.inf
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert _cgroup_cpus(tmp_path) == 2.0


def test_a_run_whose_helper_dies_still_writes_its_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_start = helper_module.start_helper

    def start_and_kill(*args: Any) -> WriterHelper | None:
        helper = real_start(*args)
        assert helper is not None
        helper._process.kill()
        return helper

    monkeypatch.setattr(run, "usable_cpus", lambda: 2.0)
    monkeypatch.setattr(run, "start_helper", start_and_kill)
    document = manifest("cancer", uri="sklearn://breast_cancer", params={"max_iter": 2000})
    result = train_in(capsys, tmp_path, document)
    assert result.code == 0, result.stderr
    version = tmp_path / "store" / "default" / "cancer" / "v1"
    assert read_metadata(version)["compiled"]["verified"] is True
    assert load_pipeline(version).predict(X[:5]).tolist() == Y[:5].tolist()

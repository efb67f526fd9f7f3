"""Monitoring with ground truth, on a real ``mlkube train`` iris version and real logs.

The live score (overall and per slice) equals scikit-learn's on the same joined rows,
in memory and when the join spills to partitions; labels for unknown ids, of the wrong
type or class, and repeated labels are counted, not errors; fewer labels than
``minLabels`` give "insufficient labels" and no retrain; prediction drift flags outputs
that moved while the inputs did not; a degraded window writes the labelled live rows a
retrain adds (through ``mlkube train --live-rows``), and the report holds
``performance: {metric, score, labels, slices}``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import f1_score

from mlkube.api.performance import PerformanceVerdict, RetrainOn
from mlkube.api.status import Trigger, Verdict
from mlkube.runtime.drift import performance as perf_module
from mlkube.runtime.drift.check import LiveOptions, run_check
from mlkube.runtime.drift.performance import check_performance
from mlkube.runtime.drift.perfspec import LiveSlice, PerformanceSettings, resolve
from mlkube.runtime.drift.retrain import training_job_body, wanted_trigger
from mlkube.runtime.drift.spec import DriftSettings
from mlkube.runtime.drift.window import Window
from mlkube.runtime.serve.model import Batch, load_model

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    subprocess.run(
        [sys.executable, "-m", "mlkube", "train", "-f", str(REPO / "manifests/examples/iris.yaml"),
         "--store", str(store)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return store / "default" / "iris" / "v1"


def _iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    data = load_iris()
    return np.asarray(data.data), np.asarray(data.target)


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def _log(version: Path, x: np.ndarray[Any, Any], outputs: list[Any], prefix: str = "r") -> None:
    """One inference-log line per row (one-row requests), an hour before NOW."""
    start = NOW - timedelta(hours=1)
    records = [
        {"ts": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
         "model": "iris", "version": 1, "request_id": f"{prefix}{i}", "status": 200,
         "inputs": dict(zip(FEATURES, map(float, row), strict=True)), "output": out}
        for i, (row, out) in enumerate(zip(x, outputs, strict=True))
    ]  # fmt: skip
    _write(version.parent / "inference" / start.strftime("%Y-%m-%d/%H") / "w-000001.jsonl", records)


def _labels(version: Path, pairs: list[tuple[str, Any]], *, minutes: int = 30) -> None:
    moment = NOW - timedelta(minutes=minutes)
    records = [
        {"ts": moment.isoformat().replace("+00:00", "Z"), "model": "iris", "version": 1,
         "request_id": rid, "row": 0, "label": label}
        for rid, label in pairs
    ]  # fmt: skip
    hour = moment.strftime("%Y-%m-%d/%H")
    _write(version.parent / "inference" / "labels" / hour / f"w-{minutes:06d}.jsonl", records)


def _predict(version: Path, x: np.ndarray[Any, Any]) -> list[int]:
    model = load_model(version, None, engine="sklearn")
    return [int(v) for v in model.predict(Batch(len(x), matrix=x)).labels]


def _settings(version: Path, **fields: Any) -> PerformanceSettings:
    metadata = json.loads((version / "metadata.json").read_text())
    return resolve(PerformanceSettings(**fields), metadata, None, timedelta(hours=24))


@pytest.fixture
def shifted(version: Path, tmp_path: Path) -> Path:
    """A copy of the version whose log holds shifted traffic with labels (and noise)."""
    import shutil

    copy = tmp_path / "default" / "iris" / "v1"
    shutil.copytree(version, copy)
    x, y = _iris()
    moved = x.copy()
    moved[:, 2] = moved[:, 2] * 0.5 + 1.5  # petal length squeezed: the model mixes classes
    _log(copy, moved, _predict(copy, moved))
    pairs = [(f"r{i}", int(label)) for i, label in enumerate(y)]
    noise = [("never-logged", 1), ("r0", "setosa"), ("r1", 9), ("r2", True)]
    _labels(copy, pairs[:100] + noise)
    _labels(copy, [*pairs[100:], ("r3", int(y[3]))], minutes=10)  # r3 labelled twice
    return copy


def _joined(copy: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """What the join must find, computed here without the check: truth, output, inputs."""
    lines = (copy.parent / "inference").glob("*/*/*.jsonl")
    logged = [json.loads(line) for path in lines for line in path.read_text().splitlines()]
    _, y = _iris()
    truth = np.array([y[int(r["request_id"][1:])] for r in logged])
    outputs = np.array([r["output"] for r in logged])
    inputs = np.array([[r["inputs"][f] for f in FEATURES] for r in logged])
    return truth, outputs, inputs


@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "partitioned"])
def test_live_score_and_slices_equal_scikit_learn(
    shifted: Path, spill: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spill:
        monkeypatch.setattr(perf_module, "BUCKET_LABELS", 16)
    settings = _settings(
        shifted,
        slices=(LiveSlice("long-petals", "petal_length_cm > 4.5"),
                LiveSlice("wide-sepals", "sepal_width_cm >= 3.0")),
        min_score=0.9,
    )  # fmt: skip
    result = check_performance(shifted.parent, _metadata(shifted), settings, _window())
    truth, outputs, inputs = _joined(shifted)
    assert result.metric == "f1_macro"
    expected = f1_score(truth.astype(str), outputs.astype(str), average="macro", zero_division=0)
    assert result.score == pytest.approx(expected, abs=1e-6)
    long_petals = inputs[:, 2] > 4.5
    wide = inputs[:, 1] >= 3.0
    by_name = {name: (score, count) for name, score, count in result.slices}
    for name, mask in (("long-petals", long_petals), ("wide-sepals", wide)):
        want = f1_score(truth[mask], outputs[mask], average="macro", zero_division=0)
        assert by_name[name] == (pytest.approx(want, abs=1e-6), int(mask.sum()))
    assert result.counts == {
        "received": 155, "matched": 150, "unmatched": 1, "duplicates": 1, "invalid": 3,
    }  # fmt: skip
    assert result.coverage == 1.0 and result.predictions == 150
    assert result.median_delay is not None and result.median_delay > 0
    assert result.verdict == PerformanceVerdict.DEGRADED and "minScore 0.9" in result.message


def _metadata(version: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((version / "metadata.json").read_text())
    return loaded


def _window() -> Window:
    return Window(NOW - timedelta(hours=24), NOW)


def test_fewer_labels_than_min_labels_is_insufficient_and_triggers_nothing(shifted: Path) -> None:
    options = LiveOptions(
        PerformanceSettings(min_score=0.99, min_labels=1000, retrain_on=RetrainOn.BOTH)
    )
    result = run_check(shifted, shifted.parent / "inference", DriftSettings(), NOW, options=options)
    performance = result.live.performance
    assert performance is not None
    assert performance.verdict == PerformanceVerdict.INSUFFICIENT_LABELS
    assert "fewer than minLabels 1000" in performance.message
    trigger, why = wanted_trigger(DriftSettings(), options.performance, result)
    if result.report["verdict"] != Verdict.DRIFT:
        assert trigger is None, why


def _degraded_check(shifted: Path) -> tuple[dict[str, Any], PerformanceSettings, Any]:
    """A check of a Model that opts in to live rows, whose live score is below minScore."""
    model = {"metadata": {"name": "iris", "namespace": "default", "uid": "u1"},
             "kind": "Model", "spec": {"training": {"liveData": {"include": True}}}}  # fmt: skip
    perf = PerformanceSettings(min_score=0.95, min_labels=50, retrain_on=RetrainOn.PERFORMANCE)
    result = run_check(
        shifted, shifted.parent / "inference", DriftSettings(), NOW,
        options=LiveOptions(perf, model),
    )  # fmt: skip
    return model, perf, result


def test_degraded_window_asks_for_a_performance_run_with_its_live_rows(shifted: Path) -> None:
    model, perf, result = _degraded_check(shifted)
    report = json.loads(result.report_path.read_text())
    assert {"metric", "score", "labels", "slices"} <= set(report["performance"])
    assert report["performance"]["labels"]["matched"] == 150
    trigger, _ = wanted_trigger(DriftSettings(), perf, result)
    assert trigger == Trigger.PERFORMANCE
    body = training_job_body("iris", model, Trigger.PERFORMANCE, DriftSettings(), result, now=NOW)
    assert body["spec"]["trigger"] == "performance"
    live = body["spec"]["liveRows"]
    rows = (shifted.parent / live["path"]).read_text().splitlines()
    assert live["rows"] == len(rows) == 150
    assert set(json.loads(rows[0])) == {*FEATURES, "target"}


def test_prediction_drift_flags_outputs_that_moved_while_inputs_did_not(
    version: Path, tmp_path: Path
) -> None:
    import shutil

    x, _ = _iris()
    verdicts = {}
    for case, outputs in (("same", _predict(version, x)), ("moved", [2] * len(x))):
        copy = tmp_path / case / "default" / "iris" / "v1"
        shutil.copytree(version, copy)
        _log(copy, np.tile(x, (4, 1)), outputs * 4)
        result = run_check(copy, copy.parent / "inference", DriftSettings(min_samples=100), NOW)
        assert result.live.outputs is not None
        verdicts[case] = (result.report["verdict"], result.live.outputs.verdict)
    assert verdicts["same"] == (Verdict.NO_DRIFT, Verdict.NO_DRIFT)
    assert verdicts["moved"] == (Verdict.NO_DRIFT, Verdict.DRIFT)


def test_a_performance_run_trains_on_the_live_rows_and_records_them(shifted: Path) -> None:
    model, _, result = _degraded_check(shifted)
    body = training_job_body("iris", model, Trigger.PERFORMANCE, DriftSettings(), result, now=NOW)
    store = shifted.parents[2]
    trained = subprocess.run(
        [sys.executable, "-m", "mlkube", "train", "-f", str(REPO / "manifests/examples/iris.yaml"),
         "--store", str(store), "--trigger", "performance",
         "--live-rows", json.dumps(body["spec"]["liveRows"])],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    added = re.search(r"added (\d+) labelled live rows", trained.stderr)
    assert added, trained.stderr
    rows = int(added.group(1))  # 150 less the exact duplicates iris itself holds
    assert 145 <= rows <= 150
    metadata = _metadata(shifted.parent / "v2")
    assert metadata["data"]["rows"] == 150 + rows
    assert metadata["lineage"]["liveRows"]["rows"] == rows
    assert metadata["lineage"]["liveRows"]["windowEnd"] == "2026-12-02T12:00:00Z"
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["lineage"]["liveRows"]["path"] == body["spec"]["liveRows"]["path"]


def test_live_rows_outside_the_models_drift_directory_are_refused(version: Path) -> None:
    trained = subprocess.run(
        [sys.executable, "-m", "mlkube", "train", "-f", str(REPO / "manifests/examples/iris.yaml"),
         "--store", str(version.parents[2]),
         "--live-rows", json.dumps({"path": "../../../etc/passwd"})],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert trained.returncode == 2
    assert "must be drift/live-rows-<time>.jsonl" in trained.stderr


def test_kubectl_mlkube_perf_and_drift_print_the_live_tables() -> None:
    from mlkube.plugin.perfview import perf_report
    from mlkube.plugin.views import drift_report

    monitor = {
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {"modelRef": {"name": "iris"}, "performance": {"minScore": 0.85}},
        "status": {
            "lastCheckTime": "2026-12-02T12:00:00Z", "checkedVersion": 1, "verdict": "no-drift",
            "predictionDrift": {"verdict": "drift", "method": "chi2", "score": 0.001},
            "performance": {
                "verdict": "degraded", "checkedAt": "2026-12-02T12:00:00Z", "metric": "accuracy",
                "score": 0.67, "validationScore": 0.9333, "minScore": 0.85, "labels": 300,
                "predictions": 300, "coverage": 1.0, "medianLabelDelaySeconds": 42.0,
                "counts": {"received": 301, "matched": 300, "unmatched": 1},
                "slices": [{"name": "overall", "score": 0.67, "labels": 300},
                           {"name": "long-petals", "score": 0.5, "labels": 120}],
                "message": "live accuracy 0.6700 is below minScore 0.85",
                "history": [{"time": "2026-12-02T11:30:00Z", "verdict": "ok", "score": 0.95,
                             "labels": 200}],
            },
        },
    }  # fmt: skip
    text = perf_report(monitor)
    assert "Live score:     0.6700" in text and "Validation:     0.9333" in text
    assert "300 of 300 predictions (100.0%)" in text and "Median delay:   42s" in text
    assert "long-petals" in text and "EARLIER CHECK" in text
    drift = drift_report(monitor)
    assert "Outputs drift:  drift (chi2" in drift and "Live score:     degraded (accuracy" in drift


def test_drift_check_cli_reads_late_labels_from_a_file(version: Path, tmp_path: Path) -> None:
    """Labels a batch pipeline delivers later: a CSV of id,label named by --labels (the
    Monitor's spec.performance.labels.uri in a cluster), joined like feedback labels."""
    import shutil

    copy = tmp_path / "default" / "iris" / "v1"
    shutil.copytree(version, copy)
    x, y = _iris()
    _log(copy, x, _predict(copy, x))
    late = tmp_path / "late.csv"
    late.write_text("id,label\n" + "".join(f"r{i},{int(v)}\n" for i, v in enumerate(y)) + "zz,1\n")
    monitor = tmp_path / "monitor.yaml"
    monitor.write_text(json.dumps({
        "kind": "Monitor", "metadata": {"name": "iris"},
        "spec": {"modelRef": {"name": "iris"}, "window": {"minSamples": 100},
                 "performance": {"metric": "accuracy", "minScore": 0.9, "minLabels": 100}},
    }))  # fmt: skip
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "mlkube", "drift-check", "--model-dir", str(copy),
         "--live", str(copy.parent / "inference"), "-f", str(monitor), "--labels", str(late),
         "--report", str(report), "--no-plot", "--now", NOW.isoformat()],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    performance = json.loads(report.read_text())["performance"]
    truth, outputs, _ = _joined(copy)
    assert performance["score"] == pytest.approx(float((truth == outputs).mean()), abs=1e-6)
    assert performance["labels"]["matched"] == 150 and performance["labels"]["unmatched"] == 1
    assert performance["verdict"] == "ok" and "performance: ok" in done.stdout


def test_monitor_status_becomes_the_live_score_gauges() -> None:
    from prometheus_client import REGISTRY

    from mlkube.controller.main import live_gauges

    status = {
        "checkedVersion": 3,
        "performance": {
            "verdict": "degraded",
            "slices": [{"name": "overall", "score": 0.67, "labels": 300},
                       {"name": "long-petals", "score": 0.5, "labels": 120},
                       {"name": "empty", "score": None, "labels": 0}],
        },
        "predictionDrift": {"verdict": "drift"},
    }  # fmt: skip
    live_gauges(("team", "iris-mon", "iris"), status)
    labels = {"namespace": "team", "monitor": "iris-mon", "model": "iris"}
    score = "mlkube_monitor_live_score"
    assert REGISTRY.get_sample_value(score, {**labels, "version": "3", "slice": "overall"}) == 0.67
    assert (
        REGISTRY.get_sample_value(score, {**labels, "version": "3", "slice": "long-petals"}) == 0.5
    )
    assert REGISTRY.get_sample_value(score, {**labels, "version": "3", "slice": "empty"}) is None
    assert REGISTRY.get_sample_value("mlkube_monitor_live_performance_degraded", labels) == 1
    assert REGISTRY.get_sample_value("mlkube_monitor_prediction_drift", labels) == 1


def test_performance_on_a_table_instead_of_the_log_is_a_clear_error(
    version: Path, tmp_path: Path
) -> None:
    from mlkube.runtime.drift.check import DriftInputError

    table = tmp_path / "live.csv"
    x, _ = _iris()
    table.write_text(",".join(FEATURES) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in x))
    with pytest.raises(DriftInputError, match="no request ids"):
        run_check(
            version, table, DriftSettings(), NOW, report_path=tmp_path / "r.json",
            options=LiveOptions(PerformanceSettings(min_score=0.9)),
        )  # fmt: skip
    assert not (tmp_path / "r.json").exists()


def test_regression_live_scores_equal_scikit_learn(tmp_path: Path) -> None:
    """A regressor's live rmse, mae and r2 (sums, not pairs) against scikit-learn's."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(3)
    truth = rng.normal(100, 20, 400)
    predicted = truth + rng.normal(5, 10, 400)
    x = rng.normal(0, 1, (400, 4))
    metadata = {"task": "regression", "version": 1, "metric": "rmse", "score": 9.0,
                "metrics": {"rmse": 9.0}, "target": {"name": "price"}, "slices": [],
                "features": [{"name": f, "kind": "numeric"} for f in FEATURES]}  # fmt: skip
    copy = tmp_path / "default" / "iris" / "v1"
    _log(copy, x, [float(p) for p in predicted])
    _labels(copy, [(f"r{i}", float(v)) for i, v in enumerate(truth)] + [("r9", "n/a")])
    positive = x[:, 0] > 0
    for metric, expected in (
        ("rmse", np.sqrt(mean_squared_error(truth, predicted))),
        ("mae", mean_absolute_error(truth, predicted)),
        ("r2", r2_score(truth, predicted)),
    ):
        settings = resolve(
            PerformanceSettings(metric=metric, slices=(LiveSlice("pos", "sepal_length_cm > 0"),)),
            metadata, None, timedelta(hours=24),
        )  # fmt: skip
        result = check_performance(copy.parent, metadata, settings, _window())
        assert result.score == pytest.approx(expected, abs=1e-5), metric
        assert result.counts["invalid"] == 1 and result.counts["matched"] == 400
        if metric == "r2":
            want = r2_score(truth[positive], predicted[positive])
        elif metric == "mae":
            want = mean_absolute_error(truth[positive], predicted[positive])
        else:
            want = np.sqrt(mean_squared_error(truth[positive], predicted[positive]))
        assert result.slices[1][1] == pytest.approx(want, abs=1e-5), metric


def test_feedback_labels_are_checked_against_string_classes() -> None:
    from types import SimpleNamespace

    from mlkube.runtime.serve.errors import BadRequestError
    from mlkube.runtime.serve.feedback import Feedback

    model = SimpleNamespace(
        classes=np.array(["no", "yes"]), metadata={"task": "classification"},
        name="churn", version=2,
    )  # fmt: skip
    feedback = Feedback(model, None, 100)  # type: ignore[arg-type]
    assert feedback.parse(b'{"labels": [{"id": "a", "label": "yes", "row": 3}]}') == [
        ("a", 3, "yes")
    ]
    for body, words in (
        (b'{"labels": [{"id": "a", "label": 1}]}', "must be a string"),
        (b'{"labels": [{"id": "a", "label": "maybe"}]}', "not a class"),
        (b'{"labels": [{"id": "a", "label": "yes", "row": 100}]}', "from 0 to 99"),
        (b'{"labels": [{"id": "a", "label": "yes", "colour": 1}]}', "unknown field"),
    ):
        with pytest.raises(BadRequestError, match=words):
            feedback.parse(body)


def test_live_rows_files_are_bounded(tmp_path: Path) -> None:
    from mlkube.runtime.drift.groundtruth import _write_rows
    from mlkube.runtime.drift.performance import PerformanceResult

    result = PerformanceResult(
        PerformanceVerdict.DEGRADED, "accuracy", 0.5, 0.9, [], {}, 1, 1.0, None, "",  # type: ignore[arg-type]
        live_rows=[b'{"a": 1, "target": 0}\n'],
    )  # fmt: skip
    settings = PerformanceSettings(include_live=True)
    written = [_write_rows(result, settings, tmp_path, NOW + timedelta(hours=i)) for i in range(12)]
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 10 and f"drift/{kept[-1]}" == written[-1]
    assert f"drift/{kept[0]}" == written[2]

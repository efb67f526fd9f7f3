"""Pure parts of the trainer: spec defaults and errors, settings, metrics, the 4 KiB summary.

The summary test feeds ``fit_summary`` a run with many slices and long names, as a Model
with dozens of slices would produce, and checks it never exceeds what Kubernetes keeps
of a termination message while the failing slices and the primary metric survive.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_support import manifest

from mlkube.api.summary import MAX_SUMMARY_BYTES, error_summary, fit_summary
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.data import identifier, pvc_path
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import parse_model
from mlkube.runtime.train.validate import Predictions, metric_value, standard_metrics


def test_defaults_follow_the_design() -> None:
    spec = parse_model(manifest())
    assert spec.namespace == "default"
    assert spec.validation.metric == "f1"
    assert (spec.validation.test_fraction, spec.validation.folds) == (0.2, 0)
    assert (spec.quality.max_missing_fraction, spec.quality.min_rows) == (0.05, 20)
    regression = parse_model(manifest(task="regression"), namespace="team-b")
    assert regression.validation.metric == "r2" and regression.namespace == "team-b"
    assert (
        parse_model(manifest(validation={"metric": "mae"}, task="regression")).higher_is_better
        is False
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["metadata"].update(name="Bad_Name"), "metadata.name 'Bad_Name'"),
        (lambda m: m["spec"].update(task="clustering"), "spec.task must be"),
        (lambda m: m["spec"]["training"].pop("data"), "spec.training.data is required"),
        (lambda m: m["spec"]["training"]["data"].pop("uri"), "spec.training.data.uri is required"),
        (lambda m: m["spec"]["training"]["validation"].update(testFraction=1.5), "testFraction"),
        (lambda m: m["spec"]["training"]["validation"].update(folds="5"), "must be an integer"),
        (lambda m: m["spec"]["training"]["data"].update(features=["target"]), "must not include"),
        (lambda m: m["spec"]["training"]["data"].update(format="xls"), "format must be one of"),
        (
            lambda m: m["spec"]["training"]["validation"].update(
                slices=[{"name": "a", "query": "x > 1"}, {"name": "a", "query": "x > 2"}]
            ),
            "used twice",
        ),
        (lambda m: m.update(kind="Monitor"), "expected a Model"),
    ],
)
def test_spec_errors_name_the_field(change: Any, message: str) -> None:
    document = manifest()
    change(document)
    with pytest.raises(TrainingInputError, match=message):
        parse_model(document)


def test_settings_from_environment() -> None:
    settings = TrainSettings.from_env(
        {
            "MLKUBE_PVC_ROOT": "/data",
            "MLKUBE_ESTIMATOR_ALLOWLIST": "sklearn.linear_model., xgb.",
            "MLKUBE_HTTP_MAX_BYTES": "1024",
        }
    )
    assert settings.pvc_root == Path("/data")
    assert settings.estimator_allowlist == ("sklearn.linear_model.", "xgb.")
    assert settings.http_max_bytes == 1024 and settings.http_timeout_seconds == 60.0
    with pytest.raises(TrainingInputError, match="MLKUBE_HTTP_TIMEOUT_SECONDS must be positive"):
        TrainSettings.from_env({"MLKUBE_HTTP_TIMEOUT_SECONDS": "0"})


def test_pvc_paths_stay_inside_the_claim() -> None:
    assert pvc_path("pvc://datasets/a/b.csv", Path("/mnt/pvc")) == Path("/mnt/pvc/datasets/a/b.csv")
    for bad in ("pvc://datasets/../etc/passwd", "pvc://datasets", "pvc:///x.csv"):
        with pytest.raises(TrainingInputError, match="expected pvc://"):
            pvc_path(bad, Path("/mnt/pvc"))


def test_bundled_column_names_become_identifiers() -> None:
    assert identifier("petal length (cm)") == "petal_length_cm"
    assert identifier("mean radius") == "mean_radius"


def test_classification_metrics_binary_and_multiclass() -> None:
    binary = Predictions(
        y_true=np.array(["no", "yes", "yes", "no"]),
        y_pred=np.array(["no", "yes", "no", "no"]),
        proba=np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
        classes=np.array(["no", "yes"]),
    )
    metrics = standard_metrics("classification", "f1", binary)
    assert metrics["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["accuracy"] == 0.75 and metrics["roc_auc"] == 1.0
    one_class = binary.subset(np.array([False, True, True, False]))
    assert metric_value("roc_auc", one_class) is None
    assert metric_value("recall", one_class) == 0.5
    multiclass = Predictions(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), None, None)
    assert metric_value("f1", multiclass) == pytest.approx(metric_value("f1_macro", multiclass))
    assert metric_value("log_loss", multiclass) is None


def _summary(slices: int, name_length: int) -> dict[str, Any]:
    return {
        "version": 12,
        "metric": "f1",
        "higherIsBetter": True,
        "score": 0.91,
        "metrics": {
            "f1": 0.91,
            "accuracy": 0.93,
            "f1_macro": 0.9,
            "roc_auc": 0.97,
            "log_loss": 0.21,
        },
        "slices": [
            {
                "name": f"slice-{i:03d}-" + "x" * name_length,
                "score": 0.8,
                "rows": 40,
                "minScore": 0.85,
                "passed": i % 7 != 0,
            }
            for i in range(slices)
        ],
        "artifact": {"uri": "pvc://models/prod/churn/v12", "sha256": "ab" * 32},
        "rows": {"train": 80_000, "test": 20_000},
        "durationSeconds": 12.5,
    }


@pytest.mark.parametrize(("slices", "name_length"), [(3, 10), (60, 20), (400, 200)])
def test_summary_never_exceeds_4_kib(slices: int, name_length: int) -> None:
    encoded = fit_summary(_summary(slices, name_length))
    assert len(encoded) <= MAX_SUMMARY_BYTES
    document = json.loads(encoded)
    assert document["score"] == 0.91 and document["metrics"]["f1"] == 0.91
    assert document["artifact"]["sha256"] == "ab" * 32
    if slices == 3:
        assert "truncated" not in document and len(document["slices"]) == 3
    else:
        assert document["truncated"] is True
        kept = document["slices"]
        failing = sum(1 for i in range(slices) if i % 7 == 0)
        assert [s["passed"] for s in kept][: min(failing, len(kept))] == [False] * min(
            failing, len(kept)
        )


def test_error_summary_is_bounded_and_one_line() -> None:
    encoded = error_summary("bad\ninput " + "y" * 10_000)
    assert len(encoded) <= MAX_SUMMARY_BYTES
    assert "\n" not in json.loads(encoded)["error"]

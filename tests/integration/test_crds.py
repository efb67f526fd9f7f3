"""The CRDs on a real kube-apiserver: established, samples accepted, bad objects rejected
with a message that names the offending field, printer columns, category and explain."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.controlplane import REPO, ControlPlane

EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
Doc = dict[str, Any]

VALID_MODEL: Doc = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "probe"},
    "spec": {
        "task": "classification",
        "training": {
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "data": {"uri": "sklearn://iris", "target": "target"},
            "validation": {"metric": "f1_macro", "slices": [{"name": "a", "query": "x > 1"}]},
        },
        "serving": {"autoscaling": {"minReplicas": 1, "maxReplicas": 2}},
    },
}
VALID_TRAINING_JOB: Doc = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "probe-tj"},
    "spec": {"modelRef": {"name": "probe"}, "trigger": "manual"},
}
VALID_MONITOR: Doc = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Monitor",
    "metadata": {"name": "probe-mon"},
    "spec": {"modelRef": {"name": "probe"}, "window": {"duration": "24h", "minSamples": 10}},
}


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation setting (or, for value ``...``, deleting) a dotted path in a document."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return mutate


INVALID: list[tuple[str, Doc, Callable[[Doc], None], str]] = [
    ("unknown task", VALID_MODEL, _set("spec.task", "clustering"), "spec.task"),
    ("missing task", VALID_MODEL, _set("spec.task", ...), "spec.task"),
    ("missing training", VALID_MODEL, _set("spec.training", ...), "spec.training"),
    (
        "missing estimator class",
        VALID_MODEL,
        _set("spec.training.estimator.class", ...),
        "spec.training.estimator.class",
    ),
    (
        "estimator class not an import path",
        VALID_MODEL,
        _set("spec.training.estimator.class", "os.system; rm -rf /"),
        "spec.training.estimator.class",
    ),
    (
        "unknown data uri scheme",
        VALID_MODEL,
        _set("spec.training.data.uri", "ftp://host/data.csv"),
        "spec.training.data.uri",
    ),
    (
        "pvc data uri with an absolute path after the claim",
        VALID_MODEL,
        _set("spec.training.data.uri", "pvc://data//etc/passwd"),
        "spec.training.data.uri",
    ),
    (
        "pvc data uri climbing out of the claim",
        VALID_MODEL,
        _set("spec.training.data.uri", "pvc://data/a/../../other/x.csv"),
        "spec.training.data.uri",
    ),
    (
        "missing target",
        VALID_MODEL,
        _set("spec.training.data.target", ...),
        "spec.training.data.target",
    ),
    (
        "target of the wrong type",
        VALID_MODEL,
        _set("spec.training.data.target", True),
        "spec.training.data.target",
    ),
    (
        "testFraction above 1",
        VALID_MODEL,
        _set("spec.training.validation.testFraction", 1.5),
        "spec.training.validation.testFraction",
    ),
    (
        "testFraction zero",
        VALID_MODEL,
        _set("spec.training.validation.testFraction", 0),
        "spec.training.validation.testFraction",
    ),
    (
        "one fold",
        VALID_MODEL,
        _set("spec.training.validation.folds", 1),
        "spec.training.validation.folds",
    ),
    (
        "negative folds",
        VALID_MODEL,
        _set("spec.training.validation.folds", -3),
        "spec.training.validation.folds",
    ),
    (
        "unknown metric",
        VALID_MODEL,
        _set("spec.training.validation.metric", "auc"),
        "spec.training.validation.metric",
    ),
    (
        "classification metric on a regression",
        VALID_MODEL,
        _set("spec.task", "regression"),
        "spec.training.validation.metric",
    ),
    (
        "slice minScore above the metric's range",
        VALID_MODEL,
        _set(
            "spec.training.validation.slices",
            [{"name": "a", "query": "x > 1", "minScore": 1.5}],
        ),
        "spec.training.validation.slices",
    ),
    (
        "duplicate slice names",
        VALID_MODEL,
        _set(
            "spec.training.validation.slices",
            [{"name": "a", "query": "x > 1"}, {"name": "a", "query": "x < 1"}],
        ),
        "spec.training.validation.slices",
    ),
    (
        "schedule not cron",
        VALID_MODEL,
        _set("spec.training.schedule", "every day at three"),
        "spec.training.schedule",
    ),
    (
        "minReplicas above maxReplicas",
        VALID_MODEL,
        _set("spec.serving.autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        "spec.serving.autoscaling.minReplicas",
    ),
    (
        "maxReplicas zero",
        VALID_MODEL,
        _set("spec.serving.autoscaling", {"maxReplicas": 0}),
        "spec.serving.autoscaling.maxReplicas",
    ),
    (
        "sampleRate above 1",
        VALID_MODEL,
        _set("spec.serving.inferenceLogging", {"sampleRate": 2}),
        "spec.serving.inferenceLogging.sampleRate",
    ),
    ("pinned version zero", VALID_MODEL, _set("spec.serving.version", 0), "spec.serving.version"),
    (
        "unknown promotion policy",
        VALID_MODEL,
        _set("spec.promotion", {"policy": "sometimes"}),
        "spec.promotion.policy",
    ),
    (
        "negative missing fraction",
        VALID_MODEL,
        _set("spec.training.dataQuality", {"maxMissingFraction": -0.1}),
        "spec.training.dataQuality.maxMissingFraction",
    ),
    (
        "unsupported storage",
        VALID_MODEL,
        _set("spec.storage", {"uri": "gs://bucket/models"}),
        "spec.storage.uri",
    ),
    (
        "resource quantity not a quantity",
        VALID_MODEL,
        _set("spec.training.resources", {"limits": {"cpu": "lots"}}),
        "spec.training.resources.limits",
    ),
    (
        "negative backoffLimit",
        VALID_MODEL,
        _set("spec.training.backoffLimit", -1),
        "spec.training.backoffLimit",
    ),
    (
        "search with an empty grid",
        VALID_MODEL,
        _set("spec.training.search", {"candidates": [{"class": "sklearn.svm.SVC", "grid": {}}]}),
        "spec.training.search.candidates[0].grid",
    ),
    (
        "search with an empty list in its grid",
        VALID_MODEL,
        _set(
            "spec.training.search",
            {"candidates": [{"class": "sklearn.svm.SVC", "grid": {"C": [1], "kernel": []}}]},
        ),
        "spec.training.search.candidates[0].grid",
    ),
    (
        "search without candidates",
        VALID_MODEL,
        _set("spec.training.search", {"candidates": []}),
        "spec.training.search.candidates",
    ),
    (
        "random search without trials",
        VALID_MODEL,
        _set(
            "spec.training.search",
            {"method": "random", "candidates": [{"class": "sklearn.svm.SVC"}]},
        ),
        "spec.training.search.trials",
    ),
    (
        "search with too many trials",
        VALID_MODEL,
        _set(
            "spec.training.search",
            {"method": "random", "trials": 5000, "candidates": [{"class": "sklearn.svm.SVC"}]},
        ),
        "spec.training.search.trials",
    ),
    (
        "search parallelism above its trials",
        VALID_MODEL,
        _set(
            "spec.training.search",
            {
                "method": "random",
                "trials": 4,
                "parallelism": 8,
                "candidates": [{"class": "sklearn.svm.SVC"}],
            },
        ),
        "spec.training.search.parallelism",
    ),
    (
        "grid search with distributions",
        VALID_MODEL,
        _set(
            "spec.training.search",
            {
                "candidates": [
                    {
                        "class": "sklearn.svm.SVC",
                        "distributions": {"C": {"kind": "uniform", "low": 0, "high": 1}},
                    }
                ]
            },
        ),
        "spec.training.search.candidates",
    ),
    (
        "override with an empty search grid",
        VALID_TRAINING_JOB,
        _set(
            "spec.overrides", {"search": {"candidates": [{"class": "sklearn.svm.SVC", "grid": {}}]}}
        ),
        "spec.overrides.search.candidates[0].grid",
    ),
    (
        "TrainingJob without modelRef",
        VALID_TRAINING_JOB,
        _set("spec.modelRef", ...),
        "spec.modelRef",
    ),
    (
        "unknown trigger",
        VALID_TRAINING_JOB,
        _set("spec.trigger", "cosmic-ray"),
        "spec.trigger",
    ),
    (
        "override with a bad data uri",
        VALID_TRAINING_JOB,
        _set("spec.overrides", {"data": {"uri": "file:///etc/passwd"}}),
        "spec.overrides.data.uri",
    ),
    (
        "window duration in words",
        VALID_MONITOR,
        _set("spec.window.duration", "one day"),
        "spec.window.duration",
    ),
    ("zero minSamples", VALID_MONITOR, _set("spec.window.minSamples", 0), "spec.window.minSamples"),
    ("monitor schedule not cron", VALID_MONITOR, _set("spec.schedule", "hourly"), "spec.schedule"),
    (
        "drift share above 1",
        VALID_MONITOR,
        _set("spec.drift", {"datasetDriftShare": 1.5}),
        "spec.drift.datasetDriftShare",
    ),
    (
        "unknown drift method",
        VALID_MONITOR,
        _set("spec.drift", {"numeric": "vibes"}),
        "spec.drift.numeric",
    ),
    (
        "monitor table uri outside the store",
        VALID_MONITOR,
        _set("spec.data", {"uri": "store://../../etc/x.csv"}),
        "spec.data.uri",
    ),
    ("unknown action", VALID_MONITOR, _set("spec.action", "page-someone"), "spec.action"),
    ("cooldown not a duration", VALID_MONITOR, _set("spec.cooldown", "soon"), "spec.cooldown"),
]


def _apply(plane: ControlPlane, namespace: str, doc: Doc, *extra: str, check: bool = True) -> Any:
    return plane.kubectl(
        "apply", "-n", namespace, *extra, "-f", "-", input_text=json.dumps(doc), check=check
    )


def test_crds_are_established(control_plane: ControlPlane, crds: list[str]) -> None:
    assert sorted(crds) == [
        "customresourcedefinition.apiextensions.k8s.io/models.mlkube.io",
        "customresourcedefinition.apiextensions.k8s.io/monitors.mlkube.io",
        "customresourcedefinition.apiextensions.k8s.io/trainingjobs.mlkube.io",
    ]
    status = json.loads(control_plane.kubectl("get", *crds, "-o", "json").stdout)
    for item in status["items"]:
        conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
        assert conditions["NamesAccepted"] == "True"
        assert conditions["Established"] == "True"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: Path(p).stem)
def test_every_sample_is_accepted(
    control_plane: ControlPlane, crds: list[str], namespace: str, example: Path
) -> None:
    dry = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(example))
    assert "(server dry run)" in dry.stdout
    control_plane.kubectl("apply", "-n", namespace, "-f", str(example))
    for doc in yaml.safe_load_all(example.read_text()):
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        stored = json.loads(
            control_plane.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        )
        assert stored["spec"]["modelRef" if kind == "monitor" else "task"]


@pytest.mark.parametrize(
    ("base", "mutate", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_objects_are_rejected_naming_the_field(
    control_plane: ControlPlane,
    crds: list[str],
    base: Doc,
    mutate: Callable[[Doc], None],
    field: str,
) -> None:
    doc = copy.deepcopy(base)
    mutate(doc)
    result = _apply(control_plane, "default", doc, "--dry-run=server", check=False)
    assert result.returncode != 0, f"accepted: {json.dumps(doc)}"
    assert "is invalid" in result.stderr
    assert field in result.stderr, result.stderr


def test_there_are_at_least_twenty_invalid_cases() -> None:
    assert len(INVALID) >= 20
    assert len({case[0] for case in INVALID}) == len(INVALID)


def test_model_ref_is_immutable(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    for doc in (VALID_TRAINING_JOB, VALID_MONITOR):
        _apply(control_plane, namespace, doc)
        kind = doc["kind"].lower()
        result = control_plane.kubectl(
            "patch",
            kind,
            doc["metadata"]["name"],
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"modelRef": {"name": "another"}}}',
            check=False,
        )
        assert result.returncode != 0
        assert "spec.modelRef is immutable" in result.stderr


def test_defaults_are_filled_in(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    _apply(control_plane, namespace, VALID_MONITOR)
    stored = json.loads(
        control_plane.kubectl("get", "monitor", "probe-mon", "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"]["schedule"] == "*/30 * * * *"
    assert stored["spec"]["action"] == "retrain"
    assert stored["spec"]["cooldown"] == "6h"


def test_printer_columns_and_category(
    control_plane: ControlPlane, crds: list[str], namespace: str
) -> None:
    _apply(control_plane, namespace, VALID_MODEL)
    _apply(control_plane, namespace, VALID_TRAINING_JOB)
    _apply(control_plane, namespace, VALID_MONITOR)
    control_plane.kubectl(
        "patch",
        "model",
        "probe",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "servingVersion": 2,
                    "latestVersion": 3,
                    "servingScore": 0.93,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Serving",
                            "lastTransitionTime": "2026-11-24T00:00:00Z",
                        }
                    ],
                }
            }
        ),
    )
    out = control_plane.kubectl("get", "models,trainingjobs,monitors", "-n", namespace).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "SERVING", "LATEST", "SCORE", "READY", "AGE"]
    model_row = next(line for line in lines if line.startswith("model.mlkube.io/probe"))
    assert model_row.split()[1:6] == ["classification", "2", "3", "0.93", "True"]
    assert any(
        line.split()[:5] == ["NAME", "MODEL", "TRIGGER", "VERSION", "PHASE"] for line in lines
    )
    assert any(line.split()[:4] == ["NAME", "MODEL", "SCHEDULE", "DRIFT"] for line in lines)
    category = control_plane.kubectl("get", "mlkube", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(category) == [
        "model.mlkube.io/probe",
        "monitor.mlkube.io/probe-mon",
        "trainingjob.mlkube.io/probe-tj",
    ]
    short = control_plane.kubectl("get", "mlm,tj,mon", "-n", namespace, "-o", "name").stdout
    assert sorted(short.split()) == sorted(category)


def test_explain_teaches_the_fields(control_plane: ControlPlane, crds: list[str]) -> None:
    out = control_plane.kubectl("explain", "model.spec.training.validation").stdout
    assert "How a trained version is scored before it may be promoted." in out
    assert "Share of rows held out for testing" in out
    monitor = control_plane.kubectl("explain", "monitor.spec.drift.datasetDriftShare").stdout
    assert "Share of drifted features at which the dataset counts as drifted." in monitor
    status = control_plane.kubectl("explain", "trainingjob.status.artifact.sha256").stdout
    assert "sha256 of the artifact." in status

"""``mlkube drift-check --monitor`` with ``spec.performance`` on the real control plane.

A real ``mlkube train`` iris version serves shifted traffic; labels come back. With fewer
labels than ``minLabels`` the check writes ``status.performance`` with verdict
insufficient-labels, ``LivePerformance=Unknown`` and creates nothing; with enough, the
verdict is degraded, ``LivePerformance=False``, and one TrainingJob with trigger
``performance`` names the labelled live rows it wrote beside its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sklearn.datasets import load_iris
from test_drift_incluster import _apply, _finish, _get, _patch_status, _start_check

from harness.controlplane import REPO, ControlPlane

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
EXAMPLE = REPO / "manifests" / "examples" / "iris-live.yaml"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def _served(plane: ControlPlane, namespace: str, store: Path) -> tuple[dict[str, Any], Path]:
    """iris-live v1 trained into the store and serving (status as the operator sets it),
    a log of 150 shifted predictions an hour ago, and their labels half an hour later."""
    subprocess.run(
        [sys.executable, "-m", "mlkube", "train", "-f", str(EXAMPLE), "--store", str(store),
         "--namespace", namespace],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    model, monitor = list(yaml.safe_load_all(EXAMPLE.read_text()))
    _apply(plane, namespace, model)
    _patch_status(plane, namespace, "models.mlkube.io", "iris-live", {"servingVersion": 1})
    data = load_iris()
    start = NOW - timedelta(hours=1)
    root = store / namespace / "iris-live" / "inference"
    lines, labels = [], []
    for i, (row, label) in enumerate(zip(data.data, data.target, strict=True)):
        inputs = dict(zip(FEATURES, (float(row[0]), row[1] + 2.0, row[2] + 2.0, float(row[3])),
                          strict=True))  # fmt: skip
        ts = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append({"ts": ts, "model": "iris-live", "version": 1, "request_id": f"q{i}",
                      "status": 200, "inputs": inputs, "output": 2})  # fmt: skip
        labels.append({"ts": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "request_id": f"q{i}", "row": 0, "label": int(label)})  # fmt: skip
    for directory, records in ((root, lines), (root / "labels", labels)):
        hour = directory / start.strftime("%Y-%m-%d/%H")
        hour.mkdir(parents=True, exist_ok=True)
        (hour / "w-000001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return monitor, root


def test_minimum_labels_then_a_degraded_live_score_opens_a_performance_run(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    monitor, _ = _served(control_plane, namespace, store)
    monitor["spec"]["performance"]["minLabels"] = 1000
    _apply(control_plane, namespace, monitor)
    reference = f"{namespace}/iris-live"

    code, _, err = _finish(_start_check(control_plane, store, reference, NOW))
    assert code == 0, err
    status = _get(control_plane, namespace, "monitors.mlkube.io", "iris-live")["status"]
    assert status["performance"]["verdict"] == "insufficient-labels", status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["LivePerformance"]["status"] == "Unknown"
    assert _get(control_plane, namespace, "trainingjobs.mlkube.io")["items"] == []

    monitor["spec"]["performance"]["minLabels"] = 100
    _apply(control_plane, namespace, monitor)
    later = NOW + timedelta(minutes=5)
    code, _, err = _finish(_start_check(control_plane, store, reference, later))
    assert code == 0, err
    status = _get(control_plane, namespace, "monitors.mlkube.io", "iris-live")["status"]
    performance = status["performance"]
    assert performance["verdict"] == "degraded" and performance["labels"] == 150
    assert performance["history"][0]["verdict"] == "insufficient-labels"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["LivePerformance"]["status"] == "False"
    assert conditions["LivePerformance"]["reason"] == "LiveScoreDegraded"
    (job,) = _get(control_plane, namespace, "trainingjobs.mlkube.io")["items"]
    assert job["spec"]["trigger"] == "performance"
    assert job["metadata"]["name"].startswith("iris-live-perf-")
    live = job["spec"]["liveRows"]
    rows = (store / namespace / "iris-live" / live["path"]).read_text().splitlines()
    assert live["rows"] == len(rows) == 150 and status["lastTrainingJob"] == job["metadata"]["name"]

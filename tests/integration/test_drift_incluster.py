"""``mlkube drift-check --monitor`` on the real control plane: it writes Monitor.status,
two checks run at the same moment create exactly one drift TrainingJob (owned by the
Model), the cooldown and a running TrainingJob hold back the next one, and a Monitor
whose Model serves nothing fails with exit 2 and only a Drifted=Unknown condition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drift_data import store_version, synthetic_frame
from harness.controlplane import ControlPlane

FEATURES = ["n0", "n1", "n2", "n3", "c0", "c1"]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
MLKUBE = Path(sys.executable).with_name("mlkube")

MODEL: dict[str, Any] = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "churn"},
    "spec": {
        "task": "regression",
        "training": {
            "estimator": {"class": "sklearn.linear_model.LinearRegression"},
            "data": {"uri": "sklearn://diabetes", "target": "target"},
        },
    },
}


def _monitor(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {
            "modelRef": {"name": model},
            "window": {"duration": "12h", "minSamples": 100},
            "drift": {"datasetDriftShare": 0.3},
            "action": "retrain",
            "cooldown": "6h",
        },
    }


def _apply(plane: ControlPlane, namespace: str, doc: dict[str, Any]) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(doc))


def _get(plane: ControlPlane, namespace: str, kind: str, name: str = "") -> Any:
    args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
    return json.loads(plane.kubectl(*args).stdout)


def _patch_status(
    plane: ControlPlane, namespace: str, kind: str, name: str, status: dict[str, Any]
) -> None:
    plane.kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def _start_check(
    plane: ControlPlane, store: Path, reference: str, now: datetime
) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "MLKUBE_STORE_ROOT": str(store)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.Popen(
        [
            str(MLKUBE),
            "drift-check",
            "--monitor",
            reference,
            "--now",
            now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _write_log(store: Path, namespace: str, rows: int, at: datetime) -> None:
    frame = synthetic_frame(rows, seed=2, drifted=True)[FEATURES].astype(object)
    frame.loc[frame.index % 5 == 0, "n3"] = None  # 20% missing: over the 5% limit
    directory = store / namespace / "churn" / "inference" / at.strftime("%Y-%m-%d/%H")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "w1-0.jsonl").open("w") as out:
        for i, record in enumerate(frame.to_dict(orient="records")):
            ts = (at + timedelta(seconds=i % 600)).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.write(
                json.dumps(
                    {
                        "ts": ts,
                        "model": "churn",
                        "version": 1,
                        "request_id": str(i),
                        "status": 200,
                        "inputs": record,
                        "output": 1.0,
                    }
                )
                + "\n"
            )


@pytest.fixture
def served(control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path) -> Path:
    """A Model serving v1 (status set as the operator would), its version and a drifted log."""
    store = tmp_path / "store"
    store_version(
        store, synthetic_frame(3_000, seed=1, drifted=False)[FEATURES], namespace=namespace
    )
    _write_log(store, namespace, 1_200, NOW - timedelta(minutes=30))
    _apply(control_plane, namespace, MODEL)
    _patch_status(control_plane, namespace, "models.mlkube.io", "churn", {"servingVersion": 1})
    _apply(control_plane, namespace, _monitor("churn-watch", "churn"))
    return store


def test_concurrent_checks_write_status_and_create_one_training_job(
    control_plane: ControlPlane, namespace: str, served: Path
) -> None:
    reference = f"{namespace}/churn-watch"
    first = _start_check(control_plane, served, reference, NOW)
    second = _start_check(control_plane, served, reference, NOW + timedelta(seconds=20))
    results = [_finish(first), _finish(second)]
    assert [code for code, _, _ in results] == [0, 0], results
    jobs = _get(control_plane, namespace, "trainingjobs.mlkube.io")["items"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    job = jobs[0]
    model = _get(control_plane, namespace, "models.mlkube.io", "churn")
    assert job["spec"]["trigger"] == "drift" and job["spec"]["modelRef"] == {"name": "churn"}
    assert "drift in" in job["spec"]["reason"] and "n1" in job["spec"]["reason"]
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Model",
        "churn",
        model["metadata"]["uid"],
    )
    messages = " ".join(out for _, out, _ in results)
    assert f"created TrainingJob {job['metadata']['name']}" in messages

    monitor = _get(control_plane, namespace, "monitors.mlkube.io", "churn-watch")
    status = monitor["status"]
    assert status["verdict"] == "drift" and status["datasetDrift"] is True
    assert status["samples"] == 1_200 and status["checkedVersion"] == 1
    assert status["lastTrainingJob"] == job["metadata"]["name"]
    assert status["observedGeneration"] == monitor["metadata"]["generation"]
    assert status["features"]["n1"]["drifted"] is True
    drifted = [c for c in status["conditions"] if c["type"] == "Drifted"]
    assert len(drifted) == 1 and drifted[0]["status"] == "True"
    assert drifted[0]["reason"] == "DatasetDrift"
    assert Path(status["lastReport"]).is_file()
    quality = status["dataQuality"]
    assert quality["violations"] >= 1
    missing = [f for f in quality["findings"] if f["feature"] == "n3"]
    assert missing and missing[0]["finding"] == "missing-fraction"
    assert missing[0]["value"] == pytest.approx(0.2, abs=0.01)


def test_running_job_and_cooldown_hold_back_retraining(
    control_plane: ControlPlane, namespace: str, served: Path
) -> None:
    reference = f"{namespace}/churn-watch"
    assert _finish(_start_check(control_plane, served, reference, NOW))[0] == 0
    (job,) = _get(control_plane, namespace, "trainingjobs.mlkube.io")["items"]
    name = job["metadata"]["name"]

    code, out, _ = _finish(_start_check(control_plane, served, reference, NOW + timedelta(hours=7)))
    assert code == 0 and f"TrainingJob {name} is still running" in out

    _patch_status(control_plane, namespace, "trainingjobs.mlkube.io", name, {"phase": "Succeeded"})
    code, out, _ = _finish(_start_check(control_plane, served, reference, NOW + timedelta(hours=2)))
    assert code == 0 and "cooldown until" in out
    assert len(_get(control_plane, namespace, "trainingjobs.mlkube.io")["items"]) == 1

    code, out, _ = _finish(_start_check(control_plane, served, reference, NOW + timedelta(hours=7)))
    assert code == 0 and "created TrainingJob" in out
    assert len(_get(control_plane, namespace, "trainingjobs.mlkube.io")["items"]) == 2


def test_model_without_serving_version_fails_without_a_partial_status(
    control_plane: ControlPlane, namespace: str, served: Path
) -> None:
    other = {**MODEL, "metadata": {"name": "idle"}}
    _apply(control_plane, namespace, other)
    _apply(control_plane, namespace, _monitor("idle-watch", "idle"))
    code, _, err = _finish(_start_check(control_plane, served, f"{namespace}/idle-watch", NOW))
    assert code == 2 and "serves no version" in err
    status = _get(control_plane, namespace, "monitors.mlkube.io", "idle-watch")["status"]
    assert "verdict" not in status and "lastCheckTime" not in status
    (condition,) = [c for c in status["conditions"] if c["type"] == "Drifted"]
    assert (condition["status"], condition["reason"]) == ("Unknown", "NoServingVersion")
    assert _get(control_plane, namespace, "trainingjobs.mlkube.io")["items"] == []

    code, _, err = _finish(_start_check(control_plane, served, f"{namespace}/absent", NOW))
    assert code == 2 and "not found" in err

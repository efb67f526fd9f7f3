"""Retrain when the data changes, in a cluster whose pods run (control plane + node agent).

The data is a CSV file on a claim the node agent provisioned; the Model trains from
``pvc://data/iris.csv`` with ``retrainWhen: DataChanged``. Its schedule fires once a year,
so the test makes each firing due by moving ``status.lastScheduledTraining`` back (what
time passing does). The real check Job reads the file in its pod:

- unchanged: the check reports the same digest, and no run starts;
- rewritten in place (new rows arrive): the check reports a new digest, and exactly one
  TrainingJob with trigger ``data-change`` starts and trains v2 on the new data.

The operator and the node agent are this module's; pods run in the agent's namespaces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sklearn.datasets import load_iris

from demo.processes import agent_and_operator
from harness.controlplane import ControlPlane
from nodeagent.kube import Kube
from nodeagent.testing import wait_for

GROUP = "/apis/mlkube.io/v1alpha1"
T = TypeVar("T")


def wait(what: str, probe: Callable[[], T | None], timeout: float = 180) -> T:
    found: T = wait_for(what, probe, timeout=timeout, interval=0.5)
    return found


@pytest.fixture
def cluster(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[Kube]:
    kube = Kube(control_plane.kubeconfig)
    try:
        with agent_and_operator(control_plane.kubeconfig, namespace, tmp_path):
            yield kube
    finally:
        kube.close()


def claim(kube: Kube, namespace: str, name: str) -> Path:
    """A claim the agent provisions as a host directory; returns that directory."""
    path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    kube.create(path, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    volume = wait(f"{name} bound", lambda: kube.get(f"{path}/{name}")["spec"].get("volumeName"))
    pv = kube.get(f"/api/v1/persistentvolumes/{volume}")
    return Path((pv["spec"].get("hostPath") or pv["spec"]["local"])["path"])


def write_data(directory: Path, rows: int) -> None:
    frame = load_iris(as_frame=True).frame.sample(n=rows, random_state=rows)
    target = directory / "iris.csv"
    frame.to_csv(target, index=False)
    target.chmod(0o644)


def model() -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "fresh"},
        "spec": {
            "task": "classification",
            "training": {
                "estimator": {"class": "sklearn.linear_model.LogisticRegression",
                              "params": {"max_iter": 500}},
                "data": {"uri": "pvc://data/iris.csv", "target": "target"},
                "validation": {"metric": "f1_macro"},
                "schedule": "0 0 1 1 *",
                "retrainWhen": "DataChanged",
            },
            "promotion": {"policy": "auto", "minScore": 0.5},
        },
    }  # fmt: skip


def test_an_unchanged_file_starts_no_run_and_a_rewritten_one_starts_one(
    cluster: Kube, namespace: str
) -> None:
    kube = cluster
    models = f"{GROUP}/namespaces/{namespace}/models"
    runs = f"{GROUP}/namespaces/{namespace}/trainingjobs"
    claim(kube, namespace, "mlkube-models")
    data = claim(kube, namespace, "data")
    data.chmod(0o755)
    write_data(data, 120)
    kube.create(models, model())

    def status() -> dict[str, Any]:
        return dict(kube.get(f"{models}/fresh").get("status") or {})

    def triggers() -> list[str]:
        return sorted(t["spec"]["trigger"] for t in kube.get(runs)["items"])

    def fire() -> None:
        """The next firing is due: the last one moves back a few years."""
        past = {"status": {"lastScheduledTraining": "2020-01-01T00:00:00Z"}}
        kube.merge_patch(f"{models}/fresh/status", past)

    v1 = wait("v1 trained", lambda: next(iter(status().get("versions") or []), None))
    digest = v1["lineage"]["data"]["sha256"]

    fire()

    def checked() -> dict[str, Any] | None:
        found = status().get("dataCheck") or {}
        return found if found.get("checkedAt") else None

    check = wait("the first check", checked)
    assert check["changed"] is False and check["sha256"] == digest == check["expectedSha256"]
    assert triggers() == ["initial"]  # unchanged: no run

    # The Job's TTL would remove it; the test does, so the next firing may use its name.
    job = f"/apis/batch/v1/namespaces/{namespace}/jobs/{check['job']}"
    kube.delete(job, {"propagationPolicy": "Foreground"})
    wait("the check Job gone", lambda: kube.find(job) is None)
    write_data(data, 150)  # new rows arrive, written in place
    fire()

    def changed() -> dict[str, Any] | None:
        found = status().get("dataCheck") or {}
        return found if found.get("changed") else None

    check = wait("the second check", changed)
    assert check["sha256"] != digest and check["expectedSha256"] == digest
    assert triggers() == ["data-change", "initial"]
    (run,) = [t for t in kube.get(runs)["items"] if t["spec"]["trigger"] == "data-change"]
    assert run["metadata"]["name"] == check["trainingJob"]

    def v2() -> dict[str, Any] | None:
        return next((v for v in status().get("versions") or [] if v["version"] == 2), None)

    trained = wait("v2 trained on the new data", v2)
    assert trained["trigger"] == "data-change"
    assert trained["lineage"]["data"]["sha256"] == check["sha256"]
    print(json.dumps({"check": check, "v2": trained["reason"]}))

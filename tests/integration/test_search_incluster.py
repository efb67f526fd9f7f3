"""A model search in a cluster: one Indexed Job on the control plane, its pods run by the
node agent, then the select Job; the operator is killed with SIGKILL in the middle.

Covers: 12 trials with parallelism 3 give an Indexed Job with those numbers (and
``backoffLimitPerIndex``, the podFailurePolicy); an impossible trial is recorded as
failed and the best of the rest becomes the version; an operator killed mid-search and
started again loses no trial result and makes no second Job; the version's
``metadata.json`` holds all 12 rows and the winner kept its own pipeline; the kubectl
plugin shows the table and the winner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from demo.processes import start_node_agent, start_operator, stop
from harness.controlplane import ControlPlane
from nodeagent.kube import Kube

T = TypeVar("T")
GROUP = "/apis/mlkube.io/v1alpha1"
PLUGIN = Path(sys.executable).with_name("kubectl-mlkube")
IMPOSSIBLE = 10  # the index of the l1 + lbfgs trial below

SEARCH_MODEL: dict[str, Any] = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "wine"},
    "spec": {
        "task": "classification",
        "training": {
            "data": {"uri": "sklearn://wine", "target": "target"},
            "validation": {"metric": "f1_macro", "folds": 3, "randomSeed": 1},
            "search": {
                "parallelism": 3,
                "candidates": [
                    {
                        "class": "sklearn.neighbors.KNeighborsClassifier",
                        "grid": {"n_neighbors": [1, 5, 9], "weights": ["uniform", "distance"]},
                    },
                    {
                        "class": "sklearn.tree.DecisionTreeClassifier",
                        "grid": {"max_depth": [2, 4], "min_samples_leaf": [1, 5]},
                    },
                    {
                        "class": "sklearn.linear_model.LogisticRegression",
                        "params": {"penalty": "l1", "solver": "lbfgs"},
                    },
                    {
                        "class": "sklearn.neighbors.KNeighborsClassifier",
                        "grid": {"n_neighbors": [15]},
                    },
                ],
            },
        },
        "promotion": {"policy": "auto"},
    },
}


def _wait(what: str, probe: Callable[[], T | None], timeout: float = 300) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _phase_done(kube: Kube, path: str) -> dict[str, Any] | None:
    found = kube.get(path)
    return found if found.get("status", {}).get("phase") in ("Succeeded", "Failed") else None


def _plugin(plane: ControlPlane, namespace: str, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    return subprocess.run(
        [str(PLUGIN), "-n", namespace, *args],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    ).stdout  # fmt: skip


def _store(kube: Kube, namespace: str) -> Path:
    """The host directory the node agent provisioned for the store claim."""
    pvc = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/mlkube-models")
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    return Path(pv["spec"]["hostPath"]["path"])


def _start_search(kube: Kube, namespace: str) -> dict[str, Any]:
    """Applies the store claim and the Model; returns the trials Job once it exists."""
    kube.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "mlkube-models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    kube.create(f"{GROUP}/namespaces/{namespace}/models", SEARCH_MODEL)
    return _wait(
        "the trials Job",
        lambda: kube.find(f"/apis/batch/v1/namespaces/{namespace}/jobs/wine-v1-train"),
    )


def test_a_12_trial_search_survives_a_killed_operator(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    kube = Kube(control_plane.kubeconfig)
    agent = start_node_agent(
        control_plane.kubeconfig, tmp_path / "agent", namespace, tmp_path / "agent.log"
    )
    operator = start_operator(control_plane.kubeconfig, namespace, tmp_path / "operator.log")
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    try:
        trials = _start_search(kube, namespace)
        spec = trials["spec"]
        assert spec["completionMode"] == "Indexed"
        assert (spec["completions"], spec["parallelism"], spec["backoffLimitPerIndex"]) == (
            12,
            3,
            1,
        )
        assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailJob"

        _wait("a first trial", lambda: kube.get(f"{jobs}/wine-v1-train")["status"].get("succeeded"))
        _kill9(operator)
        time.sleep(3)  # the trials go on without the operator
        operator = start_operator(control_plane.kubeconfig, namespace, tmp_path / "operator.log")

        tj = _wait(
            "the search to finish",
            lambda: _phase_done(kube, f"{GROUP}/namespaces/{namespace}/trainingjobs/wine-v1"),
            timeout=600,
        )
        status = tj["status"]
        assert status["phase"] == "Succeeded", json.dumps(status)[:3000]
        assert sorted(j["metadata"]["name"] for j in kube.get(jobs)["items"]) == [
            "wine-v1-select",
            "wine-v1-train",
        ]
        assert kube.get(f"{jobs}/wine-v1-train")["metadata"]["uid"] == trials["metadata"]["uid"]

        assert status["trials"] == {"total": 12, "succeeded": 11, "failed": 1}
        rows = status["trialResults"]
        assert [r["trial"] for r in rows] == list(range(12))
        assert rows[IMPOSSIBLE]["status"] == "Failed" and "l1" in rows[IMPOSSIBLE]["error"]
        completed = [r for r in rows if r["status"] == "Completed"]
        best = max(completed, key=lambda r: (r["score"], -r["trial"]))
        assert status["bestTrial"] == best["trial"]

        model = _wait(
            "v1 in the registry",
            lambda: (m := kube.get(f"{GROUP}/namespaces/{namespace}/models/wine"))
            .get("status", {}).get("versions") and m,
        )  # fmt: skip
        metadata = json.loads(
            (_store(kube, namespace) / namespace / "wine/v1/metadata.json").read_text()
        )
        table = metadata["search"]["trials"]
        assert len(table) == 12
        assert metadata["search"]["bestTrial"] == best["trial"]
        assert table[IMPOSSIBLE]["status"] == "Failed"
        # the winner kept its own pipeline, whatever order the trials ended in
        assert table[best["trial"]]["pipeline"] is True and metadata["search"]["refit"] is False
        assert rows[best["trial"]]["pipeline"] is True
        assert [r["score"] for r in table] == [r.get("score") for r in rows]
        assert metadata["artifact"]["sha256"] == model["status"]["versions"][0]["sha256"]

        shown = _plugin(control_plane, namespace, "trials", "wine-v1")
        assert f"{best['trial']}*" in shown and "11 succeeded, 1 failed, 12 in all" in shown
        assert "PIPELINE" in shown.splitlines()[0]
        versions = _plugin(control_plane, namespace, "versions", "wine")
        assert f"trial {best['trial']} of 12" in versions
    except AssertionError:
        print((tmp_path / "operator.log").read_text()[-6000:])
        print((tmp_path / "agent.log").read_text()[-4000:])
        raise
    finally:
        stop(operator)
        stop(agent)
        kube.close()

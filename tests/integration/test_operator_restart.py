"""Killing the operator (SIGKILL) at several points and starting it again never duplicates
a TrainingJob, Job, Deployment or CronJob, and every Model still converges.

Each test here runs its own ``mlkube operator --namespace`` subprocess, so it can kill it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import OperatorKit, OperatorProcess, kstatus, trainer_summary
from harness.controlplane import ControlPlane
from reliability.workspace import bundled_model

MODELS = [f"m{i}" for i in range(6)]


def manifests(ns: str) -> str:
    docs: list[dict[str, Any]] = []
    for name in MODELS:
        docs.append(bundled_model(name))
    docs.append(
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "m0"},
            "spec": {"modelRef": {"name": "m0"}},
        }
    )
    return "\n---\n".join(json.dumps(d) for d in docs)


def test_killed_and_restarted_operator_makes_nothing_twice_and_converges(
    control_plane: ControlPlane, crds: list[str], kit: OperatorKit, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"

    def start() -> OperatorProcess:
        return OperatorProcess.start(control_plane, log, "--namespace", kit.ns)

    operator = start()
    try:
        kit.kubectl("apply", "-f", "-", input_text=manifests(kit.ns))
        for pause in (0.3, 0.7):  # kill it mid-reconcile, twice
            time.sleep(pause)
            operator.kill()
            operator = start()
        jobs = kit.wait(
            "a Job per Model",
            lambda: (
                (j := kit.list("jobs"))
                and len([x for x in j if x["metadata"]["name"].endswith("-train")]) >= len(MODELS)
                and j
            ),
            timeout=60,
        )
        time.sleep(2)  # let a duplicate, if there were one, appear
        training_jobs = kit.list("trainingjobs")
        assert sorted(t["metadata"]["name"] for t in training_jobs) == [f"{m}-v1" for m in MODELS]
        trainer_jobs = sorted(
            j["metadata"]["name"]
            for j in kit.list("jobs")
            if j["metadata"]["labels"].get("mlkube.io/component") == "trainer"
        )
        assert trainer_jobs == [f"{m}-v1-train" for m in MODELS]
        assert len(jobs) >= len(MODELS)
        for tj in training_jobs:
            job = kit.get("job", f"{tj['metadata']['name']}-train")
            assert job is not None
            assert job["metadata"]["labels"]["mlkube.io/version"] == str(tj["status"]["version"])
        cronjobs = [c["metadata"]["name"] for c in kit.list("cronjobs")]
        assert cronjobs == ["m0-drift"]

        versions = {}
        for tj in training_jobs:
            name = tj["metadata"]["name"]
            version = int(tj["status"]["version"])
            versions[name[:-3]] = version
            pod = kit.job_pod(f"{name}-train")
            kit.finish_pod(
                pod["metadata"]["name"],
                0,
                trainer_summary(version, 0.5, metric="r2", namespace=kit.ns, model=name[:-3]),
            )
        time.sleep(0.5)
        operator.kill()
        operator = start()
        for model, version in versions.items():
            kit.wait(
                f"{model} serving",
                lambda m=model, v=version: kit.status("model", m).get("servingVersion") == v,
                timeout=60,
            )
        for model in MODELS:
            status = kit.status("model", model)
            assert len(status["versions"]) == 1
            assert len(status["promotions"]) == 1
        deployments = sorted(d["metadata"]["name"] for d in kit.list("deployments"))
        assert deployments == [f"{m}-predictor" for m in MODELS]
        assert len(kit.list("replicasets")) == len(MODELS)
        assert all(kstatus(kit.get("model", m)) == "InProgress" for m in MODELS)
    finally:
        code = operator.stop()
    assert code == 0, operator.tail()

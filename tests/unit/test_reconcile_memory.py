"""The Model and TrainingJob reconcilers driven through an in-memory API, without a cluster.

Each test plays one story the control-plane tests also play, but step by step, so the
state after every reconcile can be read: the first run, a promotion and a rejection,
a pin, a 409 on the Model's status, a foreign object in the predictor's way, a crash
between reserving a version and recording it, and a pod that forges a trainer's summary.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kube_memory import MemoryKube, controller, sync

from mlkube.api import names
from mlkube.controller.children import Controller
from mlkube.controller.handlers.model import CONFLICT_RETRY, reconcile_model
from mlkube.controller.handlers.trainingjob import reconcile_training_job
from mlkube.controller.settings import OperatorSettings

NS = "team"
SETTINGS = OperatorSettings(runtime_image="registry.local/mlkube-runtime:1")


def model_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "classification",
        "training": {
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "data": {"uri": "sklearn://iris", "target": "target"},
        },
    }
    body.update(spec)
    return {
        "apiVersion": names.API_VERSION,
        "kind": "Model",
        "metadata": {"name": "iris", "namespace": NS},
        "spec": body,
    }


def manual_run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "manual"},
    }


def summary(version: int, score: float) -> str:
    return json.dumps(
        {
            "version": version,
            "metric": "accuracy",
            "higherIsBetter": True,
            "score": score,
            "metrics": {"accuracy": score},
            "slices": [],
            "artifact": {"uri": f"pvc://store/{NS}/iris/v{version}", "sha256": "a" * 64},
        }
    )


def pod_of(job: dict[str, Any], name: str, message: str, *, owned: bool = True) -> dict[str, Any]:
    """A succeeded trainer pod; ``owned=False`` is a forgery that only copies the labels."""
    meta = job["metadata"]
    refs = [{"kind": "Job", "name": meta["name"], "uid": meta["uid"], "controller": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {**meta["labels"], "batch.kubernetes.io/job-name": meta["name"]},
            "ownerReferences": refs if owned else [],
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": message}}}],
        },
    }


def complete_job(kube: MemoryKube, tj: str, score: float, *, forged: float | None = None) -> None:
    """The Job controller and the kubelet: the Job completes, its pod says ``score``."""
    job = kube.find("Job", NS, names.job_name(tj))
    assert job is not None
    version = int(job["metadata"]["labels"][names.LABEL_VERSION])
    if forged is not None:
        kube.put(pod_of(job, f"{tj}-forged", summary(version, forged), owned=False))
    kube.put(pod_of(job, f"{tj}-train-pod", summary(version, score)))
    job["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
        "completionTime": "2026-01-01T00:05:00Z",
    }
    kube.put(job)


def roll_out(kube: MemoryKube) -> None:
    """The Deployment controller: every replica updated and available."""
    deployment = kube.find("Deployment", NS, "iris-predictor")
    assert deployment is not None
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    }
    kube.put(deployment)


async def model_pass(ctl: Controller) -> float | None:
    requeue = await reconcile_model(ctl, NS, "iris")
    sync(ctl)
    return requeue


async def run_pass(ctl: Controller, tj: str) -> float | None:
    requeue = await reconcile_training_job(ctl, NS, tj)
    sync(ctl)
    return requeue


def status(kube: MemoryKube, kind: str, name: str) -> dict[str, Any]:
    found = kube.find(kind, NS, name)
    assert found is not None
    return dict(found.get("status") or {})


def condition(kube: MemoryKube, kind: str, name: str, kind_of: str) -> dict[str, Any] | None:
    conditions = status(kube, kind, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind_of), None)


def events(kube: MemoryKube, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.of_kind("Event") if e["reason"] == reason]


async def trained(ctl: Controller, kube: MemoryKube, tj: str, score: float) -> None:
    """One run from its reservation to Succeeded, then the Model's decision about it."""
    await model_pass(ctl)
    await run_pass(ctl, tj)
    complete_job(kube, tj, score)
    sync(ctl)
    await run_pass(ctl, tj)
    await model_pass(ctl)


@pytest.fixture
def kube() -> MemoryKube:
    memory = MemoryKube()
    memory.put(model_body())
    return memory


@pytest.mark.asyncio
async def test_first_run_reserves_v1_then_the_run_records_it_and_makes_its_job(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)
    tj = kube.find("TrainingJob", NS, "iris-v1")
    assert tj is not None and tj["spec"]["trigger"] == "initial"
    model = status(kube, "Model", "iris")
    assert model["allocatedVersion"] == 1
    assert [(r["trainingJob"], r["version"]) for r in model["reservations"]] == [("iris-v1", 1)]
    assert status(kube, "TrainingJob", "iris-v1") == {}  # the Model never writes a run
    await run_pass(ctl, "iris-v1")
    assert status(kube, "TrainingJob", "iris-v1")["version"] == 1
    job = kube.find("Job", NS, "iris-v1-train")
    assert job is not None and job["metadata"]["labels"][names.LABEL_VERSION] == "1"
    assert job["metadata"]["ownerReferences"][0]["uid"] == tj["metadata"]["uid"]


@pytest.mark.asyncio
async def test_promotion_then_rejection_each_status_written_by_its_own_reconciler(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    await trained(ctl, kube, "iris-v1", 0.95)
    model = status(kube, "Model", "iris")
    assert model["servingVersion"] == 1 and model["versions"][0]["decision"] == "Promoted"
    assert condition(kube, "Model", "iris", "Ready")["status"] == "False"  # rolling out
    roll_out(kube)
    sync(ctl)
    await model_pass(ctl)
    assert condition(kube, "Model", "iris", "Ready")["status"] == "True"
    assert len(events(kube, "VersionPromoted")) == 1

    kube.put(manual_run("iris-retry"))
    sync(ctl)
    await trained(ctl, kube, "iris-retry", 0.80)
    model = status(kube, "Model", "iris")
    assert model["servingVersion"] == 1
    assert model["versions"][1]["decision"] == "Rejected"
    assert status(kube, "TrainingJob", "iris-retry")["phase"] == "Succeeded"
    await run_pass(ctl, "iris-retry")  # the run learns of the rejection itself
    run = status(kube, "TrainingJob", "iris-retry")
    assert run["phase"] == "Rejected" and "not promoted" in run["message"]
    assert len(events(kube, "VersionRejected")) == 1
    writers = {(verb, name) for verb, kind, name in kube.requests if kind == "TrainingJob"}
    assert ("patch_status", "iris-retry") in writers


@pytest.mark.asyncio
async def test_a_pin_serves_the_pinned_version_and_a_missing_one_stalls_with_one_event(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    await trained(ctl, kube, "iris-v1", 0.95)
    kube.put(manual_run("iris-retry"))
    sync(ctl)
    await trained(ctl, kube, "iris-retry", 0.80)
    pinned = kube.find("Model", NS, "iris")
    assert pinned is not None
    pinned["spec"]["serving"] = {"version": 2}
    kube.put(pinned)
    sync(ctl)
    await model_pass(ctl)
    assert status(kube, "Model", "iris")["servingVersion"] == 2
    deployment = kube.find("Deployment", NS, "iris-predictor")
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["labels"][names.LABEL_VERSION] == "2"

    pinned = kube.find("Model", NS, "iris")
    assert pinned is not None
    pinned["spec"]["serving"] = {"version": 7}
    kube.put(pinned)
    sync(ctl)
    await model_pass(ctl)
    await model_pass(ctl)
    stalled = condition(kube, "Model", "iris", "Stalled")
    assert stalled is not None and stalled["reason"] == "InvalidPin"
    assert status(kube, "Model", "iris")["servingVersion"] == 2  # the pin never breaks serving
    assert len(events(kube, "InvalidPin")) == 1


@pytest.mark.asyncio
async def test_a_409_on_the_model_status_is_retried_and_never_doubles_a_version(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    kube.conflicts["Model"] = 1
    assert await model_pass(ctl) == CONFLICT_RETRY
    assert "allocatedVersion" not in status(kube, "Model", "iris")
    await model_pass(ctl)
    await model_pass(ctl)
    model = status(kube, "Model", "iris")
    assert model["allocatedVersion"] == 1
    assert [t["metadata"]["name"] for t in kube.of_kind("TrainingJob")] == ["iris-v1"]
    await run_pass(ctl, "iris-v1")
    assert status(kube, "TrainingJob", "iris-v1")["version"] == 1


@pytest.mark.asyncio
async def test_a_foreign_deployment_in_the_way_stalls_the_model_and_names_it(
    kube: MemoryKube,
) -> None:
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "iris-predictor", "namespace": NS, "labels": {"team": "other"}},
        "spec": {"replicas": 3},
    }
    kube.put(foreign)
    ctl = controller(kube, SETTINGS)
    await trained(ctl, kube, "iris-v1", 0.95)
    await model_pass(ctl)
    stalled = condition(kube, "Model", "iris", "Stalled")
    assert stalled is not None and stalled["reason"] == "NotOwned"
    assert "Deployment iris-predictor" in stalled["message"]
    assert condition(kube, "Model", "iris", "Ready")["reason"] == "NotOwned"
    assert condition(kube, "Model", "iris", "Reconciling") is None
    notices = events(kube, "NotOwned")
    assert len(notices) == 1 and "Deployment iris-predictor" in notices[0]["message"]
    untouched = kube.find("Deployment", NS, "iris-predictor")
    assert untouched is not None and untouched["spec"] == {"replicas": 3}
    assert ("apply", "Deployment", "iris-predictor") not in kube.requests


@pytest.mark.asyncio
async def test_a_crash_between_reserving_and_recording_gives_the_run_the_same_number(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)  # v1 reserved for iris-v1 on the Model; the run never hears of it
    kube.put(manual_run("iris-retry"))
    restarted = controller(kube, SETTINGS)  # a new process: a new cache, nothing remembered
    await model_pass(restarted)
    reservations = status(kube, "Model", "iris")["reservations"]
    assert sorted((r["trainingJob"], r["version"]) for r in reservations) == [
        ("iris-retry", 2),
        ("iris-v1", 1),
    ]
    await run_pass(restarted, "iris-v1")
    await run_pass(restarted, "iris-retry")
    assert status(kube, "TrainingJob", "iris-v1")["version"] == 1
    assert status(kube, "TrainingJob", "iris-retry")["version"] == 2
    await model_pass(restarted)
    assert status(kube, "Model", "iris")["allocatedVersion"] == 2  # no gap, no reuse


@pytest.mark.asyncio
async def test_only_the_jobs_own_pod_is_read_a_forged_summary_is_ignored(
    kube: MemoryKube,
) -> None:
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)
    await run_pass(ctl, "iris-v1")
    complete_job(kube, "iris-v1", 0.91, forged=1.0)
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    run = status(kube, "TrainingJob", "iris-v1")
    assert run["phase"] == "Succeeded" and run["score"] == 0.91

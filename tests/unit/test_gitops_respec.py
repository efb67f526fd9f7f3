"""A merged edit of a Model trains what Git says: one run per settled edit, nothing for
cosmetic ones, Progressing until the outcome is known, Degraded when it is rejected.

Driven through the in-memory API with a fake clock for the settling time; Argo CD's
verdict comes from the shipped health script run in Lua (``harness.gitops``).
"""

from __future__ import annotations

from typing import Any

import pytest
from kube_memory import MemoryKube, controller, sync
from test_reconcile_memory import NS, complete_job, model_body, roll_out, run_pass

from harness.gitops import argocd_health
from mlkube.api.conditions import kstatus
from mlkube.controller import respec
from mlkube.controller.children import Controller
from mlkube.controller.handlers.model import reconcile_model
from mlkube.controller.settings import OperatorSettings

SETTINGS = OperatorSettings(runtime_image="registry.local/mlkube-runtime:1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(respec, "time", fake)
    return fake


async def model_pass(ctl: Controller) -> float | None:
    requeue = await reconcile_model(ctl, NS, "iris")
    sync(ctl)
    return requeue


async def serving_v1(kube: MemoryKube) -> Controller:
    """A Model trained, promoted and available at v1."""
    kube.put(model_body(promotion={"minScore": 0.5}))
    ctl = controller(kube, SETTINGS)
    await model_pass(ctl)
    await run_pass(ctl, "iris-v1")
    complete_job(kube, "iris-v1", 0.9)
    sync(ctl)
    await run_pass(ctl, "iris-v1")
    await model_pass(ctl)
    roll_out(kube)
    sync(ctl)
    await model_pass(ctl)
    assert kstatus(kube.find("Model", NS, "iris")) == "Current"
    return ctl


def edit(kube: MemoryKube, change: Any) -> dict[str, Any]:
    body = kube.find("Model", NS, "iris")
    assert body is not None
    change(body)
    body["metadata"]["generation"] += 1
    return kube.put(body)


def spec_runs(kube: MemoryKube) -> list[dict[str, Any]]:
    return [t for t in kube.of_kind("TrainingJob") if t["spec"]["trigger"] == "spec-change"]


def params(value: int) -> Any:
    def change(body: dict[str, Any]) -> None:
        body["spec"]["training"]["estimator"]["params"] = {"max_iter": value}

    return change


@pytest.mark.asyncio
async def test_a_params_edit_trains_once_after_the_edits_settle(clock: Clock) -> None:
    kube = MemoryKube()
    ctl = await serving_v1(kube)
    for value in (100, 200, 300, 400, 500):  # five edits within two seconds
        edited = edit(kube, params(value))
        sync(ctl)
        assert await model_pass(ctl) is not None  # asks to look again once settled
        clock.now += 0.3
    assert spec_runs(kube) == []
    assert argocd_health(kube.find("Model", NS, "iris"))["status"] == "Progressing"
    clock.now += respec.QUIET_SECONDS
    await model_pass(ctl)
    await model_pass(ctl)
    runs = spec_runs(kube)
    assert [r["metadata"]["name"] for r in runs] == [f"iris-g{edited['metadata']['generation']}"]
    assert runs[0]["metadata"]["annotations"][respec.SPEC_GENERATION] == str(
        edited["metadata"]["generation"]
    )


@pytest.mark.asyncio
async def test_label_serving_and_placement_edits_train_nothing(clock: Clock) -> None:
    kube = MemoryKube()
    ctl = await serving_v1(kube)

    def cosmetic(body: dict[str, Any]) -> None:
        body["metadata"]["labels"] = {"team": "blue"}
        body["spec"]["serving"] = {"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}
        body["spec"]["training"]["nodeSelector"] = {"pool": "cpu"}
        body["spec"]["training"]["schedule"] = "0 3 * * *"

    edit(kube, cosmetic)
    sync(ctl)
    clock.now += 60
    await model_pass(ctl)
    await model_pass(ctl)
    assert spec_runs(kube) == []
    assert kstatus(kube.find("Model", NS, "iris")) in ("Current", "InProgress")
    reconciling = [
        c
        for c in kube.find("Model", NS, "iris")["status"]["conditions"]  # type: ignore[index]
        if c["type"] == "Reconciling"
    ]
    assert all(c["reason"] != "SpecChanged" for c in reconciling)


async def train_the_edit(
    kube: MemoryKube, ctl: Controller, clock: Clock, score: float
) -> tuple[str, dict[str, Any]]:
    edit(kube, params(900))
    sync(ctl)
    await model_pass(ctl)
    clock.now += respec.QUIET_SECONDS + 1
    await model_pass(ctl)
    (run,) = spec_runs(kube)
    name = run["metadata"]["name"]
    await model_pass(ctl)
    await run_pass(ctl, name)
    during = kube.find("Model", NS, "iris")
    complete_job(kube, name, score)
    sync(ctl)
    await run_pass(ctl, name)
    await model_pass(ctl)
    return name, during  # type: ignore[return-value]


@pytest.mark.asyncio
async def test_progressing_while_the_edit_trains_then_current_once_it_serves(
    clock: Clock,
) -> None:
    kube = MemoryKube()
    ctl = await serving_v1(kube)
    _, during = await train_the_edit(kube, ctl, clock, 0.95)
    assert kstatus(during) == "InProgress"
    assert argocd_health(during)["status"] == "Progressing"
    roll_out(kube)
    sync(ctl)
    await model_pass(ctl)
    model = kube.find("Model", NS, "iris")
    assert model is not None and model["status"]["servingVersion"] == 2
    entry = model["status"]["versions"][-1]
    assert entry["generation"] == model["metadata"]["generation"]
    assert kstatus(model) == "Current"


@pytest.mark.asyncio
async def test_a_rejected_edit_keeps_the_old_version_serving_and_reads_degraded(
    clock: Clock,
) -> None:
    kube = MemoryKube()
    ctl = await serving_v1(kube)
    await train_the_edit(kube, ctl, clock, 0.2)  # below promotion.minScore
    await model_pass(ctl)
    model = kube.find("Model", NS, "iris")
    assert model is not None and model["status"]["servingVersion"] == 1
    stalled = next(c for c in model["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "SpecRejected"
    assert "v2" in stalled["message"] and "v1 keeps serving" in stalled["message"]
    assert argocd_health(model)["status"] == "Degraded"
    assert kstatus(model) == "Failed"
    events = [e for e in kube.of_kind("Event") if e["reason"] == "SpecRejected"]
    assert len(events) == 1

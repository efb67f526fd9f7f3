"""A canary rollout through the Model reconciler, on the in-memory API with real HTTP.

The predictors' ``/metrics`` pages are served on loopback by this test (the pods in
the memory API point their IP and port there), so the analysis scrapes, parses and
judges exactly as in a cluster. Time passing is the test moving the window's start
back in the Model's status; nothing sleeps. Stories: a clean candidate is promoted and
its canary retired only once stable serves it; a shifted one is rolled back with the
figures, an Event and a Rejected TrainingJob; ``rollout abort`` ends one early; a
Gateway API parent gives an HTTPRoute with exact weights.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kube_memory import MemoryKube, controller, sync
from test_canary_analysis import exposition
from test_reconcile_memory import (
    NS,
    SETTINGS,
    condition,
    events,
    manual_run,
    model_body,
    model_pass,
    roll_out,
    run_pass,
    status,
    trained,
)

from mlkube.api import names
from mlkube.controller.children import Controller
from mlkube.controller.kube import ApiError

ROLLOUT = {"strategy": "Canary", "canaryPercent": 20, "analysisSeconds": 30, "minRequests": 20}


class Metrics:
    """One predictor pod's /metrics page on 127.0.0.1, its text set by the test."""

    def __init__(self) -> None:
        self.text = exposition(0)
        self.hits = 0
        self.redirect: str | None = None
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.hits += 1
                if page.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", page.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = page.text.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kube() -> MemoryKube:
    return MemoryKube()


@pytest.fixture
def pages() -> Iterator[tuple[Metrics, Metrics]]:
    stable, canary = Metrics(), Metrics()
    yield stable, canary
    stable.close()
    canary.close()


def pod(name: str, version: int, port: int, *, canary: bool) -> dict[str, Any]:
    labels = {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_MODEL: "iris",
        names.LABEL_COMPONENT: "predictor",
        names.LABEL_VERSION: str(version),
    }
    if canary:
        labels[names.LABEL_TRACK] = names.TRACK_CANARY
    http = {"name": "http", "containerPort": port}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "server", "ports": [http]}]},
        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def deployment_ready(kube: MemoryKube, name: str) -> dict[str, Any]:
    deployment = kube.find("Deployment", NS, name)
    assert deployment is not None
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    }
    kube.put(deployment)
    return deployment


def window_passes(kube: MemoryKube, ctl: Controller) -> None:
    """The analysis window elapses: its start moves back by more than its length."""
    model = kube.find("Model", NS, "iris")
    assert model is not None
    model["status"]["rollout"]["analysisStartedAt"] = "2020-01-01T00:00:00Z"
    kube.put(model)
    sync(ctl)


async def ask(kube: MemoryKube, ctl: Controller, request: str) -> None:
    """``kubectl mlkube rollout promote|abort``: the annotation, then a reconcile."""
    model = kube.find("Model", NS, "iris")
    assert model is not None
    model["metadata"]["annotations"] = {names.ROLLOUT_REQUEST: request}
    kube.put(model)
    sync(ctl)
    await model_pass(ctl)


async def canary_running(
    kube: MemoryKube, pages: tuple[Metrics, Metrics], rollout: dict[str, Any] | None = None
) -> Controller:
    """v1 serves, v2 passed the gate and runs as a canary whose pods are ready and scraped."""
    kube.put(model_body(serving={"rollout": rollout or ROLLOUT}))
    ctl = controller(kube, SETTINGS)
    await trained(ctl, kube, "iris-v1", 0.90)
    roll_out(kube)
    kube.put(pod("stable-a", 1, pages[0].port, canary=False))
    pages[0].text = exposition(500)
    sync(ctl)
    kube.put(manual_run("iris-retry"))
    sync(ctl)
    await trained(ctl, kube, "iris-retry", 0.95)
    return ctl


@pytest.mark.asyncio
async def test_a_clean_candidate_is_promoted_and_its_canary_retired_after_stable_rolls(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    ctl = await canary_running(kube, pages)
    model = status(kube, "Model", "iris")
    assert model["servingVersion"] == 1
    assert model["versions"][1]["decision"] == "Pending"
    assert model["rollout"]["phase"] == "Progressing" and model["rollout"]["candidate"] == 2
    canary = kube.find("Deployment", NS, "iris-predictor-canary")
    assert canary is not None and canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"][names.LABEL_TRACK] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"][names.LABEL_COMPONENT] == "predictor"
    stable = kube.find("Deployment", NS, "iris-predictor")
    assert stable is not None and "replicas" not in stable["spec"]
    assert condition(kube, "Model", "iris", "Reconciling")["reason"] == "CanaryProgressing"
    assert condition(kube, "Model", "iris", "Ready")["status"] == "True"

    deployment_ready(kube, "iris-predictor-canary")
    kube.put(pod("canary-a", 2, pages[1].port, canary=True))
    sync(ctl)
    assert await model_pass(ctl) is not None  # the window starts: stable's baseline
    assert status(kube, "Model", "iris")["rollout"]["baseline"]["requests"] == 500
    pages[0].text, pages[1].text = exposition(600), exposition(60)
    window_passes(kube, ctl)
    await model_pass(ctl)

    model = status(kube, "Model", "iris")
    assert model["servingVersion"] == 2 and model["versions"][1]["decision"] == "Promoted"
    assert model["rollout"]["phase"] == "Promoted"
    assert model["rollout"]["readyShare"] == 0.5
    change = model["promotions"][-1]
    assert change["version"] == 2 and change["previous"] == 1
    assert change["canary"]["phase"] == "Promoted"
    assert {v["check"] for v in change["canary"]["verdicts"]} >= {"errorRate", "p99"}
    assert len(events(kube, "CanaryPromoted")) == 1
    # Stable rolls to v2 first; the canary stays until then, so requests always have v2.
    assert kube.find("Deployment", NS, "iris-predictor-canary") is not None
    roll_out(kube)
    sync(ctl)
    await model_pass(ctl)
    assert kube.find("Deployment", NS, "iris-predictor-canary") is None
    assert condition(kube, "Model", "iris", "Reconciling") is None  # kstatus: absent when done
    assert "baseline" not in status(kube, "Model", "iris")["rollout"]

    # The next canary starts afresh: nothing of the last one's window or figures is kept.
    kube.put(manual_run("iris-third"))
    sync(ctl)
    await trained(ctl, kube, "iris-third", 0.96)
    rollout = status(kube, "Model", "iris")["rollout"]
    assert rollout["candidate"] == 3 and rollout["stable"] == 2
    assert set(rollout) == {"phase", "candidate", "stable", "share", "mode", "startedAt", "message"}


@pytest.mark.asyncio
async def test_a_shifted_candidate_is_rolled_back_with_its_figures(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    ctl = await canary_running(kube, pages)
    deployment_ready(kube, "iris-predictor-canary")
    kube.put(pod("canary-a", 2, pages[1].port, canary=True))
    sync(ctl)
    await model_pass(ctl)
    pages[0].text, pages[1].text = exposition(600), exposition(40, classes={"0": 40})
    stable = kube.find("Deployment", NS, "iris-predictor")
    assert stable is not None
    stable["status"] = {"observedGeneration": stable["metadata"]["generation"], "replicas": 1}
    kube.put(stable)  # stable is not available right now: a rejected canary goes anyway
    sync(ctl)
    await model_pass(ctl)  # fails before the window ends: enough requests, a failed check

    model = status(kube, "Model", "iris")
    assert model["servingVersion"] == 1
    assert model["versions"][1]["decision"] == "Rejected"
    assert "prediction shift 0.660 (over 0.2)" in model["versions"][1]["reason"]
    assert model["rollout"]["phase"] == "RolledBack"
    assert model["promotions"][-1]["canary"]["phase"] == "RolledBack"
    (event,) = events(kube, "CanaryRolledBack")
    assert event["type"] == "Warning" and "canary v2 rolled back against v1" in event["message"]
    assert kube.find("Deployment", NS, "iris-predictor-canary") is None
    stable = kube.find("Deployment", NS, "iris-predictor")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"][names.LABEL_VERSION] == "1"
    await run_pass(ctl, "iris-retry")
    assert status(kube, "TrainingJob", "iris-retry")["phase"] == "Rejected"


@pytest.mark.asyncio
async def test_rollout_abort_ends_the_canary_before_its_pods_are_even_ready(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    ctl = await canary_running(kube, pages)
    await ask(kube, ctl, "abort:2")
    model_status = status(kube, "Model", "iris")
    assert model_status["rollout"]["phase"] == "RolledBack"
    assert "aborted by kubectl mlkube rollout abort" in model_status["rollout"]["message"]
    assert model_status["servingVersion"] == 1


@pytest.mark.asyncio
async def test_a_gateway_parent_gives_an_httproute_with_exact_weights(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    rollout = {**ROLLOUT, "canaryPercent": 10, "parentRefs": [{"name": "edge"}]}
    ctl = await canary_running(kube, pages, rollout)
    route = kube.find("HTTPRoute", NS, "iris-predictor")
    assert route is not None
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("iris-predictor", 90),
        ("iris-predictor-canary", 10),
    ]
    assert route["spec"]["parentRefs"][0]["name"] == "edge"
    service = kube.find("Service", NS, "iris-predictor-canary")
    assert service is not None
    assert service["spec"]["selector"][names.LABEL_COMPONENT] == names.COMPONENT_CANARY
    canary = kube.find("Deployment", NS, "iris-predictor-canary")
    assert canary is not None
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_COMPONENT] == names.COMPONENT_CANARY  # outside the stable Service

    await ask(kube, ctl, "abort:2")
    route = kube.find("HTTPRoute", NS, "iris-predictor")
    assert route is not None
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100]
    assert kube.find("Service", NS, "iris-predictor-canary") is None


@pytest.mark.asyncio
async def test_the_analysis_contacts_only_this_models_pods_and_follows_no_redirect(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    """Security: the operator scrapes pod IPs, so only pods of this Model that the operator
    labels (managed-by) are contacted, and a redirect from one is not followed."""
    ctl = await canary_running(kube, pages)
    deployment_ready(kube, "iris-predictor-canary")
    kube.put(pod("canary-a", 2, pages[1].port, canary=True))
    elsewhere, foreign = Metrics(), Metrics()
    try:
        unmanaged = pod("copycat", 2, foreign.port, canary=True)
        del unmanaged["metadata"]["labels"][names.LABEL_MANAGED_BY]
        other_model = pod("neighbour", 2, foreign.port, canary=True)
        other_model["metadata"]["labels"][names.LABEL_MODEL] = "other"
        other_ns = pod("far", 2, foreign.port, canary=True)
        other_ns["metadata"]["namespace"] = "elsewhere"
        for body in (unmanaged, other_model, other_ns):
            kube.put(body)
        pages[1].redirect = f"http://127.0.0.1:{elsewhere.port}/metrics"
        sync(ctl)
        await model_pass(ctl)
        await model_pass(ctl)
        assert pages[0].hits == 2 and pages[1].hits == 2  # stable's and the canary's pods
        assert foreign.hits == 0 and elsewhere.hits == 0
        rollout = status(kube, "Model", "iris")["rollout"]
        assert rollout["phase"] == "Progressing"
        assert rollout["message"].startswith("waiting for traffic: 0 requests")
    finally:
        elsewhere.close()
        foreign.close()


@pytest.mark.asyncio
async def test_a_gateway_parent_without_the_gateway_api_says_so(
    kube: MemoryKube, pages: tuple[Metrics, Metrics]
) -> None:
    real_create = kube.create

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] == "HTTPRoute":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return await real_create(manifest)

    kube.create = create  # type: ignore[method-assign]
    rollout = {**ROLLOUT, "parentRefs": [{"name": "edge"}]}
    await canary_running(kube, pages, rollout)
    reconciling = condition(kube, "Model", "iris", "Reconciling")
    assert reconciling is not None and reconciling["reason"] == "CanaryProgressing"
    assert reconciling["message"] == (
        "canary v2 blocked: HTTPRoute iris-predictor cannot be written (404): "
        "are the Gateway API CRDs installed?"
    )
    assert status(kube, "Model", "iris")["servingVersion"] == 1

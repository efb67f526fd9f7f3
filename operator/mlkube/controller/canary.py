"""A canary rollout: the candidate beside stable, analysed, then promoted or rolled back.

With ``spec.serving.rollout.strategy: Canary`` a version that passes the gate does not
replace the serving one: the registry marks it the candidate, and each reconcile here

1. ensures its Deployment (and, behind a Gateway API parent, its Service and the
   HTTPRoute's weights), and records ``status.rollout``;
2. once its pods are ready, scrapes every stable and canary pod's ``/metrics`` at its
   pod IP (only pods of this Model, found by label in its namespace), keeps stable's
   counters at that moment as the baseline, and judges (``analysis.judge``);
3. promotes it (the stable Deployment rolls to it) or rolls it back, with an Event, a
   promotion-history entry and the figures; ``kubectl mlkube rollout promote|abort``
   ends it early through an annotation naming the candidate.

``retire_canary`` removes the canary's children once nothing needs them: at once after
a rollback, and after a promotion only when the stable Deployment serves the new
version, so requests always have a ready pod of the right version to go to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import aiohttp

from mlkube.api import names
from mlkube.api.conditions import now_iso
from mlkube.api.resources import Body, Manifest
from mlkube.api.rollout import (
    RolloutAction,
    RolloutPhase,
    RolloutSpec,
    rollout_request,
    rollout_spec,
)
from mlkube.api.status import Reason
from mlkube.controller.analysis import Analysis, Sample, add, judge, parse_metrics, since
from mlkube.controller.builders import build_predictor_deployment
from mlkube.controller.builders.canary import (
    build_canary_service,
    build_http_route,
    canary_track,
)
from mlkube.controller.children import (
    Controller,
    Outcome,
    delete_if_owned,
    ensure_child,
    post_event,
)
from mlkube.controller.kube import ApiError
from mlkube.controller.registry import Registry, finish_canary
from mlkube.controller.spec import name_of, namespace_of, spec_of

log = logging.getLogger("mlkube.controller")
SCRAPE_TIMEOUT: Final = aiohttp.ClientTimeout(total=3)
DEFAULT_PORT: Final = 8080


@dataclass
class CanaryStep:
    """What the Model reconciler does with a canary's progress."""

    requeue: float | None = None
    progressing: str | None = None  # Reconciling's message while a canary runs
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    blocked_by: str | None = None
    ended: dict[str, Any] | None = None  # the candidate's entry, when it was decided now


def _ready(deployment: Mapping[str, Any] | None, version: int) -> bool:
    if deployment is None:
        return False
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (labels.get("labels") or {}).get(names.LABEL_VERSION) != str(version):
        return False
    status = deployment.get("status") or {}
    return int(status.get("readyReplicas") or 0) >= 1 and int(
        status.get("observedGeneration") or 0
    ) >= int(deployment["metadata"].get("generation") or 0)


async def advance_canary(
    ctl: Controller, model: Body, registry: Registry, status: dict[str, Any], now: datetime
) -> CanaryStep:
    """Moves the candidate's canary one step; writes ``status["rollout"]``."""
    step = CanaryStep()
    candidate, stable = registry.candidate, registry.serving_version
    if candidate is None or stable is None:
        return step
    spec = rollout_spec(spec_of(model).get("serving"))
    current = dict(status.get("rollout") or {})
    if current.get("candidate") != candidate or current.get("phase") != RolloutPhase.PROGRESSING:
        current = {
            "phase": RolloutPhase.PROGRESSING,
            "candidate": candidate,
            "stable": stable,
            "share": spec.share,
            "mode": "httproute" if spec.parent_refs else "endpoints",
            "startedAt": now_iso(now),
            "message": "starting the canary's pods",
        }
        step.events.append(
            (Reason.CANARY_PROGRESSING, f"v{candidate} canary: {spec.share}% of traffic", False)
        )
    status["rollout"] = current
    step.blocked_by = await _ensure_children(ctl, model, registry, spec, candidate)
    canary = ctl.cache.get("Deployment", namespace_of(model), names.canary_name(name_of(model)))
    request = rollout_request(model["metadata"].get("annotations"))
    if request is not None and request[1] == candidate:
        verb = "promoted" if request[0] == RolloutAction.PROMOTE else "aborted"
        analysis = Analysis(
            "pass" if request[0] == RolloutAction.PROMOTE else "fail",
            list(current.get("verdicts") or []),
            f"{verb} by kubectl mlkube rollout {request[0]}",
        )
        return _decide(registry, current, analysis, step, now)
    if step.blocked_by is not None:
        current["message"] = f"blocked: {step.blocked_by}"
        step.progressing = f"canary v{candidate} {current['message']}"
        step.requeue = 30.0
        return step
    if not _ready(canary, candidate):
        current["message"] = "waiting for the canary's pods to be ready"
        step.progressing = f"canary v{candidate}: {current['message']}"
        step.requeue = 5.0
        return step
    return await _analyse(ctl, model, registry, spec=spec, current=current, step=step, now=now)


async def _analyse(
    ctl: Controller,
    model: Body,
    registry: Registry,
    *,
    spec: RolloutSpec,
    current: dict[str, Any],
    step: CanaryStep,
    now: datetime,
) -> CanaryStep:
    candidate, stable = int(current["candidate"]), int(current["stable"])
    samples = await scrape(ctl, model, {stable: False, candidate: True})
    ours, theirs, counts = samples[candidate], samples[stable], samples[-1]
    total = counts.get("canary", 0.0) + counts.get("stable", 0.0)
    current["readyShare"] = round(counts.get("canary", 0.0) / total, 4) if total else 0.0
    if "analysisStartedAt" not in current:
        current["analysisStartedAt"] = now_iso(now)
        current["baseline"] = {k: round(v, 6) for k, v in theirs.items()}
    started = datetime.fromisoformat(str(current["analysisStartedAt"]).replace("Z", "+00:00"))
    elapsed = (now - started).total_seconds()
    analysis = judge(ours, since(theirs, current.get("baseline") or {}), spec, elapsed)
    current["verdicts"] = analysis.verdicts
    if analysis.outcome == "wait":
        current["message"] = analysis.message
        step.progressing = f"canary v{candidate} against v{stable}: {analysis.message}"
        step.requeue = max(1.0, min(5.0, spec.window_seconds / 10))
        return step
    return _decide(registry, current, analysis, step, now)


def _decide(
    registry: Registry,
    current: dict[str, Any],
    analysis: Analysis,
    step: CanaryStep,
    now: datetime,
) -> CanaryStep:
    candidate, stable = int(current["candidate"]), int(current["stable"])
    promoted = analysis.outcome == "pass"
    phase = RolloutPhase.PROMOTED if promoted else RolloutPhase.ROLLED_BACK
    word = "passed" if promoted else "rolled back"
    reason = f"canary v{candidate} {word} against v{stable}: {analysis.message}"[:1024]
    record = {"candidate": candidate, "phase": phase, "verdicts": analysis.verdicts}
    step.ended = finish_canary(registry, promoted, reason, now_iso(now), record)
    current.update(
        {
            "phase": phase,
            "decidedAt": now_iso(now),
            "message": reason,
            "verdicts": analysis.verdicts,
        }
    )
    current.pop("baseline", None)
    event = Reason.CANARY_PROMOTED if promoted else Reason.CANARY_ROLLED_BACK
    step.events.append((event, reason, not promoted))
    return step


async def _ensure_children(
    ctl: Controller, model: Body, registry: Registry, spec: RolloutSpec, candidate: int
) -> str | None:
    """The canary's Deployment, and with a route its Service and the weights."""
    entry = registry.entry(candidate) or {}
    stable = ctl.cache.get("Deployment", namespace_of(model), names.predictor_name(name_of(model)))
    stable_ready = int(((stable or {}).get("status") or {}).get("readyReplicas") or 1)
    desired: list[Manifest] = [
        build_predictor_deployment(
            model,
            candidate,
            str(entry.get("sha256") or ""),
            ctl.settings,
            str(entry.get("onnxSha256") or ""),
            track=canary_track(model, spec, stable_ready),
        )
    ]
    if spec.parent_refs:
        desired += [build_canary_service(model), build_http_route(model, spec, spec.share)]
    for manifest in desired:
        what = f"{manifest['kind']} {manifest['metadata']['name']}"
        try:
            outcome, _ = await ensure_child(ctl, manifest)
        except ApiError as error:
            if manifest["kind"] != "HTTPRoute" or error.status not in (403, 404):
                raise
            return f"{what} cannot be written ({error.status}): are the Gateway API CRDs installed?"
        if outcome is Outcome.NOT_OWNED:
            return f"{what} exists and is not owned by this Model"
    return None


async def announce_canary(ctl: Controller, model: Body, step: CanaryStep) -> None:
    """The step's Events; a rolled-back candidate's TrainingJob learns it was rejected."""
    for reason, message, warning in step.events:
        await post_event(ctl, model, "Model", reason, message, warning=warning)
    if step.ended is not None and step.ended.get("trainingJob"):
        ctl.enqueue("TrainingJob", namespace_of(model), str(step.ended["trainingJob"]))


async def retire_canary(
    ctl: Controller, model: Body, registry: Registry, status: Mapping[str, Any], stable_ready: bool
) -> None:
    """Removes the canary's children when no canary runs: at once after a rollback, after a
    promotion once stable serves the new version. A Model that never had a canary costs
    nothing here (no request at all)."""
    spec = rollout_spec(spec_of(model).get("serving"))
    rollout = status.get("rollout") or {}
    if registry.candidate is not None:
        return
    if not stable_ready and rollout.get("phase") != RolloutPhase.ROLLED_BACK:
        return
    if not rollout and not spec.parent_refs:
        return
    namespace, name, uid = namespace_of(model), name_of(model), str(model["metadata"]["uid"])
    if spec.parent_refs:
        try:
            await ensure_child(ctl, build_http_route(model, spec, 0))
        except ApiError as error:
            if error.status not in (403, 404):
                raise
            log.warning("Model %s/%s: HTTPRoute not written (%s)", namespace, name, error.status)
    else:
        await delete_if_owned(ctl, "HTTPRoute", namespace, names.route_name(name), uid)
    deployment = ("Deployment", namespace, names.canary_name(name))
    if ctl.cache.get(*deployment) is not None:
        ctl.applied.pop(deployment, None)  # watched: the cache, not this map, says it exists
        await delete_if_owned(ctl, *deployment, uid)
    await delete_if_owned(ctl, "Service", namespace, names.canary_name(name), uid)


async def scrape(ctl: Controller, model: Body, versions: Mapping[int, bool]) -> dict[int, Sample]:
    """Summed counters of the ready pods of each version (``True``: the canary's pods);
    ``-1`` holds the ready pod counts. Only this Model's pods' own IPs are contacted."""
    selector = f"{names.LABEL_MODEL}={name_of(model)},{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    pods = await ctl.kube.list_pods(namespace_of(model), selector)
    targets: list[tuple[int, str]] = []
    counts: Sample = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        version = int(labels.get(names.LABEL_VERSION) or 0)
        is_canary = labels.get(names.LABEL_TRACK) == names.TRACK_CANARY
        if versions.get(version) is not is_canary or not _pod_ready(pod):
            continue
        track = "canary" if is_canary else "stable"
        counts[track] = counts.get(track, 0.0) + 1
        targets.append((version, f"http://{pod['status']['podIP']}:{_port(pod)}/metrics"))
    samples: dict[int, Sample] = {v: {} for v in versions}
    samples[-1] = counts
    async with aiohttp.ClientSession(timeout=SCRAPE_TIMEOUT) as session:
        texts = await asyncio.gather(*(_get(session, url) for _, url in targets))
    for (version, _), text in zip(targets, texts, strict=True):
        if text is not None:
            add(samples[version], parse_metrics(text))
    return samples


async def _get(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url, allow_redirects=False) as response:
            if response.status == 200:
                return await response.text()
            log.info("scrape %s: HTTP %s", url, response.status)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        log.info("scrape %s: %s", url, error)
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _port(pod: Mapping[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return DEFAULT_PORT

"""Model → initial and scheduled TrainingJobs, version allocation, registry, predictor.

The Model's reconciler is the only writer of its own status, including
``allocatedVersion`` and ``reservations``, and writes it with a resourceVersion
precondition: two operators (or a stale cache) can never hand out one version twice,
because the loser's write fails and it re-reads. A version is reserved on the Model
before its run learns it (the run's own reconciler reads the reservation), so a crash in
between gives the run the same number again.

One reconcile is four named steps: plan the runs (create the initial or scheduled run,
reserve versions), fold finished runs into the registry, ensure the predictor, compute
the conditions; then one status write and the Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from mlkube.api import names
from mlkube.api.conditions import (
    READY,
    RECONCILING,
    SERVING,
    STALLED,
    TRAINED,
    get_condition,
    now_iso,
    phase_from,
    set_condition,
)
from mlkube.api.resources import Body, Manifest, training_job_resource
from mlkube.api.status import TERMINAL_PHASES, Decision, Reason, Trigger
from mlkube.controller import metrics
from mlkube.controller.builders import predictor_endpoint
from mlkube.controller.canary import advance_canary, announce_canary, retire_canary
from mlkube.controller.children import Controller, ensure_child, post_event
from mlkube.controller.handlers.datacheck import finish_data_check, start_data_check
from mlkube.controller.history import prune_runs
from mlkube.controller.registry import Registry, update_registry
from mlkube.controller.respec import ensure_spec_run, spec_state
from mlkube.controller.rollout import Rollout, ensure_predictor
from mlkube.controller.schedule import ensure_scheduled
from mlkube.controller.spec import (
    generation_of,
    name_of,
    namespace_of,
    spec_of,
    status_of,
    training_digest,
    training_problem,
)
from mlkube.controller.status import changed_fields, write_status
from mlkube.controller.versions import allocate

log = logging.getLogger("mlkube.controller")
CONFLICT_RETRY = 0.05


@dataclass
class RunPlan:
    """What this reconcile does about runs: the runs it knows, the new ones, their versions."""

    training_jobs: list[Body]
    initial: Manifest | None = None
    allocations: list[tuple[Body, int]] = field(default_factory=list)
    requeue: float | None = None


async def reconcile_model(ctl: Controller, namespace: str, name: str) -> float | None:
    model = ctl.cache.get("Model", namespace, name)
    if model is None or model["metadata"].get("deletionTimestamp"):
        with contextlib.suppress(KeyError):
            metrics.SERVING_VERSION.remove(namespace, name)
        return None
    problem = training_problem(model, None, ctl.settings)
    if problem is not None:
        return await _report_invalid_spec(ctl, model, problem)
    status = dict(status_of(model))
    plan = await _plan_runs(ctl, model, status)
    annotations = model["metadata"].get("annotations") or {}
    registry = update_registry(
        status,
        plan.training_jobs,
        spec_of(model),
        now_iso(),
        ctl.settings.max_versions,
        approval=annotations,
    )
    canary = await advance_canary(ctl, model, registry, status, datetime.now(UTC))
    _apply_registry(status, registry)
    rollout = await ensure_predictor(ctl, model, registry)
    await retire_canary(ctl, model, registry, status, rollout.state == "available")
    _set_conditions(model, status, registry, plan.training_jobs, rollout, canary=canary.progressing)
    if registry.serving_version is not None:
        status["endpoint"] = predictor_endpoint(model)
    _defer_releases(status_of(model), status)
    if not await _write(ctl, model, status, plan):
        return CONFLICT_RETRY
    for tj, _ in plan.allocations:
        ctl.enqueue("TrainingJob", namespace, name_of(tj))
    await _announce(ctl, model, registry, status)
    await announce_canary(ctl, model, canary)
    await prune_runs(ctl, model, registry, plan.training_jobs)
    return min((r for r in (plan.requeue, canary.requeue) if r is not None), default=None)


async def _report_invalid_spec(ctl: Controller, model: Body, message: str) -> float | None:
    """Stalled with the reason, and one Event per change of the problem."""
    status = status_of(model)
    generation = generation_of(model)
    conditions = list(status.get("conditions") or [])
    for kind, value in ((READY, False), (STALLED, True), (RECONCILING, False)):
        text = "" if kind == RECONCILING else message
        conditions = set_condition(
            conditions, kind, value, Reason.INVALID_SPEC, text, generation=generation
        )
    was_invalid = (get_condition(status.get("conditions") or [], STALLED) or {}).get(
        "reason"
    ) == Reason.INVALID_SPEC
    desired = {
        "observedGeneration": generation,
        "conditions": conditions,
        "phase": phase_from(conditions),
    }
    if not await write_status(ctl, "Model", model, desired, precondition=True):
        return CONFLICT_RETRY
    if not was_invalid:
        await post_event(ctl, model, "Model", Reason.INVALID_SPEC, message, warning=True)
    return None


async def _plan_runs(ctl: Controller, model: Body, status: dict[str, Any]) -> RunPlan:
    """Step 1: the runs of this Model, the initial or scheduled one to add, their versions.

    Writes ``lastScheduledTraining``, ``reservations`` and ``allocatedVersion`` into
    ``status``; nothing is written to the API server but a scheduled TrainingJob.
    """
    namespace, name = namespace_of(model), name_of(model)
    plan = RunPlan(list(ctl.cache.by_index("TrainingJob", namespace, name)))
    plan.initial = _initial_training_job(model, status, plan.training_jobs)
    checked = await finish_data_check(ctl, model, status)
    scheduled, plan.requeue = await ensure_scheduled(
        ctl, model, status, check_data=lambda fired: start_data_check(ctl, model, status, fired)
    )
    for run in (checked, scheduled):
        if run is not None and run not in plan.training_jobs:
            plan.training_jobs.append(run)
    respec, settle = await ensure_spec_run(ctl, model, status, plan.training_jobs)
    if respec is not None:
        plan.training_jobs.append(respec)
    if settle is not None:
        plan.requeue = min(settle, plan.requeue or settle)
    if plan.initial is not None:
        plan.training_jobs.append(plan.initial)
    without_job = [
        t
        for t in plan.training_jobs
        if ctl.cache.get("Job", namespace, names.job_name(name_of(t))) is None
    ]
    plan.allocations, status["reservations"] = allocate(status, without_job, plan.training_jobs)
    if plan.allocations:
        status["allocatedVersion"] = max(
            int(status.get("allocatedVersion") or 0), *(v for _, v in plan.allocations)
        )
    return plan


async def _write(ctl: Controller, model: Body, status: dict[str, Any], plan: RunPlan) -> bool:
    """The one status write; the initial run is created alongside (its version is reserved
    by name, so both can go at once). False on a conflict."""
    # status.rollout and status.dataCheck describe one canary or check each: replaced.
    write = write_status(
        ctl, "Model", model, status, precondition=True, replace=("rollout", "dataCheck")
    )
    if plan.initial is None:
        return await write
    written, _ = await asyncio.gather(write, ensure_child(ctl, plan.initial, updatable=False))
    return bool(written)


def _stalled_by(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Reason and message of a ``Stalled=True`` condition: an Event goes out once per change."""
    stalled = get_condition(status.get("conditions") or [], STALLED) or {}
    if stalled.get("status") != "True":
        return None
    return str(stalled.get("reason")), str(stalled.get("message"))


def _defer_releases(current: Mapping[str, Any], desired: dict[str, Any]) -> None:
    """Releasing reservations rides along with the next write instead of costing one.

    A released reservation is one whose run already shows its version, which allocation
    ignores anyway; new reservations, though, are written at once.
    """
    kept = list(current.get("reservations") or [])
    wanted = desired["reservations"]
    if all(r in kept for r in wanted):
        desired["reservations"] = kept
        if changed_fields(current, desired):
            desired["reservations"] = wanted


async def _announce(
    ctl: Controller, model: Body, registry: Registry, status: Mapping[str, Any]
) -> None:
    """Events for decisions, serving changes and problems (once per change of a problem).

    A rejected run's TrainingJob learns of its rejection from its own reconciler, which is
    the only writer of its status: it is enqueued here.
    """
    before = model  # the body this reconcile started from: what users saw until now
    for entry in registry.decided:
        if entry.get("decision") == Decision.REJECTED:
            message = f"v{entry['version']} rejected: {entry.get('reason')}"
            await post_event(ctl, model, "Model", Reason.VERSION_REJECTED, message, warning=True)
            ctl.enqueue("TrainingJob", namespace_of(model), str(entry.get("trainingJob")))
    previous_serving = status_of(before).get("servingVersion")
    if registry.serving_version is not None and registry.serving_version != previous_serving:
        change = registry.promotions[-1] if registry.promotions else {}
        message = f"serving v{registry.serving_version}: {change.get('reason', '')}"
        await post_event(ctl, model, "Model", Reason.VERSION_PROMOTED, message)
    problem = _stalled_by(status)
    if (
        problem is not None
        and problem[0] in _ANNOUNCED
        and _stalled_by(status_of(before)) != problem
    ):
        await post_event(ctl, model, "Model", problem[0], problem[1], warning=True)
    if registry.serving_version is not None:
        metrics.SERVING_VERSION.labels(
            namespace=namespace_of(model), model_name=name_of(model)
        ).set(registry.serving_version)


# Stalled reasons announced here; a failed run's own reconciler announces TrainingFailed.
_ANNOUNCED: Final = frozenset({Reason.INVALID_PIN, Reason.NOT_OWNED, Reason.SPEC_REJECTED})


def _problem(registry: Registry, rollout: Rollout) -> tuple[str, str] | None:
    """A problem only the user can fix, which gets an Event: a bad pin or an object in the way."""
    if registry.pin_problem:
        return Reason.INVALID_PIN, registry.pin_problem
    if rollout.blocked_by is not None:
        return Reason.NOT_OWNED, (
            f"{rollout.blocked_by} exists and is not owned by this Model; "
            "delete or rename it so the predictor can be created"
        )
    return None


def _initial_training_job(
    model: Body, status: Mapping[str, Any], training_jobs: list[Body]
) -> dict[str, Any] | None:
    """The first TrainingJob to create, while the Model has neither versions nor runs.

    Its name is fixed, so a restarted operator with a cache that has not seen it yet
    gets AlreadyExists instead of a second run.
    """
    if training_jobs or status.get("versions"):
        return None
    return training_job_resource(
        model,
        names.initial_training_job_name(name_of(model)),
        Trigger.INITIAL,
        "first version of the Model",
    )


def _apply_registry(status: dict[str, Any], registry: Registry) -> None:
    status["versions"] = registry.versions
    status["promotions"] = registry.promotions
    if registry.versions:
        status["latestVersion"] = max(int(v["version"]) for v in registry.versions)
    serving = registry.entry(registry.serving_version)
    if serving is not None:
        status["servingVersion"] = registry.serving_version
        if serving.get("score") is not None:
            status["servingScore"] = serving["score"]
        if serving.get("sha256"):
            status["servingSha256"] = serving["sha256"]


def _set_conditions(
    model: Body,
    status: dict[str, Any],
    registry: Registry,
    training_jobs: list[Body],
    rollout: Rollout,
    *,
    canary: str | None = None,
) -> None:
    """Step 4: Trained, Serving, Stalled, Reconciling and the Ready roll-up, and the phase.

    A running canary (``canary``: what it waits for) keeps Reconciling True; stable
    serves meanwhile, so Ready stays True."""
    generation = generation_of(model)
    conditions = list(status.get("conditions") or [])
    running = [tj for tj in training_jobs if status_of(tj).get("phase") not in TERMINAL_PHASES]
    states = [*_training_states(registry, running), _serving_state(registry, rollout)]
    respec = spec_state(status, training_digest(model), running)
    stalled = _stalled(registry, rollout, running) or _only(respec, Reason.SPEC_REJECTED)
    reconciling = None
    if stalled is None:
        reconciling = _reconciling(registry, rollout) or _only(respec, Reason.SPEC_CHANGED)
        if reconciling is None and canary is not None:
            reconciling = Reason.CANARY_PROGRESSING, canary
    states.append((STALLED, True, *stalled) if stalled else (STALLED, False, Reason.RECONCILED, ""))
    states.append(
        (RECONCILING, True, *reconciling)
        if reconciling
        else (RECONCILING, False, Reason.RECONCILED, "")
    )
    serving = registry.serving_version
    if rollout.state == "available" and registry.pin_problem is None and not stalled:
        message = f"serving v{serving} at {predictor_endpoint(model)}"
        states.append((READY, True, Reason.AVAILABLE, message))
    elif (why := stalled or reconciling) is not None:
        states.append((READY, False, *why))
    for kind, value, reason, message in states:
        conditions = set_condition(conditions, kind, value, reason, message, generation=generation)
    status["conditions"] = conditions
    status["observedGeneration"] = generation
    status["phase"] = phase_from(conditions)


ConditionState = tuple[str, bool, str, str]


def _training_states(registry: Registry, running: list[Body]) -> list[ConditionState]:
    succeeded = [v for v in registry.versions if v.get("decision") != Decision.FAILED]
    latest = registry.versions[-1] if registry.versions else None
    if succeeded:
        last = succeeded[-1]
        score = float(last.get("score") or 0)
        return [
            (
                TRAINED,
                True,
                Reason.SUCCEEDED,
                f"v{last['version']}: {last.get('metric')} {score:.4g}",
            )
        ]
    if running:
        return [(TRAINED, False, Reason.TRAINING, f"TrainingJob {name_of(running[0])} is running")]
    if latest is not None:
        return [(TRAINED, False, Reason.TRAINING_FAILED, str(latest.get("reason") or "failed"))]
    return []


def _serving_state(registry: Registry, rollout: Rollout) -> ConditionState:
    serving = registry.serving_version
    if serving is None:
        return SERVING, False, Reason.NO_VERSION, "no version has been promoted yet"
    if rollout.state == "available":
        return SERVING, True, Reason.AVAILABLE, f"predictor serves v{serving}"
    if rollout.state == "blocked":
        return SERVING, False, Reason.NOT_OWNED, f"{rollout.blocked_by} is not this Model's"
    return SERVING, False, Reason.ROLLING_OUT, f"predictor is rolling out v{serving}"


def _stalled(registry: Registry, rollout: Rollout, running: list[Body]) -> tuple[str, str] | None:
    """Why the Model cannot make progress without the user, if it cannot."""
    problem = _problem(registry, rollout)
    if problem is not None:
        return problem
    latest = registry.versions[-1] if registry.versions else None
    if registry.serving_version is None and not running and latest is not None:
        return (
            Reason.TRAINING_FAILED,
            f"no servable version: v{latest['version']} "
            f"{str(latest.get('decision')).lower()}: {latest.get('reason')}",
        )
    return None


def _only(state: tuple[str, str] | None, reason: str) -> tuple[str, str] | None:
    return state if state is not None and state[0] == reason else None


def _reconciling(registry: Registry, rollout: Rollout) -> tuple[str, str] | None:
    if registry.serving_version is None:
        return Reason.TRAINING, "training the first version"
    if rollout.state != "available":
        return Reason.ROLLING_OUT, f"rolling out v{registry.serving_version}"
    return None

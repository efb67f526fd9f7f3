"""Model → initial and scheduled TrainingJobs, version allocation, registry, predictor.

The Model is the only writer of its own status, including ``allocatedVersion``, and
writes it with a resourceVersion precondition: two operators (or a stale cache) can
never hand out one version twice, because the loser's write fails and it re-reads.
A version is recorded on the Model before it is given to a TrainingJob, so a crash in
between leaves a gap, never a reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from mlkube.api import names
from mlkube.controller import metrics
from mlkube.controller.builders import (
    build_predictor_deployment,
    build_predictor_hpa,
    build_predictor_pdb,
    build_predictor_service,
    build_training_job_resource,
    predictor_endpoint,
)
from mlkube.controller.conditions import (
    READY,
    RECONCILING,
    SERVING,
    STALLED,
    TRAINED,
    Reason,
    get_condition,
    now_iso,
    phase_from,
    set_condition,
)
from mlkube.controller.handlers.schedule import ensure_scheduled
from mlkube.controller.handlers.trainingjob import TERMINAL
from mlkube.controller.handlers.versions import allocate, start_run
from mlkube.controller.informer import Body
from mlkube.controller.reconcile import Controller, delete_if_owned, ensure_child, post_event
from mlkube.controller.registry import Registry, update_registry
from mlkube.controller.spec import (
    generation_of,
    name_of,
    spec_of,
    status_of,
    training_problem,
)
from mlkube.controller.status import changed_fields, write_status

log = logging.getLogger("mlkube.controller")
CONFLICT_RETRY = 0.05


async def reconcile_model(ctl: Controller, namespace: str, name: str) -> float | None:
    model = ctl.cache.get("Model", namespace, name)
    if model is None or model["metadata"].get("deletionTimestamp"):
        with contextlib.suppress(KeyError):
            metrics.SERVING_VERSION.remove(namespace, name)
        return None
    status = dict(status_of(model))
    previous_serving = status.get("servingVersion")
    spec = spec_of(model)
    generation = generation_of(model)
    conditions = list(status.get("conditions") or [])
    problem = training_problem(model, None, ctl.settings)
    if problem is not None:
        message = problem
        conditions = set_condition(
            conditions, READY, False, Reason.INVALID_SPEC, message, generation=generation
        )
        conditions = set_condition(
            conditions, STALLED, True, Reason.INVALID_SPEC, message, generation=generation
        )
        conditions = set_condition(
            conditions, RECONCILING, False, Reason.INVALID_SPEC, "", generation=generation
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

    training_jobs = ctl.cache.by_index("TrainingJob", namespace, name)
    initial = _initial_training_job(model, status, training_jobs)
    scheduled, requeue = await ensure_scheduled(ctl, model, status)
    if scheduled is not None and scheduled not in training_jobs:
        training_jobs.append(scheduled)
    if initial is not None:
        training_jobs.append(initial)

    allocations, reservations = allocate(
        status,
        [
            t
            for t in training_jobs
            if ctl.cache.get("Job", namespace, names.job_name(name_of(t))) is None
        ],
        training_jobs,
    )
    status["reservations"] = reservations
    if allocations:
        status["allocatedVersion"] = max(
            int(status.get("allocatedVersion") or 0), *(v for _, v in allocations)
        )

    now = now_iso()
    registry = update_registry(status, training_jobs, spec, now, ctl.settings.max_versions)
    _apply_registry(status, registry)
    rollout = await _ensure_predictor(ctl, model, registry)
    status["conditions"] = _model_conditions(model, registry, training_jobs, rollout, conditions)
    status["observedGeneration"] = generation
    status["phase"] = phase_from(status["conditions"])
    if registry.serving_version is not None:
        status["endpoint"] = predictor_endpoint(model)
    _defer_releases(status_of(model), status)
    write = write_status(ctl, "Model", model, status, precondition=True)
    created: Body | None = None
    if initial is not None:
        # The version is reserved for the initial run's name, so both writes can go at once.
        written, (_, created) = await asyncio.gather(
            write, ensure_child(ctl, initial, updatable=False)
        )
    else:
        written = await write
    if not written:
        return CONFLICT_RETRY
    starts = []
    for tj, version in allocations:
        target = tj
        if tj is initial:
            found = created or ctl.cache.get("TrainingJob", namespace, initial_name(name))
            if found is None:
                continue
            target = found
        starts.append(start_run(ctl, model, target, version))
    await asyncio.gather(*starts)
    await _announce(ctl, model, registry, previous_serving, training_jobs)
    if registry.pin_problem and _stalled_by(status_of(model)) != (
        Reason.INVALID_PIN,
        registry.pin_problem,
    ):
        await post_event(
            ctl, model, "Model", Reason.INVALID_PIN, registry.pin_problem, warning=True
        )
    if registry.serving_version is not None:
        metrics.SERVING_VERSION.labels(namespace=namespace, model_name=name).set(
            registry.serving_version
        )
    return requeue


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
    ctl: Controller,
    model: Body,
    registry: Registry,
    previous_serving: Any,
    training_jobs: list[Body],
) -> None:
    """Events for decisions and serving changes; a rejected run's TrainingJob says so too."""
    by_name = {name_of(tj): tj for tj in training_jobs}
    for entry in registry.decided:
        if entry.get("decision") != "Rejected":
            continue
        reason = str(entry.get("reason"))
        await post_event(
            ctl,
            model,
            "Model",
            "VersionRejected",
            f"v{entry['version']} rejected: {reason}",
            warning=True,
        )
        tj = by_name.get(str(entry.get("trainingJob")))
        if tj is not None and (tj.get("status") or {}).get("phase") == "Succeeded":
            await write_status(
                ctl,
                "TrainingJob",
                tj,
                {
                    "phase": "Rejected",
                    "message": f"trained v{entry['version']}, not promoted: {reason}",
                },
                precondition=False,
            )
    if registry.serving_version is not None and registry.serving_version != previous_serving:
        change = registry.promotions[-1] if registry.promotions else {}
        await post_event(
            ctl,
            model,
            "Model",
            "VersionPromoted",
            f"serving v{registry.serving_version}: {change.get('reason', '')}",
        )


def initial_name(model: str) -> str:
    return names.training_job_name(model, 1)


def _initial_training_job(
    model: Body, status: Mapping[str, Any], training_jobs: list[Body]
) -> dict[str, Any] | None:
    """The first TrainingJob to create, while the Model has neither versions nor runs.

    Its name is fixed, so a restarted operator with a cache that has not seen it yet
    gets AlreadyExists instead of a second run.
    """
    if training_jobs or status.get("versions"):
        return None
    return build_training_job_resource(
        model, initial_name(name_of(model)), "initial", "first version of the Model"
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


async def _ensure_predictor(ctl: Controller, model: Body, registry: Registry) -> str:
    """Deployment/Service/HPA(/PDB) for the serving version; returns the rollout state."""
    entry = registry.entry(registry.serving_version)
    if entry is None or registry.serving_version is None:
        return "none"
    version = registry.serving_version
    await ensure_child(
        ctl,
        build_predictor_deployment(model, version, str(entry.get("sha256") or ""), ctl.settings),
    )
    await ensure_child(ctl, build_predictor_service(model))
    await ensure_child(ctl, build_predictor_hpa(model))
    pdb = build_predictor_pdb(model)
    meta = model["metadata"]
    if pdb is not None:
        await ensure_child(ctl, pdb)
        ctl.applied.pop(("PodDisruptionBudget-absent", meta["namespace"], meta["name"]), None)
    else:
        await delete_if_owned(
            ctl,
            "PodDisruptionBudget",
            meta["namespace"],
            names.predictor_name(meta["name"]),
            meta["uid"],
        )
    deployment = ctl.cache.get("Deployment", meta["namespace"], names.predictor_name(meta["name"]))
    return "available" if _available(deployment, version) else "rolling"


def _available(deployment: Mapping[str, Any] | None, version: int) -> bool:
    """Available replicas, all of them updated to the template serving ``version``."""
    if deployment is None:
        return False
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels"
    ) or {}
    if labels.get(names.LABEL_VERSION) != str(version):
        return False
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(
        deployment["metadata"].get("generation") or 0
    ):
        return False
    updated = int(status.get("updatedReplicas") or 0)
    return (
        int(status.get("availableReplicas") or 0) >= 1
        and updated >= 1
        and updated == int(status.get("replicas") or 0)
    )


def _model_conditions(
    model: Body, registry: Registry, training_jobs: list[Body], rollout: str, conditions: list[Any]
) -> list[Any]:
    generation = generation_of(model)
    running = [tj for tj in training_jobs if (tj.get("status") or {}).get("phase") not in TERMINAL]
    succeeded = [v for v in registry.versions if v.get("decision") != "Failed"]
    latest = registry.versions[-1] if registry.versions else None

    def put(kind: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, kind, value, reason, message, generation=generation)

    if succeeded:
        last = succeeded[-1]
        put(
            TRAINED,
            True,
            Reason.SUCCEEDED,
            f"v{last['version']}: {last.get('metric')} {float(last.get('score') or 0):.4g}",
        )
    elif running:
        put(TRAINED, False, Reason.TRAINING, f"TrainingJob {name_of(running[0])} is running")
    elif latest is not None:
        put(TRAINED, False, Reason.TRAINING_FAILED, str(latest.get("reason") or "failed"))
    serving = registry.serving_version
    if serving is None:
        put(SERVING, False, Reason.NO_VERSION, "no version has been promoted yet")
    elif rollout == "available":
        put(SERVING, True, Reason.AVAILABLE, f"predictor serves v{serving}")
    else:
        put(SERVING, False, Reason.ROLLING_OUT, f"predictor is rolling out v{serving}")

    stalled: tuple[str, str] | None = None
    if registry.pin_problem:
        stalled = (Reason.INVALID_PIN, registry.pin_problem)
    elif serving is None and not running and latest is not None:
        stalled = (
            Reason.TRAINING_FAILED,
            f"no servable version: v{latest['version']} "
            f"{str(latest.get('decision')).lower()}: {latest.get('reason')}",
        )
    reconciling: tuple[str, str] | None = None
    if stalled is None and serving is None:
        reconciling = (Reason.TRAINING, "training the first version")
    elif stalled is None and rollout != "available":
        reconciling = (Reason.ROLLING_OUT, f"rolling out v{serving}")

    if stalled is not None:
        put(STALLED, True, *stalled)
    else:
        put(STALLED, False, Reason.RECONCILED, "")
    if reconciling is not None:
        put(RECONCILING, True, *reconciling)
    else:
        put(RECONCILING, False, Reason.RECONCILED, "")
    if rollout == "available" and registry.pin_problem is None:
        put(READY, True, Reason.AVAILABLE, f"serving v{serving} at {predictor_endpoint(model)}")
    elif stalled is not None:
        put(READY, False, stalled[0], stalled[1])
    elif reconciling is not None:
        put(READY, False, reconciling[0], reconciling[1])
    return conditions

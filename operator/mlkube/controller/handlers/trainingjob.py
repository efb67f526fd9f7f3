"""TrainingJob → batch/v1 Job; the Job's outcome → TrainingJob.status.

The version is allocated by the Model's reconciler (one writer of the Model's counter);
this reconciler waits for it, then makes the Job and reports what the trainer's pod
said: the JSON summary of its termination message, or the exit code and a log tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlkube.api import names
from mlkube.api.conditions import (
    READY,
    RECONCILING,
    STALLED,
    get_condition,
    now_iso,
    set_condition,
)
from mlkube.api.resources import Body
from mlkube.api.status import (
    TERMINAL_PHASES,
    Decision,
    Phase,
    PodPhase,
    Reason,
    TrainerSummary,
)
from mlkube.api.summary import parse_summary
from mlkube.controller import metrics
from mlkube.controller.builders import build_trainer_job
from mlkube.controller.children import Controller, ensure_child, owned_by, post_event
from mlkube.controller.handlers.search import search_of, search_stage
from mlkube.controller.spec import (
    generation_of,
    model_ref,
    name_of,
    namespace_of,
    status_of,
    training_digest,
    training_problem,
)
from mlkube.controller.status import (
    config_error,
    failure_message,
    failure_reason,
    pods_of_job,
    terminated_state,
    trainer_memory_limit,
    write_status,
)
from mlkube.controller.versions import reserved_version

log = logging.getLogger("mlkube.controller")


def _conditions(
    status: Mapping[str, Any],
    generation: int,
    *,
    ready: bool,
    reason: str,
    message: str,
    reconciling: bool = False,
    stalled: bool = False,
) -> list[dict[str, Any]]:
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, READY, ready, reason, message, generation=generation)
    conditions = set_condition(
        conditions, RECONCILING, reconciling, reason, message, generation=generation
    )
    return set_condition(conditions, STALLED, stalled, reason, message, generation=generation)


async def reconcile_training_job(ctl: Controller, namespace: str, name: str) -> float | None:
    tj = ctl.cache.get("TrainingJob", namespace, name)
    if tj is None or tj["metadata"].get("deletionTimestamp"):
        return None
    model = ctl.cache.get("Model", namespace, model_ref(tj))
    if status_of(tj).get("phase") in TERMINAL_PHASES:
        await _observe_decision(ctl, tj, model)
        return None
    if model is None:
        await _wait_for_model(ctl, tj)
        return None
    job_name = names.job_name(name)
    job = ctl.cache.get("Job", namespace, job_name)
    version = await _version(ctl, tj, model, job)
    problem = training_problem(model, tj, ctl.settings)
    if problem is not None:
        extra = {} if version is None else {"version": version}
        await _fail(ctl, tj, model, Reason.INVALID_SPEC, message=problem, extra=extra)
        return None
    if version is None:
        # The Model reserves it within one reconcile, then enqueues this run again.
        ctl.enqueue("Model", namespace, model_ref(tj))
        return None
    if job is None:
        job = await _start(ctl, tj, model, version)
        tj = ctl.cache.get("TrainingJob", namespace, name) or tj
    trials: dict[str, Any] = {}
    if search_of(model, tj) is not None:
        stage = await search_stage(ctl, tj, model, job, version)
        job, job_name, trials = stage.job, stage.job_name, stage.status
    return await _observe_job(ctl, tj, model, job, job_name, trials=trials)


async def _observe_decision(ctl: Controller, tj: Body, model: Body | None) -> None:
    """A finished run: keeps observedGeneration, and learns the gate's rejection from the
    Model's registry (the Model decides; this reconciler is the only writer of the run)."""
    status = status_of(tj)
    desired: dict[str, Any] = {"observedGeneration": generation_of(tj)}
    entry = _registry_entry(model, status.get("version"), name_of(tj))
    rejected = entry is not None and entry.get("decision") == Decision.REJECTED
    if status.get("phase") == Phase.SUCCEEDED and entry is not None and rejected:
        desired["phase"] = Phase.REJECTED
        desired["message"] = f"trained v{entry['version']}, not promoted: {entry.get('reason')}"
    await write_status(ctl, "TrainingJob", tj, desired, precondition=False)


def _registry_entry(model: Body | None, version: Any, tj_name: str) -> Mapping[str, Any] | None:
    if model is None or version is None:
        return None
    for entry in status_of(model).get("versions") or []:
        if entry.get("version") == version and entry.get("trainingJob") == tj_name:
            return dict(entry)
    return None


async def _wait_for_model(ctl: Controller, tj: Body) -> None:
    namespace, status, generation = namespace_of(tj), status_of(tj), generation_of(tj)
    message = f"Model {model_ref(tj)!r} does not exist in namespace {namespace}; waiting for it"
    desired = {
        "observedGeneration": generation,
        "phase": Phase.PENDING,
        "conditions": _conditions(
            status,
            generation,
            ready=False,
            reason=Reason.MODEL_NOT_FOUND,
            message=message,
            stalled=True,
        ),
    }
    previous = (get_condition(status.get("conditions") or [], STALLED) or {}).get("reason")
    await write_status(ctl, "TrainingJob", tj, desired, precondition=False)
    if previous != Reason.MODEL_NOT_FOUND:
        await post_event(ctl, tj, "TrainingJob", Reason.MODEL_NOT_FOUND, message, warning=True)


async def _version(ctl: Controller, tj: Body, model: Body, job: Body | None) -> int | None:
    """The run's version: from its Job (the record), its status, or the Model's reservation.

    The Job is made only after its version was reserved on the Model, so a lost or stale
    status write is repaired from it.
    """
    version = status_of(tj).get("version")
    recorded = job_version(job, tj)
    if recorded is not None and recorded != version:
        await write_status(ctl, "TrainingJob", tj, {"version": recorded}, precondition=False)
        return recorded
    if version is not None:
        return int(version)
    return reserved_version(status_of(model), tj)


async def _start(ctl: Controller, tj: Body, model: Body, version: int) -> Body | None:
    """Records the reserved version on the run and makes its Job, both at once."""
    job_name = names.job_name(name_of(tj))
    if status_of(tj).get("version") is None:
        common = {
            "observedGeneration": generation_of(tj),
            "jobName": job_name,
            "attempts": 0,
            "startTime": now_iso(),
        }
        first = {
            "version": version,
            "modelGeneration": generation_of(model),
            "specDigest": training_digest(model),
            **progress_status(tj, common, running=False),
        }
        job_manifest = build_trainer_job(model, tj, version, ctl.settings)
        _, (_, job) = await asyncio.gather(
            write_status(ctl, "TrainingJob", tj, first, precondition=True),
            ensure_child(ctl, job_manifest, updatable=False),
        )
    else:
        _, job = await ensure_child(
            ctl, build_trainer_job(model, tj, version, ctl.settings), updatable=False
        )
    return job or ctl.cache.get("Job", namespace_of(tj), job_name)


def job_version(job: Mapping[str, Any] | None, tj: Body) -> int | None:
    """The version a run's Job trains, if the Job exists and belongs to the run."""
    if job is None or not owned_by(job, str(tj["metadata"].get("uid"))):
        return None
    label = ((job.get("metadata") or {}).get("labels") or {}).get(names.LABEL_VERSION)
    return int(label) if label and label.isdigit() else None


def _job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    found = get_condition((job.get("status") or {}).get("conditions") or [], kind)
    return found if found is not None and found.get("status") == "True" else None


async def _observe_job(
    ctl: Controller,
    tj: Body,
    model: Body,
    job: Body | None,
    job_name: str,
    *,
    trials: Mapping[str, Any],
) -> float | None:
    """The Job's outcome into the run's status: success with the summary, failure, progress
    (and a search's trial counts, best so far and table, kept in every write)."""
    job_status = (job or {}).get("status") or {}
    attempts = sum(int(job_status.get(k) or 0) for k in ("active", "failed", "succeeded"))
    common: dict[str, Any] = {
        **trials,
        "observedGeneration": generation_of(tj),
        "jobName": job_name,
        "attempts": attempts,
        "startTime": status_of(tj).get("startTime") or job_status.get("startTime") or now_iso(),
    }
    if job is not None and _job_condition(job, "Complete"):
        return await _complete(ctl, tj, model, job, common)
    failed = _job_condition(job, "Failed") if job is not None else None
    if job is not None and failed is not None:
        limit = trainer_memory_limit(ctl, model, tj)
        message = await failure_message(ctl, job, failed, attempts, memory_limit=limit)
        reason = failure_reason(ctl, job)
        await _fail(ctl, tj, model, reason, message=message, extra=common)
        return None
    running = int(job_status.get("active") or 0) > 0
    progress = progress_status(tj, common, running=running)
    stuck = config_error(pods_of_job(ctl, job)) if job is not None else None
    if stuck is not None:
        await _report_config_error(ctl, tj, model, progress, stuck)
    await write_status(ctl, "TrainingJob", tj, progress, precondition=False)
    return None


async def _report_config_error(
    ctl: Controller, tj: Body, model: Body, progress: dict[str, Any], message: str
) -> None:
    """A trainer the kubelet cannot start (a missing Secret or key): on the run's Ready
    condition, and once per message an Event on the run and its Model; the Job stays."""
    reason, status = Reason.POD_CONFIG_ERROR, status_of(tj)
    progress["conditions"] = _conditions(
        status, generation_of(tj), ready=False, reason=reason, message=message, reconciling=True
    )
    if (get_condition(status.get("conditions") or [], READY) or {}).get("message") != message:
        await post_event(ctl, tj, "TrainingJob", reason, message, warning=True)
        await post_event(ctl, model, "Model", reason, f"{name_of(tj)}: {message}", warning=True)


async def _complete(
    ctl: Controller, tj: Body, model: Body, job: Body, common: dict[str, Any]
) -> float | None:
    """A complete Job: the summary in its own succeeded pod's termination message."""
    pods = [p for p in pods_of_job(ctl, job) if status_of(p).get("phase") == PodPhase.SUCCEEDED]
    terminated = terminated_state(pods[-1]) if pods else None
    summary = parse_summary(str((terminated or {}).get("message") or ""))
    if summary is None:
        if not pods:
            return 2.0  # the pod watch has not caught up yet
        reason = (
            "the trainer succeeded but left no readable JSON summary in its termination message"
        )
        await _fail(ctl, tj, model, Reason.TRAINING_FAILED, message=reason, extra=common)
        return None
    job_status = job.get("status") or {}
    lineage = _lineage(summary, pods[-1])
    await _succeed(
        ctl,
        tj,
        model,
        summary=summary,
        common={**common, "lineage": lineage},
        job_status=job_status,
    )
    return None


def _lineage(summary: TrainerSummary, pod: Body) -> dict[str, Any]:
    """The trainer's lineage, plus the image it ran by digest (the kubelet's imageID)."""
    lineage: dict[str, Any] = dict(summary.get("lineage") or {})
    for container in status_of(pod).get("containerStatuses") or []:
        image = container.get("imageID") or container.get("image")
        if image:
            lineage["image"] = str(image)[:512]
            break
    return lineage


def progress_status(tj: Body, common: Mapping[str, Any], *, running: bool) -> dict[str, Any]:
    """Status of a run whose Job exists but has not finished."""
    status = status_of(tj)
    generation = generation_of(tj)
    message = f"Job {common['jobName']} is {'running' if running else 'waiting for its pod'}"
    return {
        **common,
        "phase": Phase.RUNNING if running else Phase.PENDING,
        "conditions": _conditions(
            status,
            generation,
            ready=False,
            reason=Reason.TRAINING,
            message=message,
            reconciling=True,
        ),
    }


async def _succeed(
    ctl: Controller,
    tj: Body,
    model: Body,
    *,
    summary: TrainerSummary,
    common: Mapping[str, Any],
    job_status: Mapping[str, Any],
) -> None:
    status = status_of(tj)
    generation = generation_of(tj)
    metric = str(summary.get("metric") or "score")
    score = float(summary["score"])
    artifact = summary.get("artifact") or {}
    desired: dict[str, Any] = {
        **common,
        "phase": Phase.SUCCEEDED,
        "metric": metric,
        "higherIsBetter": bool(summary.get("higherIsBetter", True)),
        "score": score,
        "metrics": {
            k: float(v)
            for k, v in (summary.get("metrics") or {}).items()
            if isinstance(v, int | float)
        },
        "slices": list(summary.get("slices") or []),
        "artifact": {k: artifact[k] for k in ("uri", "sha256", "onnxSha256") if artifact.get(k)},
        "completionTime": job_status.get("completionTime") or now_iso(),
        "message": f"trained version {status.get('version')}: {metric} {score:.4g}"
        + (f" (trial {summary['search']['bestTrial']})" if "search" in summary else ""),
        "conditions": _conditions(
            status, generation, ready=True, reason=Reason.SUCCEEDED, message=f"{metric} {score:.4g}"
        ),
    }
    await write_status(ctl, "TrainingJob", tj, desired, precondition=False)
    _record_training(Phase.SUCCEEDED, desired["startTime"], desired["completionTime"])
    ctl.enqueue("Model", namespace_of(tj), name_of(model))


async def _fail(
    ctl: Controller, tj: Body, model: Body, reason: str, *, message: str, extra: Mapping[str, Any]
) -> None:
    status = status_of(tj)
    generation = generation_of(tj)
    desired = {
        **extra,
        "observedGeneration": generation,
        "phase": Phase.FAILED,
        "completionTime": status.get("completionTime") or now_iso(),
        "message": message[:8000],
        "conditions": _conditions(
            status, generation, ready=False, reason=reason, message=message[:2000], stalled=True
        ),
    }
    first_time = status.get("phase") != Phase.FAILED
    await write_status(ctl, "TrainingJob", tj, desired, precondition=False)
    if first_time:
        short = message.splitlines()[0][:400] if message else reason
        await post_event(ctl, tj, "TrainingJob", reason, message, warning=True)
        await post_event(
            ctl, model, "Model", reason, f"TrainingJob {name_of(tj)} failed: {short}", warning=True
        )
        if reason in (Reason.TRAINING_FAILED, Reason.OOM_KILLED):
            _record_training(Phase.FAILED, desired.get("startTime"), desired["completionTime"])
    ctl.enqueue("Model", namespace_of(tj), name_of(model))


def _record_training(outcome: str, start: Any, end: Any) -> None:
    metrics.TRAININGS.labels(outcome=outcome).inc()
    try:
        began = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return
    metrics.TRAINING_SECONDS.labels(outcome=outcome).observe(
        max(0.0, (ended - began).total_seconds())
    )

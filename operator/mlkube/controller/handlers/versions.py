"""Version allocation: one counter per Model, monotonic, never reused.

The Model's reconciler is the only writer of ``status.allocatedVersion`` and writes it
with a resourceVersion precondition before any run learns its number; a run's Job carries
the number too, so a lost status write is repaired from the Job, never re-allocated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from mlkube.api import names
from mlkube.controller.builders import build_trainer_job
from mlkube.controller.conditions import now_iso
from mlkube.controller.handlers.trainingjob import TERMINAL, progress_status
from mlkube.controller.informer import Body
from mlkube.controller.kube import ApiError
from mlkube.controller.reconcile import Controller, ensure_child
from mlkube.controller.spec import generation_of, name_of, training_problem

MAX_RESERVATIONS = 50


def _uid(tj: Mapping[str, Any]) -> str | None:
    uid = (tj.get("metadata") or {}).get("uid")
    return str(uid) if uid else None


def _version_of(tj: Mapping[str, Any]) -> Any:
    return (tj.get("status") or {}).get("version")


def allocate(
    status: Mapping[str, Any], candidates: list[Body], training_jobs: list[Body]
) -> tuple[list[tuple[Body, int]], list[dict[str, Any]]]:
    """Versions for TrainingJobs without one (and without a Job, which would record it).

    Returns the assignments and the Model's new ``status.reservations``: a number handed
    to a run is remembered (by name and uid) until the run's status shows it, so a crash
    between reserving and recording gives the run the same number again instead of
    leaving a gap; numbers are never below any version seen, so none is ever reused.
    """
    live = {name_of(tj): tj for tj in training_jobs}
    kept: list[dict[str, Any]] = []
    for previous in status.get("reservations") or []:
        reservation = dict(previous)
        tj = live.get(str(reservation.get("trainingJob")))
        if tj is not None:
            uid = _uid(tj)
            if reservation.get("uid") and uid and reservation["uid"] != uid:
                continue  # a new run with an old run's name
            if _version_of(tj) is not None:
                continue  # recorded: the reservation has done its job
            if uid and not reservation.get("uid"):
                reservation["uid"] = uid
        kept.append(reservation)
    reserved = {str(r["trainingJob"]): int(r["version"]) for r in kept}
    waiting = [
        tj
        for tj in candidates
        if _version_of(tj) is None and (tj.get("status") or {}).get("phase") not in TERMINAL
    ]
    seen = [int(status.get("allocatedVersion") or 0), int(status.get("latestVersion") or 0)]
    seen += [int(v.get("version") or 0) for v in status.get("versions") or []]
    seen += [int(_version_of(tj) or 0) for tj in training_jobs]
    seen += list(reserved.values())
    current = max(seen)
    waiting.sort(
        key=lambda tj: (str(tj["metadata"].get("creationTimestamp") or ""), tj["metadata"]["name"])
    )
    allocations = []
    for tj in waiting:
        name = name_of(tj)
        version = reserved.get(name)
        if version is None:
            current += 1
            version = current
            kept.append(
                {"trainingJob": name, "version": version}
                | ({"uid": uid} if (uid := _uid(tj)) else {})
            )
        allocations.append((tj, version))
    return allocations, kept[-MAX_RESERVATIONS:]


async def start_run(ctl: Controller, model: Body, tj: Body, version: int) -> None:
    """Records the reserved version on the run and makes its Job, both at once.

    Safe in parallel because the version is already reserved on the Model, and the Job
    carries it: should the status write be lost, the TrainingJob's reconciler repairs
    ``status.version`` from the Job.
    """
    if training_problem(model, tj, ctl.settings) is not None:
        await _assign_version(ctl, tj, version)
        return
    job = build_trainer_job(model, tj, version, ctl.settings)
    await asyncio.gather(_assign_version(ctl, tj, version), ensure_child(ctl, job, updatable=False))


async def _assign_version(ctl: Controller, tj: Body, version: int) -> None:
    """Records the version (already reserved on the Model) on the TrainingJob.

    A conflict here only means the TrainingJob's status moved (its own reconciler wrote
    a condition); the reserved number is still this TrainingJob's, so retry with the
    fresh object unless it got a version meanwhile.
    """
    meta = tj["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    current = tj
    for _ in range(5):
        if (current.get("status") or {}).get("version") is not None:
            return
        try:
            written = await ctl.kube.patch_status(
                "TrainingJob",
                namespace,
                name,
                first_status(current, version),
                resource_version=str(current["metadata"]["resourceVersion"]),
            )
        except ApiError as error:
            if error.not_found:
                return
            if not error.conflict:
                raise
            current = await ctl.kube.get("TrainingJob", namespace, name)
            ctl.cache.store("TrainingJob", current)
            continue
        ctl.cache.store("TrainingJob", written)
        ctl.enqueue("TrainingJob", namespace, name)
        return


def first_status(tj: Body, version: int) -> dict[str, Any]:
    """The TrainingJob's first status: its version, and the Job about to be made for it.

    Exactly what the TrainingJob's reconciler writes once the Job exists and waits for
    its pod, so that reconciler has nothing to write then.
    """
    common = {
        "observedGeneration": generation_of(tj),
        "jobName": names.job_name(name_of(tj)),
        "attempts": 0,
        "startTime": now_iso(),
    }
    return {"version": version, **progress_status(tj, common, running=False)}

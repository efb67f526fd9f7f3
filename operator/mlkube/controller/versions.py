"""Version allocation: one counter per Model, monotonic, never reused. Pure functions.

The Model's reconciler is the only writer of ``status.allocatedVersion`` and
``status.reservations`` and writes them with a resourceVersion precondition before any
run learns its number; the run's own reconciler then reads its reservation and records
the number on the run and on its Job, so a lost status write is repaired from the Job,
never re-allocated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlkube.api.resources import Body
from mlkube.api.status import TERMINAL_PHASES
from mlkube.controller.spec import name_of

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
        if _version_of(tj) is None and (tj.get("status") or {}).get("phase") not in TERMINAL_PHASES
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


def reserved_version(model_status: Mapping[str, Any], tj: Body) -> int | None:
    """The version the Model reserved for this run (by name, and by uid once it is known)."""
    uid = _uid(tj)
    for reservation in model_status.get("reservations") or []:
        if reservation.get("trainingJob") != name_of(tj):
            continue
        if reservation.get("uid") and uid and reservation["uid"] != uid:
            return None
        return int(reservation["version"])
    return None

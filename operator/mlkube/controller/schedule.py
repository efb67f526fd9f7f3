"""Periodic retraining: ``spec.training.schedule`` → one TrainingJob per firing.

The next firing is computed from ``status.lastScheduledTraining`` (or the Model's creation),
never from process memory, so schedules survive restarts; the TrainingJob's name encodes
the firing, so a restart that re-fires finds the run it made instead of adding one. A
firing while the previous scheduled run is still going is skipped, and after downtime at
most one missed firing runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from mlkube.api.conditions import now_iso
from mlkube.api.datacheck import RetrainWhen
from mlkube.api.names import scheduled_training_job_name
from mlkube.api.resources import Body, training_job_resource
from mlkube.api.status import TERMINAL_PHASES, Trigger
from mlkube.controller.children import Controller, ensure_child
from mlkube.controller.spec import name_of, namespace_of, spec_of, status_of

log = logging.getLogger("mlkube.controller")
# What a firing does instead of a run when the data must be checked first.
OnFire = Callable[[datetime], Awaitable[Body | None]]


def last_fire(schedule: str, since: datetime, now: datetime) -> tuple[datetime | None, datetime]:
    """The latest firing in (since, now] if any, and the next firing after ``now``.

    Firings missed while the operator was down collapse into one run, as a CronJob does.
    Two steps of the schedule whatever the gap, so a year-old Model firing every minute
    costs the event loop nothing (walking the gap would be half a million steps).
    """
    latest: datetime = croniter(schedule, now + timedelta(seconds=1)).get_prev(datetime)
    nxt: datetime = croniter(schedule, now).get_next(datetime)
    return (latest if latest > since else None), nxt


def _running_scheduled_run(ctl: Controller, model: Body) -> str | None:
    """A scheduled run of ``model`` that has not finished: the next firing waits for it."""
    for tj in ctl.cache.by_index("TrainingJob", namespace_of(model), name_of(model)):
        if spec_of(tj).get("trigger") in (Trigger.SCHEDULE, Trigger.DATA_CHANGE) and (
            status_of(tj).get("phase") not in TERMINAL_PHASES
        ):
            return name_of(tj)
    return None


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


async def ensure_scheduled(
    ctl: Controller, model: Body, status: dict[str, Any], *, check_data: OnFire | None = None
) -> tuple[Body | None, float | None]:
    """The run of the latest firing, if one is due; with ``retrainWhen: DataChanged``
    the firing calls ``check_data`` instead (which may start a run)."""
    training = spec_of(model).get("training") or {}
    schedule = training.get("schedule")
    if not schedule:
        return None, None
    since = (
        _ts(status.get("lastScheduledTraining"))
        or _ts(model["metadata"].get("creationTimestamp"))
        or datetime.now(UTC)
    )
    now = datetime.now(UTC)
    try:
        fired, nxt = last_fire(str(schedule), since, now)
    except (ValueError, KeyError) as error:
        log.warning("Model %s: schedule %r unusable: %s", name_of(model), schedule, error)
        return None, None
    requeue = max(1.0, (nxt - now).total_seconds() + 0.5)
    if fired is None:
        return None, requeue
    running = _running_scheduled_run(ctl, model)
    check = status.get("dataCheck") or {}
    if running is None and check.get("job") and not check.get("checkedAt"):
        running = str(check["job"])
    if running is not None:
        # As a CronJob with concurrencyPolicy Forbid: the firing is skipped, not queued.
        log.info("Model %s: schedule fired while %s still runs; skipped", name_of(model), running)
        status["lastScheduledTraining"] = now_iso(fired)
        return None, requeue
    if check_data is not None and training.get("retrainWhen") == RetrainWhen.DATA_CHANGED:
        status["lastScheduledTraining"] = now_iso(fired)
        return await check_data(fired), requeue
    desired = training_job_resource(
        model,
        scheduled_training_job_name(name_of(model), fired),
        Trigger.SCHEDULE,
        f"schedule {schedule!r} fired at {now_iso(fired)}",
    )
    await ensure_child(ctl, desired, updatable=False)
    status["lastScheduledTraining"] = now_iso(fired)
    found = ctl.cache.get(
        "TrainingJob", desired["metadata"]["namespace"], desired["metadata"]["name"]
    )
    return found, requeue

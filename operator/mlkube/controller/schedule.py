"""Periodic retraining: ``spec.training.schedule`` → one TrainingJob per firing.

The next firing is computed from ``status.lastScheduledTraining`` (or the Model's creation),
never from process memory, so schedules survive restarts; the TrainingJob's name encodes
the firing, so a restart that re-fires finds the run it made instead of adding one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from mlkube.api.conditions import now_iso
from mlkube.api.names import scheduled_training_job_name
from mlkube.api.resources import Body, training_job_resource
from mlkube.api.status import Trigger
from mlkube.controller.children import Controller, ensure_child
from mlkube.controller.spec import name_of, spec_of

log = logging.getLogger("mlkube.controller")


def last_fire(schedule: str, since: datetime, now: datetime) -> tuple[datetime | None, datetime]:
    """The latest firing in (since, now] if any, and the next firing after ``now``.

    Firings missed while the operator was down collapse into one run, as a CronJob does.
    """
    itr = croniter(schedule, since)
    fired: datetime | None = None
    nxt: datetime = itr.get_next(datetime)
    for _ in range(100_000):
        if nxt > now:
            break
        fired = nxt
        nxt = itr.get_next(datetime)
    return fired, nxt


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


async def ensure_scheduled(
    ctl: Controller, model: Body, status: dict[str, Any]
) -> tuple[Body | None, float | None]:
    schedule = (spec_of(model).get("training") or {}).get("schedule")
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

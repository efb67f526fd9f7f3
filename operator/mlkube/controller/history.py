"""Bounded history: old finished TrainingJobs the operator made are deleted.

A Model retrained every minute by a schedule would otherwise pile up TrainingJobs (and
their Jobs and pods) without end. Only runs this Model owns are deleted — a user's own
TrainingJob may live in Git, and deleting it would make a GitOps tool re-create it and
train again — and never the run of the serving or pinned version.
"""

from __future__ import annotations

from mlkube.api.resources import Body
from mlkube.api.status import TERMINAL_PHASES
from mlkube.controller.children import Controller, Outcome, delete_if_owned
from mlkube.controller.registry import Registry
from mlkube.controller.spec import name_of, namespace_of, spec_of, status_of


def stale_runs(model: Body, registry: Registry, runs: list[Body], keep: int) -> list[Body]:
    """The finished runs of ``model`` it owns, beyond the newest ``keep``, unprotected."""
    uid = str(model["metadata"].get("uid"))
    protected = {registry.serving_version, (spec_of(model).get("serving") or {}).get("version")}
    finished = [
        tj
        for tj in runs
        if status_of(tj).get("phase") in TERMINAL_PHASES
        and any(ref.get("uid") == uid for ref in tj["metadata"].get("ownerReferences") or [])
    ]
    finished.sort(
        key=lambda tj: (
            int(status_of(tj).get("version") or 0),
            str(tj["metadata"].get("creationTimestamp") or ""),
        )
    )
    old = finished[: max(0, len(finished) - keep)]
    return [tj for tj in old if status_of(tj).get("version") not in protected]


async def prune_runs(ctl: Controller, model: Body, registry: Registry, runs: list[Body]) -> int:
    """Deletes the stale runs (their Jobs and pods follow by garbage collection)."""
    deleted = 0
    for tj in stale_runs(model, registry, runs, ctl.settings.max_training_jobs):
        outcome = await delete_if_owned(
            ctl, "TrainingJob", namespace_of(tj), name_of(tj), str(model["metadata"]["uid"])
        )
        if outcome is Outcome.DELETED:
            ctl.cache.forget("TrainingJob", namespace_of(tj), name_of(tj))
            deleted += 1
    return deleted

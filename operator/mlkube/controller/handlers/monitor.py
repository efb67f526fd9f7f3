"""Monitor → drift CronJob with its own ServiceAccount, Role and RoleBinding.

The drift checker writes the verdict conditions (``Drifted``) into the same status;
this reconciler owns only ``Ready``/``Reconciling``/``Stalled`` and ``cronJobName`` and
writes with a resourceVersion precondition, so neither side erases the other's work.
"""

from __future__ import annotations

from typing import Any

from mlkube.api import names
from mlkube.api.conditions import (
    READY,
    RECONCILING,
    STALLED,
    get_condition,
    phase_from,
    set_condition,
)
from mlkube.api.status import Reason, ResourcePhase
from mlkube.controller.builders import build_drift_cronjob, build_drift_rbac
from mlkube.controller.children import Controller, Outcome, ensure_child, post_event
from mlkube.controller.spec import (
    generation_of,
    model_ref,
    spec_of,
    status_of,
    storage_problem,
)
from mlkube.controller.status import write_status

CONFLICT_RETRY = 0.05


async def reconcile_monitor(ctl: Controller, namespace: str, name: str) -> float | None:
    monitor = ctl.cache.get("Monitor", namespace, name)
    if monitor is None or monitor["metadata"].get("deletionTimestamp"):
        return None
    status = status_of(monitor)
    generation = generation_of(monitor)
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    model = ctl.cache.get("Model", namespace, model_ref(monitor))
    desired: dict[str, Any] = {"observedGeneration": generation}
    stalled: tuple[str, str] | None = None
    if model is None:
        stalled = (
            Reason.MODEL_NOT_FOUND,
            f"Model {model_ref(monitor)!r} does not exist in namespace {namespace}; "
            "the check starts once it does",
        )
    else:
        problem = storage_problem(model, ctl.settings)
        if problem is not None:
            stalled = (Reason.INVALID_SPEC, problem)
    if stalled is None and model is not None:
        children = [*build_drift_rbac(monitor), build_drift_cronjob(monitor, model, ctl.settings)]
        for manifest in children:
            outcome, _ = await ensure_child(ctl, manifest)
            if outcome is Outcome.NOT_OWNED and stalled is None:
                stalled = (
                    Reason.APPLY_FAILED,
                    f"a {manifest['kind']} named {manifest['metadata']['name']} exists "
                    "and is not ours",
                )
        desired["cronJobName"] = names.drift_cronjob_name(name)
    if stalled is not None:
        conditions = set_condition(conditions, READY, False, *stalled, generation=generation)
        conditions = set_condition(conditions, STALLED, True, *stalled, generation=generation)
    else:
        suspended = bool(spec_of(monitor).get("suspend"))
        reason = Reason.SUSPENDED if suspended else Reason.SCHEDULED
        schedule = spec_of(monitor).get("schedule") or "*/30 * * * *"
        message = (
            "checks are suspended"
            if suspended
            else f"drift checks run on {schedule!r} by CronJob {names.drift_cronjob_name(name)}"
        )
        conditions = set_condition(conditions, READY, True, reason, message, generation=generation)
        conditions = set_condition(conditions, STALLED, False, reason, "", generation=generation)
    conditions = set_condition(
        conditions, RECONCILING, False, Reason.RECONCILED, "", generation=generation
    )
    desired["conditions"] = conditions
    desired["phase"] = phase_from(conditions, ready_phase=ResourcePhase.ACTIVE)
    previous = (get_condition(status.get("conditions") or [], STALLED) or {}).get("reason")
    if not await write_status(ctl, "Monitor", monitor, desired, precondition=True):
        return CONFLICT_RETRY
    if stalled is not None and previous != stalled[0]:
        await post_event(ctl, monitor, "Monitor", stalled[0], stalled[1], warning=True)
    return None

"""Conditions as the Kubernetes API conventions and kstatus read them: pure functions.

``Ready`` is the roll-up; ``Reconciling`` and ``Stalled`` are present only while true
(kstatus treats an absent abnormal-true condition as false); ``lastTransitionTime``
changes only when ``status`` changes, so dashboards show how long a state has lasted.
Reasons come from the fixed set in ``status.Reason``, so alerts can match them. The
operator and the drift checker both use these helpers, so a condition is one shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from mlkube.api.status import ConditionType, Reason, ResourcePhase

Condition = dict[str, Any]
KStatus = Literal["InProgress", "Current", "Failed", "NotFound"]

READY: Final = ConditionType.READY
RECONCILING: Final = ConditionType.RECONCILING
STALLED: Final = ConditionType.STALLED
TRAINED: Final = ConditionType.TRAINED
SERVING: Final = ConditionType.SERVING
# Written by the drift checker; the operator keeps it untouched when it writes its own.
DRIFTED: Final = ConditionType.DRIFTED
LIVE_PERFORMANCE: Final = ConditionType.LIVE_PERFORMANCE

# Conditions that kstatus reads as abnormal when True, and that are dropped when False.
ABNORMAL_TRUE: Final = frozenset({RECONCILING, STALLED})


def now_iso(now: datetime | None = None) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def is_true(conditions: Iterable[Mapping[str, Any]], kind: str) -> bool:
    found = get_condition(conditions, kind)
    return found is not None and found.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: str,
    status: bool | Literal["Unknown"],
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime | None = None,
) -> list[Condition]:
    """A new list with ``kind`` set; abnormal-true conditions set False are removed."""
    text = status if isinstance(status, str) else ("True" if status else "False")
    if kind in ABNORMAL_TRUE and text == "False":
        return remove_condition(conditions, kind)
    previous = get_condition(conditions, kind)
    changed = previous is None or previous.get("status") != text
    kept = None if previous is None or changed else previous.get("lastTransitionTime")
    transition = str(kept) if kept else now_iso(now)
    updated: Condition = {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    result = [dict(c) for c in conditions if c.get("type") != kind]
    result.append(updated)
    return sorted(result, key=_order)


def remove_condition(conditions: Sequence[Mapping[str, Any]], kind: str) -> list[Condition]:
    return [dict(c) for c in conditions if c.get("type") != kind]


_ORDER: Final = (READY, RECONCILING, STALLED, TRAINED, SERVING, DRIFTED, LIVE_PERFORMANCE)


def _order(condition: Mapping[str, Any]) -> tuple[int, str]:
    kind = str(condition.get("type", ""))
    return (_ORDER.index(kind) if kind in _ORDER else len(_ORDER), kind)


def kstatus(obj: Mapping[str, Any] | None) -> KStatus:
    """The kstatus verdict of a custom resource following the standard conditions.

    The rules of sigs.k8s.io/cli-utils' kstatus for resources with conditions: a stale
    ``observedGeneration`` or ``Reconciling=True`` is InProgress, ``Stalled=True`` is
    Failed, ``Ready`` not True is InProgress, anything else Current.
    """
    if obj is None:
        return "NotFound"
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed != generation:
        return "InProgress"
    conditions = status.get("conditions") or []
    if is_true(conditions, RECONCILING):
        return "InProgress"
    if is_true(conditions, STALLED):
        return "Failed"
    ready = get_condition(conditions, READY)
    if ready is not None and ready.get("status") != "True":
        return "InProgress"
    return "Current"


def phase_from(
    conditions: Sequence[Mapping[str, Any]], *, ready_phase: ResourcePhase = ResourcePhase.READY
) -> ResourcePhase:
    """A one-word summary for printer columns, derived from the conditions only."""
    if is_true(conditions, STALLED):
        stalled = get_condition(conditions, STALLED) or {}
        invalid = stalled.get("reason") == Reason.INVALID_SPEC
        return ResourcePhase.INVALID if invalid else ResourcePhase.FAILED
    if is_true(conditions, READY):
        return ready_phase
    if is_true(conditions, RECONCILING):
        reconciling = get_condition(conditions, RECONCILING) or {}
        training = reconciling.get("reason") == Reason.TRAINING
        return ResourcePhase.TRAINING if training else ResourcePhase.PROGRESSING
    return ResourcePhase.PENDING

"""``kubectl mlkube rollout status|promote|abort``: a Model's canary, shown and steered.

The operator decides a canary; the plugin only shows ``status.rollout`` and, to end one
early, writes an annotation naming the action and the candidate it is meant for, so a
request typed while an older canary ran cannot end a newer one.
"""

from __future__ import annotations

from typing import Any

from mlkube.api import names
from mlkube.api.rollout import RolloutAction, RolloutPhase, rollout_spec
from mlkube.plugin.views import Body, ViewError, table


def rollout_status(model: Body) -> str:
    """The rollout strategy, and the current or last canary with its figures."""
    spec = rollout_spec((model.get("spec") or {}).get("serving"))
    rollout = (model.get("status") or {}).get("rollout") or {}
    serving = (model.get("status") or {}).get("servingVersion")
    head = f"strategy {spec.strategy}, serving v{serving}" if serving else f"{spec.strategy}"
    if not rollout:
        return f"{head}; no canary yet"
    lines = [
        head,
        f"canary v{rollout.get('candidate')} against v{rollout.get('stable')}: "
        f"{rollout.get('phase')} ({rollout.get('mode')}, {rollout.get('share')}% asked, "
        f"{100 * float(rollout.get('readyShare') or 0):.0f}% of ready pods)",
        f"  {rollout.get('message', '')}",
    ]
    verdicts = rollout.get("verdicts") or []
    if verdicts:
        rows = [
            [v.get("check"), v.get("candidate"), v.get("stable"), v.get("limit"), v.get("passed")]
            for v in verdicts
        ]
        lines += ["", table(["CHECK", "CANDIDATE", "STABLE", "LIMIT", "PASSED"], rows)]
    return "\n".join(lines)


def rollout_request_patch(model: Body, action: RolloutAction) -> tuple[dict[str, Any], str]:
    """The annotation asking the operator to promote or abort the running canary now."""
    rollout = (model.get("status") or {}).get("rollout") or {}
    if rollout.get("phase") != RolloutPhase.PROGRESSING:
        last = f" (the last one: v{rollout.get('candidate')} {rollout.get('phase')})"
        raise ViewError("no canary is in progress" + (last if rollout else ""))
    candidate = int(rollout["candidate"])
    patch = {"metadata": {"annotations": {names.ROLLOUT_REQUEST: f"{action}:{candidate}"}}}
    verb = "promotion" if action == RolloutAction.PROMOTE else "rollback"
    return patch, f"asked the operator for the {verb} of canary v{candidate}"

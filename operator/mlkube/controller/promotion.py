"""The promotion gate: may a newly trained version replace the serving one? Pure.

Every decision carries its reason in words, because it ends up in
``Model.status.versions[].reason`` where a person reads why a version is not serving.
Error metrics (rmse, mae, log_loss) are lower-is-better; the trainer says which with
``higherIsBetter``, so the gate never guesses from the metric's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlkube.api.status import Decision


@dataclass(frozen=True)
class GateResult:
    outcome: Decision
    reason: str

    @property
    def promote(self) -> bool:
        return self.outcome == Decision.PROMOTED


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def promotion_decision(
    candidate: Mapping[str, Any],
    serving: Mapping[str, Any] | None,
    promotion: Mapping[str, Any],
) -> GateResult:
    """Decides about ``candidate`` (a versions[] entry) against ``serving`` (or None).

    Order: slice minimums and ``minScore`` (absolute quality), then ``maxRegression``
    against the serving version (relative quality), then the policy: a ``manual`` policy
    leaves a passing version Pending until someone pins it.
    """
    score = candidate.get("score")
    if score is None:
        return GateResult(Decision.REJECTED, "the training reported no score")
    score = float(score)
    higher = bool(candidate.get("higherIsBetter", True))
    metric = str(candidate.get("metric") or "score")

    def better_or_equal(a: float, b: float) -> bool:
        return a >= b if higher else a <= b

    failed_slices = [s for s in candidate.get("slices") or [] if s.get("passed") is False]
    if failed_slices:
        details = ", ".join(
            f"{s.get('name')} {_fmt(float(s.get('score') or 0.0))} "
            f"(minimum {_fmt(float(s.get('minScore') or 0.0))})"
            for s in failed_slices
        )
        return GateResult(Decision.REJECTED, f"slice minimum not met: {details}")

    min_score = promotion.get("minScore")
    if min_score is not None and not better_or_equal(score, float(min_score)):
        bound = "minimum" if higher else "maximum"
        return GateResult(
            Decision.REJECTED,
            f"{metric} {_fmt(score)} is worse than the {bound} {_fmt(float(min_score))}",
        )

    if serving is not None and serving.get("score") is not None:
        served = float(serving["score"])
        allowed = float(promotion.get("maxRegression") or 0.0)
        same_metric = (serving.get("metric") or metric) == metric
        limit = served - allowed if higher else served + allowed
        if same_metric and not better_or_equal(score, limit):
            return GateResult(
                Decision.REJECTED,
                f"{metric} {_fmt(score)} regresses from v{serving.get('version')}'s "
                f"{_fmt(served)} by more than maxRegression {_fmt(allowed)}",
            )

    if (promotion.get("policy") or "auto") == "manual":
        return GateResult(
            Decision.PENDING,
            f"passed the checks ({metric} {_fmt(score)}); promotion policy is manual: "
            "set spec.serving.version to serve it",
        )
    against = (
        f" (serving v{serving.get('version')}: {_fmt(float(serving['score']))})"
        if serving is not None and serving.get("score") is not None
        else ""
    )
    return GateResult(Decision.PROMOTED, f"passed the checks: {metric} {_fmt(score)}{against}")

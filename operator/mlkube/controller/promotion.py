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
    if candidate.get("score") is None:
        return GateResult(Decision.REJECTED, "the training reported no score")
    score = float(candidate["score"])
    metric = str(candidate.get("metric") or "score")
    problem = (
        _failed_slices(candidate)
        or _below_minimum(candidate, score, metric, promotion)
        or _regression(candidate, score, metric, serving, promotion)
    )
    if problem is not None:
        return GateResult(Decision.REJECTED, problem)
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


def _better_or_equal(candidate: Mapping[str, Any], a: float, b: float) -> bool:
    return a >= b if bool(candidate.get("higherIsBetter", True)) else a <= b


def _failed_slices(candidate: Mapping[str, Any]) -> str | None:
    failed = [s for s in candidate.get("slices") or [] if s.get("passed") is False]
    if not failed:
        return None
    details = ", ".join(
        f"{s.get('name')} {_fmt(float(s.get('score') or 0.0))} "
        f"(minimum {_fmt(float(s.get('minScore') or 0.0))})"
        for s in failed
    )
    return f"slice minimum not met: {details}"


def _below_minimum(
    candidate: Mapping[str, Any], score: float, metric: str, promotion: Mapping[str, Any]
) -> str | None:
    min_score = promotion.get("minScore")
    if min_score is None or _better_or_equal(candidate, score, float(min_score)):
        return None
    bound = "minimum" if candidate.get("higherIsBetter", True) else "maximum"
    return f"{metric} {_fmt(score)} is worse than the {bound} {_fmt(float(min_score))}"


def _regression(
    candidate: Mapping[str, Any],
    score: float,
    metric: str,
    serving: Mapping[str, Any] | None,
    promotion: Mapping[str, Any],
) -> str | None:
    if serving is None or serving.get("score") is None:
        return None
    served = float(serving["score"])
    allowed = float(promotion.get("maxRegression") or 0.0)
    same_metric = (serving.get("metric") or metric) == metric
    higher = bool(candidate.get("higherIsBetter", True))
    limit = served - allowed if higher else served + allowed
    if not same_metric or _better_or_equal(candidate, score, limit):
        return None
    return (
        f"{metric} {_fmt(score)} regresses from v{serving.get('version')}'s "
        f"{_fmt(served)} by more than maxRegression {_fmt(allowed)}"
    )

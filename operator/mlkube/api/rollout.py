"""The words of a canary rollout, shared by the operator, its CRD schema and the plugin.

``spec.serving.rollout`` says how a promoted version reaches traffic; ``status.rollout``
says where the current (or last) canary stands. The operator writes the status, the
plugin reads it and asks for an early end through an annotation, and the schema lists
the same words as enums, so all three agree on one spelling here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypedDict

from mlkube.api import names


class Strategy(StrEnum):
    """``spec.serving.rollout.strategy``."""

    DIRECT = "Direct"
    CANARY = "Canary"


class RolloutPhase(StrEnum):
    """``status.rollout.phase``: a canary is analysed, then promoted or rolled back."""

    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


class Check(StrEnum):
    """One comparison of the candidate against stable in ``status.rollout.verdicts``."""

    REQUESTS = "requests"
    ERROR_RATE = "errorRate"
    P99 = "p99"
    PREDICTION_SHIFT = "predictionShift"


class RolloutAction(StrEnum):
    """What ``kubectl mlkube rollout`` may ask of a running canary."""

    PROMOTE = "promote"
    ABORT = "abort"


DEFAULT_SHARE: Final = 20
DEFAULT_WINDOW_SECONDS: Final = 300
DEFAULT_MIN_REQUESTS: Final = 50
DEFAULT_MAX_ERROR_RATE_INCREASE: Final = 0.01
# The latency buckets step by 2 or 2.5: the default lets the p99 be one bucket higher.
DEFAULT_MAX_P99_RATIO: Final = 2.5
DEFAULT_MAX_PREDICTION_SHIFT: Final = 0.2
# Without enough traffic after this many windows, the canary is rolled back (not judged).
PATIENCE_WINDOWS: Final = 3


class CheckVerdict(TypedDict):
    """One figure the decision used: the candidate's, stable's, the limit, and the outcome."""

    check: Check
    candidate: float | None
    stable: float | None
    limit: float
    passed: bool


class RolloutStatus(TypedDict, total=False):
    """``Model.status.rollout``: the current canary, or the last one and how it ended."""

    phase: RolloutPhase
    candidate: int
    stable: int
    share: int
    readyShare: float
    mode: str
    startedAt: str
    analysisStartedAt: str
    decidedAt: str
    verdicts: list[CheckVerdict]
    message: str
    baseline: dict[str, Any]


@dataclass(frozen=True)
class RolloutSpec:
    """``spec.serving.rollout`` with the schema's defaults filled in."""

    strategy: Strategy = Strategy.DIRECT
    share: int = DEFAULT_SHARE
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    min_requests: int = DEFAULT_MIN_REQUESTS
    max_error_rate_increase: float = DEFAULT_MAX_ERROR_RATE_INCREASE
    max_p99_ratio: float = DEFAULT_MAX_P99_RATIO
    max_prediction_shift: float = DEFAULT_MAX_PREDICTION_SHIFT
    parent_refs: tuple[Mapping[str, Any], ...] = ()

    @property
    def canary(self) -> bool:
        return self.strategy == Strategy.CANARY


def rollout_spec(serving: Mapping[str, Any] | None) -> RolloutSpec:
    """Reads ``spec.serving.rollout`` (the API server has validated its ranges)."""
    spec = (serving or {}).get("rollout") or {}
    limits = spec.get("limits") or {}

    def number(source: Mapping[str, Any], key: str, default: float) -> float:
        value = source.get(key)
        return default if value is None else float(value)

    return RolloutSpec(
        strategy=Strategy(spec.get("strategy") or Strategy.DIRECT),
        share=int(spec.get("canaryPercent") or DEFAULT_SHARE),
        window_seconds=int(spec.get("analysisSeconds") or DEFAULT_WINDOW_SECONDS),
        min_requests=int(number(spec, "minRequests", DEFAULT_MIN_REQUESTS)),
        max_error_rate_increase=number(
            limits, "maxErrorRateIncrease", DEFAULT_MAX_ERROR_RATE_INCREASE
        ),
        max_p99_ratio=number(limits, "maxP99Ratio", DEFAULT_MAX_P99_RATIO),
        max_prediction_shift=number(limits, "maxPredictionShift", DEFAULT_MAX_PREDICTION_SHIFT),
        parent_refs=tuple(dict(r) for r in spec.get("parentRefs") or ()),
    )


def rollout_request(annotations: Mapping[str, str] | None) -> tuple[RolloutAction, int] | None:
    """The plugin's ``promote:<N>``/``abort:<N>`` annotation, or None when absent or garbled."""
    raw = (annotations or {}).get(names.ROLLOUT_REQUEST, "")
    action, _, version = raw.partition(":")
    if action not in {a.value for a in RolloutAction} or not version.isdigit():
        return None
    return RolloutAction(action), int(version)

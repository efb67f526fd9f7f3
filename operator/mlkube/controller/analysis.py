"""The canary analysis: predictors' Prometheus text → counters → a verdict per check.

Pure, so the rules are unit-tested without pods. A sample is a flat map of counters,
the same shape the stable version's baseline is kept in (``status.rollout.baseline``):
``requests`` and ``errors`` (5xx) of the inference routes, ``le:<bound>`` cumulative
latency buckets of those routes, and ``class:<label>`` predicted rows per class. Stable
pods have served long before the canary, so their counters are measured from the
baseline taken when the window began; the canary's pods start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from mlkube.api.rollout import PATIENCE_WINDOWS, Check, CheckVerdict, RolloutSpec

Sample = dict[str, float]
Outcome = Literal["pass", "fail", "wait"]
INFERENCE_ROUTES = frozenset({"infer", "predict"})
REQUESTS = "requests"
ERRORS = "errors"


def parse_metrics(text: str) -> Sample:
    """The counters of one predictor's ``/metrics`` page (all its models summed)."""
    sample: Sample = {REQUESTS: 0.0, ERRORS: 0.0}
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            labels = metric.labels
            if metric.name == "mlkube_serve_requests_total":
                if labels.get("route") in INFERENCE_ROUTES:
                    sample[REQUESTS] += metric.value
                    if labels.get("code", "").startswith("5"):
                        sample[ERRORS] += metric.value
            elif metric.name == "mlkube_serve_request_duration_seconds_bucket":
                if labels.get("route") in INFERENCE_ROUTES:
                    key = f"le:{labels.get('le')}"
                    sample[key] = sample.get(key, 0.0) + metric.value
            elif metric.name == "mlkube_serve_predictions_total":
                key = f"class:{labels.get('class', '')}"
                sample[key] = sample.get(key, 0.0) + metric.value
    return sample


def add(total: Sample, other: Mapping[str, float]) -> Sample:
    for key, value in other.items():
        total[key] = total.get(key, 0.0) + value
    return total


def since(now: Mapping[str, float], baseline: Mapping[str, float]) -> Sample:
    """Counters since the baseline; a restarted pod (a counter that went down) counts whole."""
    if now.get(REQUESTS, 0.0) < baseline.get(REQUESTS, 0.0):
        return dict(now)
    return {k: max(0.0, v - baseline.get(k, 0.0)) for k, v in now.items()}


def p99(sample: Mapping[str, float]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile (None without requests)."""
    buckets = sorted(
        (float(k[3:]), v) for k, v in sample.items() if k.startswith("le:") and k != "le:+Inf"
    )
    total = sample.get("le:+Inf", 0.0)
    if total <= 0:
        return None
    for bound, count in buckets:
        if count >= 0.99 * total:
            return bound
    return math.inf


def classes(sample: Mapping[str, float]) -> dict[str, float]:
    return {k[6:]: v for k, v in sample.items() if k.startswith("class:") and v > 0}


def prediction_shift(candidate: Mapping[str, float], stable: Mapping[str, float]) -> float | None:
    """Total variation distance of the predicted classes; None for regression or no rows."""
    ours, theirs = classes(candidate), classes(stable)
    if not ours or not theirs or set(ours) | set(theirs) == {""}:
        return None
    n, m = sum(ours.values()), sum(theirs.values())
    keys = set(ours) | set(theirs)
    return 0.5 * sum(abs(ours.get(k, 0.0) / n - theirs.get(k, 0.0) / m) for k in keys)


def _rate(sample: Mapping[str, float]) -> float | None:
    requests = sample.get(REQUESTS, 0.0)
    return sample.get(ERRORS, 0.0) / requests if requests else None


@dataclass
class Analysis:
    outcome: Outcome
    verdicts: list[CheckVerdict] = field(default_factory=list)
    message: str = ""


def _verdict(check: Check, ours: float | None, theirs: float | None, limit: float) -> CheckVerdict:
    if check == Check.ERROR_RATE:
        passed = (ours or 0.0) - (theirs or 0.0) <= limit
    elif check == Check.P99:
        passed = ours is None or theirs is None or ours <= theirs * limit
    else:
        passed = ours is None or ours <= limit
    rounded = [None if v is None or math.isinf(v) else round(v, 6) for v in (ours, theirs)]
    return {
        "check": check,
        "candidate": rounded[0],
        "stable": rounded[1],
        "limit": limit,
        "passed": passed,
    }


def judge(
    candidate: Mapping[str, float], stable: Mapping[str, float], spec: RolloutSpec, elapsed: float
) -> Analysis:
    """Pass after the window with every check passed; fail as soon as a check fails on
    enough traffic, or when enough traffic never came; otherwise wait."""
    requests = candidate.get(REQUESTS, 0.0)
    counted: CheckVerdict = {
        "check": Check.REQUESTS,
        "candidate": requests,
        "stable": stable.get(REQUESTS, 0.0),
        "limit": float(spec.min_requests),
        "passed": requests >= spec.min_requests,
    }
    if not counted["passed"]:
        if elapsed >= spec.window_seconds * PATIENCE_WINDOWS:
            message = (
                f"too little traffic to judge: {requests:.0f} requests, "
                f"{spec.min_requests} needed within {PATIENCE_WINDOWS} windows"
            )
            return Analysis("fail", [counted], message)
        return Analysis("wait", [counted], f"waiting for traffic: {requests:.0f} requests")
    verdicts = [
        counted,
        _verdict(Check.ERROR_RATE, _rate(candidate), _rate(stable), spec.max_error_rate_increase),
        _verdict(Check.P99, p99(candidate), p99(stable), spec.max_p99_ratio),
    ]
    shift = prediction_shift(candidate, stable)
    if shift is not None:
        verdicts.append(_verdict(Check.PREDICTION_SHIFT, shift, None, spec.max_prediction_shift))
    failed = [v for v in verdicts if not v["passed"]]
    if failed:
        return Analysis("fail", verdicts, "; ".join(_describe(v) for v in failed))
    if elapsed < spec.window_seconds:
        left = spec.window_seconds - elapsed
        return Analysis(
            "wait", verdicts, f"every check passes so far; {left:.0f}s of analysis left"
        )
    return Analysis("pass", verdicts, "; ".join(_describe(v) for v in verdicts))


def _describe(verdict: CheckVerdict) -> str:
    ours, theirs, limit = verdict["candidate"], verdict["stable"], verdict["limit"]
    word = "within" if verdict["passed"] else "over"
    if verdict["check"] == Check.REQUESTS:
        return f"{ours:.0f} requests"
    if verdict["check"] == Check.ERROR_RATE:
        return f"error rate {ours or 0:.2%} vs stable {theirs or 0:.2%} ({word} +{limit:.2%})"
    if verdict["check"] == Check.P99:
        shown = "n/a" if ours is None else f"{ours * 1000:.1f}ms"
        base = "n/a" if theirs is None else f"{theirs * 1000:.1f}ms"
        return f"p99 {shown} vs stable {base} ({word} x{limit:g})"
    return f"prediction shift {ours:.3f} ({word} {limit:g})"

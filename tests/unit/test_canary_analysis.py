"""The canary analysis rules on predictors' Prometheus text: each check, each outcome.

Pure functions, so the figures are exact: the error-rate, p99 and prediction-shift
limits fail a candidate as soon as enough requests came, a clean candidate passes
only after its window, and too little traffic fails it after the patience windows.
"""

from __future__ import annotations

import pytest

from mlkube.api.rollout import PATIENCE_WINDOWS, Check, rollout_request, rollout_spec
from mlkube.controller.analysis import judge, p99, parse_metrics, prediction_shift, since

SPEC = rollout_spec(
    {
        "rollout": {
            "strategy": "Canary",
            "analysisSeconds": 60,
            "minRequests": 20,
            "limits": {"maxErrorRateIncrease": 0.05, "maxP99Ratio": 2, "maxPredictionShift": 0.2},
        }
    }
)

MODEL = 'model_name="m",model_version="1"'
LATENCY = "mlkube_serve_request_duration_seconds"


MODEL = 'model_name="m",model_version="1"'
LATENCY = "mlkube_serve_request_duration_seconds"


def exposition(
    ok: int, errors: int = 0, *, slow: bool = False, classes: dict[str, int] | None = None
) -> str:
    """What ``mlkube serve`` exports (the names and labels of its collectors)."""
    requests = "mlkube_serve_requests_total"
    lines = [
        f"# TYPE {requests} counter",
        f'{requests}{{{MODEL},route="infer",code="200"}} {ok}',
        f'{requests}{{{MODEL},route="infer",code="500"}} {errors}',
        f'{requests}{{{MODEL},route="ready",code="200"}} 999',
        f"# TYPE {LATENCY} histogram",
    ]
    total = ok + errors
    for bound in ("0.005", "0.01", "0.1", "1.0"):
        within = total if not slow or bound == "1.0" else 0
        lines.append(f'{LATENCY}_bucket{{{MODEL},route="infer",le="{bound}"}} {within}')
    lines += [
        f'{LATENCY}_bucket{{{MODEL},route="infer",le="+Inf"}} {total}',
        f'{LATENCY}_count{{{MODEL},route="infer"}} {total}',
        f'{LATENCY}_sum{{{MODEL},route="infer"}} 0.1',
        "# TYPE mlkube_serve_predictions_total counter",
    ]
    for label, count in (classes or {"0": ok // 3, "1": ok // 3, "2": ok - 2 * (ok // 3)}).items():
        lines.append(f'mlkube_serve_predictions_total{{{MODEL},class="{label}"}} {count}')
    return "\n".join(lines) + "\n"


def test_parse_counts_inference_routes_only_and_5xx_as_errors() -> None:
    sample = parse_metrics(exposition(90, 10))
    assert sample["requests"] == 100 and sample["errors"] == 10
    assert sample["le:+Inf"] == 100 and sample["class:2"] == 30
    assert p99(sample) == 0.005
    assert p99(parse_metrics(exposition(10, slow=True))) == 1.0


def test_stable_is_measured_from_its_baseline_and_a_restart_counts_whole() -> None:
    before, after = parse_metrics(exposition(1000)), parse_metrics(exposition(1100))
    assert since(after, before)["requests"] == 100
    assert since(parse_metrics(exposition(40)), before)["requests"] == 40


def test_a_clean_candidate_waits_for_its_window_then_passes() -> None:
    ours, theirs = parse_metrics(exposition(50)), parse_metrics(exposition(200))
    waiting = judge(ours, theirs, SPEC, elapsed=30)
    assert waiting.outcome == "wait" and "30s of analysis left" in waiting.message
    passed = judge(ours, theirs, SPEC, elapsed=61)
    assert passed.outcome == "pass"
    assert [v["check"] for v in passed.verdicts] == [
        Check.REQUESTS,
        Check.ERROR_RATE,
        Check.P99,
        Check.PREDICTION_SHIFT,
    ]
    assert all(v["passed"] for v in passed.verdicts)


@pytest.mark.parametrize(
    ("candidate", "failed", "words"),
    [
        (exposition(40, 10), Check.ERROR_RATE, "error rate 20.00% vs stable 0.00%"),
        (exposition(50, slow=True), Check.P99, "p99 1000.0ms vs stable 5.0ms"),
        (exposition(60, classes={"0": 60}), Check.PREDICTION_SHIFT, "prediction shift 0.667"),
    ],
)
def test_a_failing_check_fails_at_once_with_its_figures(
    candidate: str, failed: Check, words: str
) -> None:
    result = judge(parse_metrics(candidate), parse_metrics(exposition(300)), SPEC, elapsed=1)
    assert result.outcome == "fail"
    assert [v["check"] for v in result.verdicts if not v["passed"]] == [failed]
    assert words in result.message


def test_too_little_traffic_waits_then_fails_after_the_patience_windows() -> None:
    ours, theirs = parse_metrics(exposition(5)), parse_metrics(exposition(100))
    assert judge(ours, theirs, SPEC, elapsed=61).outcome == "wait"
    late = judge(ours, theirs, SPEC, elapsed=60 * PATIENCE_WINDOWS)
    assert late.outcome == "fail" and "too little traffic" in late.message


def test_regression_has_no_prediction_shift_check() -> None:
    regression = parse_metrics(exposition(50, classes={"": 50}))
    assert prediction_shift(regression, regression) is None
    result = judge(regression, regression, SPEC, elapsed=61)
    assert result.outcome == "pass"
    assert Check.PREDICTION_SHIFT not in [v["check"] for v in result.verdicts]


def test_rollout_defaults_and_the_plugin_request() -> None:
    direct = rollout_spec(None)
    assert not direct.canary and direct.share == 20 and direct.window_seconds == 300
    assert rollout_request({"mlkube.io/rollout-request": "abort:3"}) == ("abort", 3)
    assert rollout_request({"mlkube.io/rollout-request": "drop:3"}) is None
    assert rollout_request({"mlkube.io/rollout-request": "promote:x"}) is None

"""Whether a Monitor's check opens a TrainingJob, and the one it creates.

A check can ask for a retrain on two signals: input drift (verdict ``drift``) and live
performance (verdict ``degraded``); ``spec.retrainOn`` says which of them may (default:
drift, as before), and ``spec.action: alert`` turns both off. Data quality never
retrains. Either way the same guards hold: no TrainingJob of the model still running,
and the cooldown since the last one this Monitor opened (drift or performance) passed.

The name is deterministic per cooldown period and trigger (``<model>-drift-<start>``,
``<model>-perf-<start>``), so two checks at the same moment ask for the same name and
the API server lets one create it. A performance run of a Model that opts in names the
file of labelled live rows in ``spec.liveRows``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from mlkube.api import names
from mlkube.api.performance import PerformanceVerdict, RetrainOn
from mlkube.api.resources import training_job_resource
from mlkube.api.status import TERMINAL_PHASES, Trigger, Verdict
from mlkube.runtime.drift.check import CheckResult
from mlkube.runtime.drift.perfspec import PerformanceSettings
from mlkube.runtime.drift.report import rfc3339, top_features
from mlkube.runtime.drift.spec import DriftSettings
from mlkube.runtime.drift.window import parse_time

# The check time that created a TrainingJob: the cooldown counts from it (a check run
# with --now, e.g. a backfill, then sees its own clock, not the API server's).
CHECKED_AT: Final = f"{names.GROUP}/drift-checked-at"
MONITOR_TRIGGERS: Final = frozenset({Trigger.DRIFT, Trigger.PERFORMANCE})


def wanted_trigger(
    drift: DriftSettings, perf: PerformanceSettings | None, result: CheckResult
) -> tuple[Trigger | None, str]:
    """The trigger this check asks for (performance first), or None and why not."""
    performance = result.live.performance
    degraded = performance is not None and performance.verdict == PerformanceVerdict.DEGRADED
    drifted = result.report["verdict"] == Verdict.DRIFT
    retrain_on = perf.retrain_on if perf is not None else RetrainOn.DRIFT
    if not degraded and not drifted:
        verdict = f"verdict {result.report['verdict']}"
        if performance is not None:
            verdict += f", performance {performance.verdict.value}"
        return None, verdict
    found = "live performance degraded" if degraded else "drift found"
    if drift.action != "retrain":
        return None, f"{found}; action is alert, no TrainingJob"
    if degraded and retrain_on in (RetrainOn.PERFORMANCE, RetrainOn.BOTH):
        return Trigger.PERFORMANCE, found
    if drifted and retrain_on in (RetrainOn.DRIFT, RetrainOn.BOTH):
        return Trigger.DRIFT, "drift found"
    return None, f"{found}; spec.retrainOn is {retrain_on.value}, no TrainingJob"


def blocked(jobs: list[dict[str, Any]], now: datetime, cooldown: Any, found: str) -> str | None:
    """Why no TrainingJob may be created now (one running, or in cooldown), else None."""
    running = [
        tj["metadata"]["name"]
        for tj in jobs
        if (tj.get("status") or {}).get("phase") not in TERMINAL_PHASES
    ]
    if running:
        return f"{found}; TrainingJob {running[0]} is still running"
    last = [
        parse_time(
            (tj["metadata"].get("annotations") or {}).get(CHECKED_AT)
            or tj["metadata"]["creationTimestamp"]
        )
        for tj in jobs
        if (tj.get("spec") or {}).get("trigger") in MONITOR_TRIGGERS
    ]
    if last and now - max(last) < cooldown:
        return f"{found}; in cooldown until {rfc3339(max(last) + cooldown)}"
    return None


def _reason(monitor: str, trigger: Trigger, drift: DriftSettings, result: CheckResult) -> str:
    performance = result.live.performance
    if trigger == Trigger.PERFORMANCE and performance is not None:
        return (
            f"Monitor {monitor}: {performance.message} ({performance.counts['matched']} "
            f"labelled predictions, version {result.report['version']})"
        )
    top = [r for r in top_features(result.evaluation, 5) if r.drifted]
    scores = ", ".join(f"{r.name} {r.method} {r.score:.3g}" for r in top if r.score is not None)
    return (
        f"Monitor {monitor}: drift in {result.report['driftShare']:.0%} of features "
        f"(>= {drift.dataset_drift_share:.0%}) over {result.report['samples']['live']} "
        f"rows, version {result.report['version']}; {scores}"
    )


def training_job_body(
    monitor: str,
    model: dict[str, Any],
    trigger: Trigger,
    drift: DriftSettings,
    result: CheckResult,
    *,
    now: datetime,
) -> dict[str, Any]:
    """The TrainingJob to create; its name is shared by every check of this period."""
    model_name = model["metadata"]["name"]
    name = names.drift_training_job_name(model_name, now, drift.cooldown.total_seconds())
    if trigger == Trigger.PERFORMANCE:
        name = name.replace(f"{model_name}-drift-", f"{model_name}-perf-", 1)
    body = training_job_resource(
        model,
        name,
        trigger,
        _reason(monitor, trigger, drift, result),
        labels={names.LABEL_MONITOR: monitor},
        annotations={CHECKED_AT: rfc3339(now)},
        block_owner_deletion=False,
    )
    live = result.live
    if trigger == Trigger.PERFORMANCE and live.rows_file and live.window and live.performance:
        body["spec"]["liveRows"] = {
            "path": live.rows_file,
            "rows": len(live.performance.live_rows),
            "windowStart": rfc3339(live.window.start),
            "windowEnd": rfc3339(live.window.end),
            "monitor": monitor,
        }
    return body

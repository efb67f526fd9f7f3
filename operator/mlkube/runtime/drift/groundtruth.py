"""The checks beside input drift that read the model's outputs: live performance from
labels and prediction drift, run in one more pass over the window's log.

``run_live_checks`` is what ``check.run_check`` calls after the input-drift pass; it
returns the results, the report's ``performance`` and ``predictionDrift`` objects, the
lines for the printed table, and (when the verdict is degraded and the Model opts in)
the file of labelled live rows a retrain may add, written beside the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from mlkube.api.conditions import LIVE_PERFORMANCE, set_condition
from mlkube.api.performance import (
    DRIFT_DIR_PREFIX,
    LIVE_ROWS_KEEP,
    LIVE_ROWS_PREFIX,
    STATUS_HISTORY,
    HistoryEntry,
    PerformanceStatus,
    PerformanceVerdict,
)
from mlkube.api.status import Reason
from mlkube.runtime.drift.labels import PredictionCounts, read_predictions
from mlkube.runtime.drift.outputs import OutputDrift, OutputDriftResult
from mlkube.runtime.drift.performance import PerformanceResult, as_report, check_performance
from mlkube.runtime.drift.perfspec import PerformanceSettings, resolve
from mlkube.runtime.drift.spec import DriftSettings, SpecError
from mlkube.runtime.drift.window import Window


@dataclass
class LiveChecks:
    performance: PerformanceResult | None = None
    outputs: OutputDriftResult | None = None
    settings: PerformanceSettings | None = None
    rows_file: str | None = None  # relative to the Model's directory
    window: Window | None = None

    def report(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.performance is not None:
            found["performance"] = as_report(self.performance)
        if self.outputs is not None:
            found["predictionDrift"] = self.outputs.as_status()
        return found

    def table(self) -> str:
        lines = []
        if self.performance is not None:
            p = self.performance
            lines.append(
                f"performance: {p.verdict.value}  {p.metric} "
                f"{'-' if p.score is None else f'{p.score:.4f}'} on {p.counts['matched']} labels "
                f"(coverage {p.coverage:.1%}, validation "
                f"{'-' if p.validation_score is None else f'{p.validation_score:.4f}'})"
            )
            lines += [
                f"  {name:<24} {'-' if score is None else f'{score:.4f}':>8}  {count} labels"
                for name, score, count in p.slices
            ]
            lines.append(f"  {p.message}")
        if self.outputs is not None:
            o = self.outputs
            score = "-" if o.score is None else f"{o.score:.4g}"
            lines.append(
                f"prediction drift: {o.verdict.value}  {o.method} {score} "
                f"(threshold {o.threshold}) over {o.predictions} predictions"
            )
        return "\n".join(lines)


def run_live_checks(
    log: Path,
    metadata: Mapping[str, Any],
    drift: DriftSettings,
    performance: PerformanceSettings | None,
    now: datetime,
    *,
    model: Mapping[str, Any] | None = None,
    late_labels: Path | None = None,
    rows_dir: Path | None = None,
) -> LiveChecks:
    """Performance (when the Monitor asks for it) and prediction drift (when the version
    has a prediction profile); ``log`` is the inference-log directory."""
    outputs = OutputDrift(metadata, drift)
    if performance is None and not outputs.enabled:
        return LiveChecks()
    if not log.is_dir():
        if performance is not None and log.exists():
            raise SpecError(
                f"spec.performance joins labels with the inference log; {log} is a table "
                "(spec.data.uri), which has no request ids: drop one of the two"
            )
        return LiveChecks()
    checks = LiveChecks()
    if performance is None:
        window = Window(now - drift.window, now)
        version = metadata.get("version")
        counts = PredictionCounts()
        for _, output, _, _ in read_predictions(log, window, counts, version):
            outputs.observe(output)
    else:
        settings = resolve(performance, metadata, model, drift.window)
        assert settings.window is not None
        window = Window(now - settings.window, now)
        checks.settings = settings
        checks.performance = check_performance(
            log, metadata, settings, window, late_labels=late_labels, observe=outputs.observe
        )
        checks.rows_file = _write_rows(checks.performance, settings, rows_dir, now)
    checks.window = window
    checks.outputs = outputs.result()
    return checks


def _write_rows(
    result: PerformanceResult, settings: PerformanceSettings, rows_dir: Path | None, now: datetime
) -> str | None:
    """The labelled live rows of a degraded window, for a retrain of a Model that opts in."""
    if (
        rows_dir is None
        or not settings.include_live
        or result.verdict != PerformanceVerdict.DEGRADED
        or not result.live_rows
    ):
        return None
    name = f"{LIVE_ROWS_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    rows_dir.mkdir(parents=True, exist_ok=True)
    partial = rows_dir / f".{name}.partial"
    with partial.open("wb") as handle:
        for line in result.live_rows:
            handle.write(line)
    partial.replace(rows_dir / name)
    # Bounded like the reports' directory: the newest files stay (a TrainingJob names
    # the one its check wrote, at most one per cooldown), older ones go.
    for old in sorted(rows_dir.glob(f"{LIVE_ROWS_PREFIX}*.jsonl"))[:-LIVE_ROWS_KEEP]:
        old.unlink(missing_ok=True)
    return f"{DRIFT_DIR_PREFIX}{name}"


def performance_status(
    checks: LiveChecks, previous: Mapping[str, Any] | None, checked_at: str
) -> PerformanceStatus | None:
    """``Monitor.status.performance``: this check, and the last verdicts (bounded)."""
    result, settings = checks.performance, checks.settings
    if result is None or settings is None:
        return None
    history: list[HistoryEntry] = []
    if previous and previous.get("verdict") and previous.get("checkedAt"):
        history.append(
            {
                "time": str(previous["checkedAt"]),
                "verdict": str(previous["verdict"]),
                "score": previous.get("score"),
                "labels": int(previous.get("labels") or 0),
            }
        )
        history += list(previous.get("history") or [])
    return {
        "verdict": result.verdict,
        "checkedAt": checked_at,
        "metric": result.metric,
        "score": result.score,
        "validationScore": result.validation_score,
        "minScore": settings.min_score,
        "maxDrop": settings.max_drop,
        "labels": result.counts["matched"],
        "predictions": result.predictions,
        "coverage": result.coverage,
        "medianLabelDelaySeconds": result.median_delay,
        "slices": [{"name": n, "score": s, "labels": c} for n, s, c in result.slices],
        "counts": result.counts,
        "message": result.message[:1024],
        "history": history[:STATUS_HISTORY],
    }


_LIVE_BY_VERDICT: Final[dict[str, tuple[bool | Literal["Unknown"], Reason]]] = {
    PerformanceVerdict.OK: (True, Reason.LIVE_SCORE_OK),
    PerformanceVerdict.DEGRADED: (False, Reason.LIVE_SCORE_DEGRADED),
    PerformanceVerdict.INSUFFICIENT_LABELS: ("Unknown", Reason.INSUFFICIENT_LABELS),
}


def live_condition(
    conditions: list[dict[str, Any]],
    performance: PerformanceStatus | None,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """``LivePerformance``: True while the live score is within the Monitor's bounds."""
    if performance is None:
        return conditions
    status, reason = _LIVE_BY_VERDICT[performance["verdict"]]
    return set_condition(
        conditions,
        LIVE_PERFORMANCE,
        status,
        reason,
        performance["message"],
        generation=generation,
        now=now,
    )

"""The drift report: JSON document, stdout table, and a PNG of the most drifted features.

Files are written to a temporary sibling and renamed, so a reader (or a crash) never sees
half a report. The PNG is optional: it needs matplotlib (the ``plot`` extra) and is drawn
from the binned counts the check already holds, so it costs no extra pass over the data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from mlkube.runtime.drift.evaluate import Evaluation, FeatureResult
from mlkube.runtime.drift.window import Window, WindowCounts, format_duration

REPORT_FORMAT: Final = "mlkube.drift-report/v1"
PLOTTED_FEATURES: Final = 4


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(
    *,
    model: str,
    version: int,
    checked_at: datetime,
    window: Window | None,
    counts: WindowCounts,
    evaluation: Evaluation,
    share_threshold: float,
    live_source: str,
) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "model": model,
        "version": version,
        "checkedAt": rfc3339(checked_at),
        "live": live_source,
        "window": {
            "start": rfc3339(window.start) if window else None,
            "end": rfc3339(window.end) if window else None,
            "duration": format_duration(window.duration) if window else None,
        },
        "samples": {
            "live": evaluation.live_rows,
            "reference": evaluation.reference_rows,
            "referenceRows": evaluation.reference_note,
            "skippedRows": counts.skipped,
            "corruptLines": counts.corrupt,
        },
        "verdict": evaluation.verdict,
        "datasetDrift": evaluation.dataset_drift,
        "driftShare": evaluation.drift_share,
        "thresholdShare": share_threshold,
        "testedFeatures": evaluation.tested,
        "features": {name: r.as_report() for name, r in evaluation.features.items()},
        "dataQuality": evaluation.findings,
    }


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    staging = Path(temporary)
    try:
        write(staging)
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_report(path: Path, report: dict[str, Any]) -> None:
    def write(target: Path) -> None:
        with target.open("w", encoding="utf-8") as out:
            json.dump(report, out, indent=2, allow_nan=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())

    _atomic_write(path, write)


def _ranked(evaluation: Evaluation) -> list[FeatureResult]:
    """Drifted first, then by how far past its threshold each score is."""

    def margin(result: FeatureResult) -> float:
        if result.score is None or not result.threshold:
            return float("-inf")
        if result.p_value is not None:
            return (result.threshold - result.score) / result.threshold
        return (result.score - result.threshold) / result.threshold

    return sorted(evaluation.features.values(), key=lambda r: (not r.drifted, -margin(r)))


def top_features(evaluation: Evaluation, limit: int) -> list[FeatureResult]:
    return _ranked(evaluation)[:limit]


def _format_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def render_table(report: dict[str, Any], evaluation: Evaluation, limit: int = 40) -> str:
    """The human summary printed on stdout."""
    samples = report["samples"]
    lines = [
        f"model {report['model']} v{report['version']}  window "
        f"{report['window']['start'] or '-'} .. {report['window']['end'] or '-'}",
        f"live rows {samples['live']}  skipped {samples['skippedRows']}  corrupt lines "
        f"{samples['corruptLines']}",
        f"reference rows {samples['reference']}: {samples['referenceRows']}",
        f"verdict: {report['verdict'].upper()}  drifted {report['driftShare']:.0%} of "
        f"{report['testedFeatures']} tested features (dataset drift at "
        f">= {report['thresholdShare']:.0%})",
        "",
        f"{'feature':<24} {'kind':<11} {'method':<13} {'score':>10} {'threshold':>9}  drifted",
    ]
    ranked = _ranked(evaluation)
    for result in ranked[:limit]:
        threshold = "-" if result.threshold is None else f"{result.threshold:g}"
        flag = "YES" if result.drifted else "no"
        lines.append(
            f"{result.name[:24]:<24} {result.kind:<11} {result.method:<13} "
            f"{_format_number(result.score):>10} {threshold:>9}  {flag}"
        )
    if len(ranked) > limit:
        lines.append(f"... {len(ranked) - limit} more features in the report")
    for finding in report["dataQuality"]:
        lines.append(
            f"data quality: {finding['feature']}: {finding['finding']} "
            f"(value {finding['value']:.4g}, limit {finding['limit']})"
        )
    return "\n".join(lines)


def write_plot(path: Path, evaluation: Evaluation) -> bool:
    """Reference vs live shares of the most drifted features, as grouped bars.

    Drawn only when some feature drifted, with matplotlib's object API (no pyplot, no
    layout engine): the figure is a few bar charts, and drawing it should not cost more
    than the check. Returns False when nothing was drawn (no drift, or no matplotlib).
    """
    chosen = [
        r for r in top_features(evaluation, PLOTTED_FEATURES) if r.drifted and r.reference_counts
    ]
    if not chosen:
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(7, 1.9 * len(chosen)), dpi=72)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(chosen), 1, squeeze=False)[:, 0]
    for axis, result in zip(axes, chosen, strict=True):
        ref_total = sum(result.reference_counts) or 1.0
        live_total = sum(result.live_counts) or 1.0
        positions = list(range(len(result.reference_counts)))
        axis.bar(
            [p - 0.2 for p in positions],
            [c / ref_total for c in result.reference_counts],
            width=0.4,
            label="reference",
        )
        axis.bar(
            [p + 0.2 for p in positions],
            [c / live_total for c in result.live_counts],
            width=0.4,
            label="live",
        )
        axis.set_xticks(positions[:: max(1, len(positions) // 8)])
        axis.set_xticklabels(result.bin_labels[:: max(1, len(positions) // 8)], fontsize=6)
        axis.set_title(
            f"{result.name}: {result.method} {_format_number(result.score)}"
            f" (threshold {result.threshold:g})",
            fontsize=8,
        )
        axis.tick_params(axis="y", labelsize=6)
    axes[0].legend(fontsize=6)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.06, hspace=0.6)

    def write(target: Path) -> None:
        figure.savefig(target, format="png")

    _atomic_write(path, write)
    return True

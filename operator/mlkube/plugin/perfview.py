"""``kubectl mlkube perf MONITOR``: the live score from labels, as the last check left it.

Reads ``Monitor.status.performance`` (written by the drift checker) and prints the
verdict, the score against the serving version's validation score and the Monitor's
bounds, what happened to the labels, the per-slice scores and the last verdicts.
"""

from __future__ import annotations

from mlkube.plugin.views import Body, _cell, condition, table


def _number(value: object, digits: int = 4) -> str | None:
    return None if value is None else f"{float(str(value)):.{digits}f}"


def perf_report(monitor: Body) -> str:
    meta, spec = monitor["metadata"], monitor["spec"]
    status = monitor.get("status") or {}
    performance = status.get("performance") or {}
    lines = [
        f"Monitor:        {meta.get('namespace')}/{meta['name']}",
        f"Model:          {spec['modelRef']['name']}",
    ]
    if "performance" not in spec:
        lines.append("Performance:    not configured (spec.performance)")
        return "\n".join(lines)
    if not performance:
        lines.append("Last check:     none with labels yet")
        return "\n".join(lines)
    counts = performance.get("counts") or {}
    delay = performance.get("medianLabelDelaySeconds")
    fields = [
        ("Last check", performance.get("checkedAt")),
        ("Version", status.get("checkedVersion")),
        ("Verdict", performance.get("verdict")),
        ("Metric", performance.get("metric")),
        ("Live score", _number(performance.get("score"))),
        ("Validation", _number(performance.get("validationScore"))),
        ("Min score", performance.get("minScore")),
        ("Max drop", performance.get("maxDrop")),
        ("Labels", f"{performance.get('labels')} of {performance.get('predictions')} "
                   f"predictions ({float(performance.get('coverage') or 0):.1%})"),
        ("Label counts", ", ".join(f"{k} {v}" for k, v in counts.items()) or None),
        ("Median delay", None if delay is None else f"{float(delay):.0f}s"),
        ("Condition", condition(monitor, "LivePerformance").get("reason")),
        ("Message", performance.get("message")),
    ]  # fmt: skip
    lines += [f"{label + ':':<16}{_cell(value)}" for label, value in fields]
    slices = performance.get("slices") or []
    if slices:
        rows = [[s.get("name"), _number(s.get("score")), s.get("labels")] for s in slices]
        lines += ["", table(["SLICE", "SCORE", "LABELS"], rows)]
    history = performance.get("history") or []
    if history:
        rows = [[h.get("time"), h.get("verdict"), _number(h.get("score")), h.get("labels")]
                for h in history]  # fmt: skip
        lines += ["", table(["EARLIER CHECK", "VERDICT", "SCORE", "LABELS"], rows)]
    return "\n".join(lines)

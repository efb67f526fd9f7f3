"""Pure functions from mlkube objects to what the plugin prints or sends.

Kept apart from the API calls so each table, each rollback decision and each new
TrainingJob body is unit-testable from plain dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from mlkube.api import names
from mlkube.api.status import Decision

Body = Mapping[str, Any]
NONE = "<none>"


class ViewError(ValueError):
    """The objects do not allow what was asked (no such version, nothing to roll back to)."""


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A kubectl-style table: upper-case headers, columns padded with three spaces."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def condition(obj: Body, kind: str) -> Body:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def monitors_by_model(monitors: Iterable[Body]) -> dict[tuple[str, str], Body]:
    """The most recently checked Monitor of each (namespace, model)."""
    chosen: dict[tuple[str, str], Body] = {}
    for monitor in monitors:
        key = (monitor["metadata"].get("namespace", ""), monitor["spec"]["modelRef"]["name"])
        checked = (monitor.get("status") or {}).get("lastCheckTime") or ""
        best = chosen.get(key)
        if best is None or checked > ((best.get("status") or {}).get("lastCheckTime") or ""):
            chosen[key] = monitor
    return chosen


def last_drift(monitor: Body | None) -> str:
    if monitor is None:
        return NONE
    status = monitor.get("status") or {}
    if not status.get("verdict"):
        return "not checked"
    share = status.get("driftShare")
    text = str(status["verdict"])
    if share is not None:
        text += f" ({share:.0%})"
    return f"{text} at {status.get('lastCheckTime', '?')}"


def status_table(models: Sequence[Body], monitors: Sequence[Body], all_namespaces: bool) -> str:
    drift = monitors_by_model(monitors)
    headers = ["MODEL", "SERVING", "LATEST", "SCORE", "READY", "REASON", "LAST DRIFT"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for model in sorted(
        models, key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"])
    ):
        meta, status = model["metadata"], model.get("status") or {}
        ready = condition(model, "Ready")
        row: list[object] = [
            meta["name"],
            status.get("servingVersion"),
            status.get("latestVersion"),
            status.get("servingScore"),
            ready.get("status", "Unknown"),
            ready.get("reason"),
            last_drift(drift.get((meta.get("namespace", ""), meta["name"]))),
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace"))
        rows.append(row)
    return table(headers, rows)


def metrics_text(metrics: Mapping[str, Any] | None, limit: int = 4) -> str:
    if not metrics:
        return ""
    parts = [
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(metrics.items())[:limit]
    ]
    return " ".join(parts)


def winning_trials(training_jobs: Iterable[Body]) -> dict[str, str]:
    """``trial K of N (Estimator params)`` by TrainingJob name, for the runs that searched."""
    found = {}
    for tj in training_jobs:
        status = tj.get("status") or {}
        best, total = status.get("bestTrial"), (status.get("trials") or {}).get("total")
        if best is None or not total:
            continue
        row: Mapping[str, Any] = next(
            (r for r in status.get("trialResults") or [] if r.get("trial") == best), {}
        )
        detail = f" ({row.get('estimator')} {row.get('params')})" if row else ""
        found[str(tj["metadata"]["name"])] = f"trial {best} of {total}{detail}"
    return found


def versions_table(model: Body, winners: Mapping[str, str] | None = None) -> str:
    """The version history; with ``winners`` (``winning_trials``) a column names the
    trial a search picked for each version that came from one."""
    status = model.get("status") or {}
    serving = status.get("servingVersion")
    winners = winners or {}
    searched = any(e.get("trainingJob") in winners for e in status.get("versions") or [])
    rows = []
    for entry in sorted(status.get("versions") or [], key=lambda v: v["version"]):
        version = entry["version"]
        lineage = entry.get("lineage") or {}
        search = [winners.get(str(entry.get("trainingJob")), "")] if searched else []
        rows.append(
            [
                f"{version}*" if version == serving else version,
                entry.get("trigger"),
                entry.get("generation"),
                entry.get("trainedAt"),
                entry.get("metric"),
                entry.get("score"),
                entry.get("decision"),
                _short((lineage.get("data") or {}).get("sha256")),
                _short(lineage.get("paramsDigest")),
                metrics_text(entry.get("metrics")),
                *search,
                entry.get("reason"),
            ]
        )
    headers = [
        "VERSION",
        "TRIGGER",
        "GEN",
        "TRAINED",
        "METRIC",
        "SCORE",
        "DECISION",
        "DATA",
        "PARAMS",
        "METRICS",
    ]
    headers += ["SEARCH", "REASON"] if searched else ["REASON"]
    return table(headers, rows) + "\n(* serving; DATA and PARAMS: digests, see --diff)"


def _short(digest: object) -> str | None:
    return str(digest)[:12] if digest else None


def _flat(entry: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in entry.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


def version_diff(model: Body, a: int, b: int) -> str:
    """The fields two versions differ in: lineage, generation, scores, decision."""
    entries = {v["version"]: v for v in (model.get("status") or {}).get("versions") or []}
    for version in (a, b):
        if version not in entries:
            raise ViewError(f"version {version} is not in the model's history")
    left, right = _flat(entries[a]), _flat(entries[b])
    skip = {"version", "trainedAt", "reason"}
    fields = sorted((set(left) | set(right)) - skip)
    rows = [[f, left.get(f), right.get(f)] for f in fields if left.get(f) != right.get(f)]
    if not rows:
        return f"v{a} and v{b} have the same lineage and results"
    return table(["FIELD", f"v{a}", f"v{b}"], rows)


# A trial keeps its fitted pipeline only while it can still win (docs/train.md).
_PIPELINE_SHOWN: Final = {True: "kept", False: "skipped"}


def trials_table(training_job: Body) -> str:
    """A search's trials as its TrainingJob's status has them; ``*`` marks the best."""
    status = training_job.get("status") or {}
    counts = status.get("trials")
    if not counts:
        raise ViewError(f"TrainingJob {training_job['metadata']['name']} is not a search")
    best = status.get("bestTrial")
    rows = [
        [
            f"{row['trial']}*" if row.get("trial") == best else row.get("trial"),
            row.get("estimator"),
            row.get("params"),
            row.get("status"),
            row.get("score"),
            row.get("fitSeconds"),
            _PIPELINE_SHOWN.get(row.get("pipeline")),
            row.get("error"),
        ]
        for row in status.get("trialResults") or []
    ]
    headers = ["TRIAL", "ESTIMATOR", "PARAMS", "STATUS", "SCORE", "SECONDS", "PIPELINE", "ERROR"]
    summary = (
        f"{counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed, "
        f"{counts.get('total', 0)} in all (* best)"
    )
    return table(headers, rows) + "\n" + summary


def promotions_table(model: Body) -> str:
    promotions = (model.get("status") or {}).get("promotions") or []
    rows = [[p.get("time"), p.get("previous"), p["version"], p.get("reason")] for p in promotions]
    return table(["TIME", "FROM", "TO", "REASON"], rows)


def check_promotable(model: Body, version: int) -> Body:
    """The version entry to pin, or ViewError when it has no artifact to serve."""
    for entry in (model.get("status") or {}).get("versions") or []:
        if entry["version"] == version:
            if entry.get("decision") == Decision.FAILED or not entry.get("sha256"):
                raise ViewError(f"version {version} has no trained artifact to serve")
            return dict(entry)
    known = sorted(v["version"] for v in (model.get("status") or {}).get("versions") or [])
    raise ViewError(f"model has no version {version} (known: {known or 'none'})")


def previous_serving_version(model: Body) -> int:
    """The version that served before the current one, from status.promotions.

    Like ``kubectl rollout undo``, rolling back twice returns to where it started.
    """
    status = model.get("status") or {}
    current = status.get("servingVersion")
    if current is None:
        raise ViewError("the model serves no version yet")
    for promotion in reversed(status.get("promotions") or []):
        if promotion["version"] == current and promotion.get("previous"):
            return int(promotion["previous"])
    raise ViewError(f"version {current} has no previous serving version to roll back to")


def serving_pin(version: int, approver: str | None = None, reason: str = "") -> dict[str, Any]:
    """The merge patch that pins spec.serving.version (the only spec field we write), with
    the approval record: who (the API server's own name for the caller), which, and why."""
    patch: dict[str, Any] = {"spec": {"serving": {"version": version}}}
    if approver:
        patch["metadata"] = {
            "annotations": {
                names.APPROVED_BY: approver,
                names.APPROVED_VERSION: str(version),
                names.APPROVAL_REASON: reason[:1024],
            }
        }
    return patch


def training_job_body(model: Body, reason: str) -> dict[str, Any]:
    """A manual TrainingJob owned by the Model, so deleting the Model deletes it."""
    meta = model["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.TRAINING_JOB,
        "metadata": {
            "generateName": f"{meta['name']}-manual-",
            "labels": {names.LABEL_MODEL: meta["name"], names.LABEL_TRIGGER: "manual"},
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.MODEL,
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": {"modelRef": {"name": meta["name"]}, "trigger": "manual", "reason": reason},
    }


def drift_report(monitor: Body, top: int = 10) -> str:
    meta, spec = monitor["metadata"], monitor["spec"]
    status = monitor.get("status") or {}
    lines = [
        f"Monitor:        {meta.get('namespace')}/{meta['name']}",
        f"Model:          {spec['modelRef']['name']}",
    ]
    if not status.get("lastCheckTime"):
        ready = condition(monitor, "Ready")
        lines.append(f"Last check:     none yet ({ready.get('message') or 'no status'})")
        return "\n".join(lines)
    share = status.get("driftShare")
    fields = [
        ("Last check", status.get("lastCheckTime")),
        ("Version", status.get("checkedVersion")),
        ("Verdict", status.get("verdict")),
        ("Samples", status.get("samples")),
        ("Dataset drift", status.get("datasetDrift")),
        ("Drift share", None if share is None else f"{share:.1%}"),
        ("Outputs drift", _outputs(status.get("predictionDrift"))),
        ("Live score", _live(status.get("performance"))),
        ("Report", status.get("lastReport")),
        ("Last retrain", _join(status.get("lastTrainingJob"), status.get("lastRetrainTime"))),
    ]
    lines += [f"{label + ':':<16}{_cell(value)}" for label, value in fields]
    features = status.get("features") or {}
    if features:
        ranked = sorted(features.items(), key=lambda item: -float(item[1].get("score", 0.0)))
        rows = [
            [name, f.get("method"), f.get("score"), f.get("threshold"), f.get("drifted")]
            for name, f in ranked[:top]
        ]
        lines += ["", table(["FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFTED"], rows)]
    return "\n".join(lines)


def _outputs(found: Mapping[str, Any] | None) -> str | None:
    if not found:
        return None
    return f"{found.get('verdict')} ({found.get('method')} {_cell(found.get('score'))})"


def _live(found: Mapping[str, Any] | None) -> str | None:
    if not found:
        return None
    return f"{found.get('verdict')} ({found.get('metric')} {_cell(found.get('score'))})"


def _join(name: object, when: object) -> str | None:
    if not name:
        return None
    return f"{name} at {when}" if when else str(name)

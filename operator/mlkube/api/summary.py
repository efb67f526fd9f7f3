"""The trainer's summary: one JSON line on stdout and in the pod's termination message.

The trainer encodes it here and the operator parses it here, so both sides agree on
one shape (``status.TrainerSummary``) and one size limit.

Kubernetes keeps at most 4096 bytes of a termination message, and the operator reads
the run's outcome from it (the Job's pod status) rather than from the store, so the
summary is trimmed to fit: slices are dropped from the end first (failing slices are
kept longest, since the promotion gate needs them), then the extra metrics, and
``truncated`` says that happened. The full detail always sits in ``metadata.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast

from mlkube.api.status import ErrorSummary, TrainerSummary, TrialResult, TrialRow, TrialStatus

MAX_SUMMARY_BYTES: Final = 4096


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def fit_summary(summary: Mapping[str, Any], limit: int = MAX_SUMMARY_BYTES) -> bytes:
    """Encodes ``summary``, trimming slices and then metrics until it fits ``limit`` bytes."""
    document = dict(summary)
    encoded = _encode(document)
    if len(encoded) <= limit:
        return encoded
    document["truncated"] = True
    slices = sorted(document.get("slices", []), key=lambda s: bool(s.get("passed")))
    while slices and len(_encode({**document, "slices": slices})) > limit:
        slices.pop()
    document["slices"] = slices
    metrics = dict(document.get("metrics", {}))
    primary = document.get("metric")
    for name in [n for n in metrics if n != primary]:
        if len(_encode({**document, "metrics": metrics})) <= limit:
            break
        del metrics[name]
    document["metrics"] = metrics
    encoded = _encode(document)
    if len(encoded) > limit:
        # Only a pathological store path or error text gets here: keep what the gate needs.
        essentials = {k: document.get(k) for k in ("version", "metric", "higherIsBetter", "score")}
        encoded = _encode({**essentials, "truncated": True})
    return encoded


def error_summary(message: str) -> bytes:
    text = " ".join(message.split())
    encoded = _encode({"error": text})
    while len(encoded) > MAX_SUMMARY_BYTES:
        text = text[: len(text) * 3 // 4] + "…"
        encoded = _encode({"error": text})
    return encoded


def parse_summary(message: str) -> TrainerSummary | None:
    """The trainer's summary from a termination message, or None if it holds none.

    A message that is not all JSON may end with the summary after log lines (the
    ``FallbackToLogsOnError`` policy), so the last line starting with ``{`` is tried too.
    """
    document = _last_json_object(message)
    if document is None or not isinstance(document.get("score"), int | float):
        return None
    return cast(TrainerSummary, document)


def parse_trial(message: str) -> TrialResult | None:
    """A search trial's result from its pod's termination message, or None."""
    document = _last_json_object(message)
    if document is None or not isinstance(document.get("trial"), int):
        return None
    if document.get("status") not in tuple(TrialStatus):
        return None
    return cast(TrialResult, document)


def trial_row(result: TrialResult) -> TrialRow:
    """The short form of a trial result that TrainingJob status and the plugin show."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(result.get("params", {}).items()))
    row: TrialRow = {
        "trial": result["trial"],
        "estimator": str(result.get("estimator", "")).rsplit(".", 1)[-1],
        "params": params[:512],
        "status": result["status"],
        "fitSeconds": float(result.get("fitSeconds") or 0.0),
    }
    if result.get("score") is not None:
        row["score"] = float(result["score"] or 0.0)
    if "pipeline" in result:
        row["pipeline"] = bool(result["pipeline"])
    if result.get("error"):
        row["error"] = str(result["error"])[:300]
    return row


def parse_error(message: str) -> ErrorSummary | None:
    """The trainer's error summary from a termination message, or None."""
    document = _last_json_object(message)
    if document is None or not isinstance(document.get("error"), str):
        return None
    return cast(ErrorSummary, document)


def _last_json_object(message: str) -> dict[str, Any] | None:
    text = message.strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        start = text.rfind("\n{")
        if start < 0:
            return None
        try:
            document = json.loads(text[start + 1 :])
        except ValueError:
            return None
    return document if isinstance(document, dict) else None

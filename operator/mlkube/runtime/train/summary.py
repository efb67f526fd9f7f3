"""The run's summary: one JSON line on stdout and in the pod's termination message.

Kubernetes keeps at most 4096 bytes of a termination message, and the operator reads
the run's outcome from it (the Job's pod status) rather than from the store, so the
summary is trimmed to fit: slices are dropped from the end first (failing slices are
kept longest, since the promotion gate needs them), then the extra metrics, and
``truncated`` says that happened. The full detail always sits in ``metadata.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

MAX_SUMMARY_BYTES: Final = 4096
DEFAULT_TERMINATION_LOG: Final = Path("/dev/termination-log")


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def fit_summary(summary: dict[str, Any], limit: int = MAX_SUMMARY_BYTES) -> bytes:
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


def write_termination_log(path: Path | None, payload: bytes) -> None:
    """Writes ``payload`` to ``path``; the default path is skipped outside a pod.

    ``None`` means the default ``/dev/termination-log``: outside a cluster its directory
    may be missing or not writable, and that must not fail a laptop run. An explicitly
    given path must be written; an ``OSError`` then reaches the caller.
    """
    if path is None:
        try:
            DEFAULT_TERMINATION_LOG.write_bytes(payload)
        except OSError:
            return
        return
    path.write_bytes(payload)

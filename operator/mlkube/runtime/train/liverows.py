"""Labelled live rows a performance-triggered retrain adds to the training data.

When a Model opts in (``spec.training.liveData.include``) and a Monitor's live score
opened the run, the drift checker wrote the labelled live rows of its window to
``<model dir>/drift/live-rows-<time>.jsonl`` (inputs plus the target column, the newest
``maxRows``) and the TrainingJob names that file; the operator passes it here as
``--live-rows``. The rows are appended to the reference data before the quality checks
and the holdout split, so the holdout holds live rows too and the promotion gate scores
the new world as well as the old one. Exact duplicate rows are dropped, and the file and
window go into the version's lineage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from mlkube.api.performance import DEFAULT_LIVE_MAX_ROWS, LIVE_ROWS_PATTERN, LiveRowsLineage
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.record import RunRequest


def parse_live_rows(text: str | None) -> LiveRowsLineage | None:
    """The ``--live-rows`` JSON (a TrainingJob's ``spec.liveRows``), its path checked."""
    if not text:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise TrainingInputError(f"--live-rows is not JSON: {error}") from None
    path = raw.get("path") if isinstance(raw, dict) else None
    if not isinstance(path, str) or not re.fullmatch(LIVE_ROWS_PATTERN, path):
        raise TrainingInputError(
            f"--live-rows path {path!r} must be drift/live-rows-<time>.jsonl in the Model's "
            "directory"
        )
    found: LiveRowsLineage = {
        "path": path,
        "rows": int(raw.get("rows") or 0),
        "windowStart": str(raw.get("windowStart") or ""),
        "windowEnd": str(raw.get("windowEnd") or ""),
    }
    if raw.get("monitor"):
        found["monitor"] = str(raw["monitor"])
    return found


def add_live_rows(
    frame: pd.DataFrame, request: RunRequest, progress: Callable[[str], Any]
) -> tuple[pd.DataFrame, LiveRowsLineage | None]:
    """The reference rows plus the live rows (deduplicated, bounded), and what was added."""
    live = request.live_rows
    if live is None:
        return frame, None
    path = request.model_dir / live["path"]
    try:
        rows = pd.read_json(path, lines=True, nrows=DEFAULT_LIVE_MAX_ROWS * 20)
    except (OSError, ValueError) as error:
        raise TrainingInputError(f"cannot read the live rows {live['path']}: {error}") from None
    absent = [c for c in frame.columns if c not in rows.columns]
    if absent:
        raise TrainingInputError(
            f"the live rows {live['path']} lack column(s) of the data: {', '.join(absent[:10])}"
        )
    rows = rows[list(frame.columns)].drop_duplicates()
    added = len(rows)
    combined = pd.concat([frame, rows], ignore_index=True)
    window = f"{live['windowStart']} .. {live['windowEnd']}"
    progress(f"added {added} labelled live rows from {live['path']} (window {window})")
    return combined, {**live, "rows": added}

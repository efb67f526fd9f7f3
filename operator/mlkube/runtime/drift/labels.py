"""Reading ground-truth labels and logged predictions as plain tuples, chunk by chunk.

Labels come from two places, both optional:

- the predictor's feedback log, ``<inference log>/labels/YYYY-MM-DD/HH/*.jsonl`` (lines
  ``{"ts", "request_id", "row", "label"}``); hours before the window are never opened,
  since a label cannot be older than its prediction;
- a Monitor's ``spec.performance.labels.uri``: a CSV, Parquet or JSONL file, or a
  directory of them, with columns ``id`` and ``label`` (``row`` for a batch request and
  ``ts`` optional), for labels a batch pipeline delivers days later.

Predictions are the inference log's lines in the window with status 200; each yields
``(key, output, ts, inputs)`` where the key is the request id and row. Nothing here
keeps more than one chunk of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from mlkube.api.performance import LABELS_SUBDIR
from mlkube.runtime.drift.window import (
    INFERENCE_DIR,
    LiveDataError,
    Window,
    log_files,
    parse_time,
    read_lines,
)

LABEL_FILE_SUFFIXES: Final = (".csv", ".csv.gz", ".parquet", ".pq", ".jsonl", ".ndjson")


def label_key(request_id: str, row: Any) -> str:
    """The join key of one predicted row: its request id and its row in the request."""
    return f"{request_id}#{int(row or 0)}"


@dataclass
class PredictionCounts:
    read: int = 0  # lines in the window with status 200 and an output
    corrupt: int = 0


def log_root(path: Path) -> Path:
    """The inference-log directory, given it or the model directory above it."""
    return path / INFERENCE_DIR if (path / INFERENCE_DIR).is_dir() else path


def _log_files(root: Path, window: Window) -> Iterator[Path]:
    if root.is_dir():
        yield from log_files(root, window)


def read_predictions(
    root: Path, window: Window, counts: PredictionCounts, version: int | None = None
) -> Iterator[tuple[str, Any, float, dict[str, Any]]]:
    """``(key, output, ts, inputs)`` of every logged prediction in the window (of
    ``version`` only, when given: the live score is the serving version's)."""
    start, end = window.start.timestamp(), window.end.timestamp()
    for path in _log_files(log_root(root), window):
        for line in read_lines(path):
            try:
                record = orjson.loads(line)
                ts = parse_time(record["ts"]).timestamp()
                request_id = record["request_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                counts.corrupt += 1
                continue
            if not start <= ts <= end or record.get("status") != 200:
                continue
            if version is not None and record.get("version") != version:
                continue
            inputs = record.get("inputs")
            if record.get("output") is None or not isinstance(inputs, dict):
                continue
            counts.read += 1
            yield label_key(str(request_id), record.get("row")), record["output"], ts, inputs


def _feedback_labels(root: Path, window: Window) -> Iterator[tuple[str, Any, float | None]]:
    labels = log_root(root) / LABELS_SUBDIR
    since = Window(window.start, datetime.max.replace(tzinfo=UTC))
    for path in _log_files(labels, since):
        for line in read_lines(path):
            try:
                record = orjson.loads(line)
                key = label_key(str(record["request_id"]), record.get("row"))
                yield key, record["label"], parse_time(record["ts"]).timestamp()
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                yield "", None, None  # counted as invalid by the join


def _table_batches(path: Path) -> Iterator[dict[str, list[Any]]]:
    import pyarrow as pa

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                yield batch.to_pydict()
        else:
            from pyarrow import csv

            for batch in csv.open_csv(path, read_options=csv.ReadOptions(block_size=8 << 20)):
                yield batch.to_pydict()
    except (OSError, pa.ArrowException) as error:
        raise LiveDataError(f"cannot read labels from {path}: {error}") from None


def _jsonl_batches(path: Path) -> Iterator[dict[str, list[Any]]]:
    rows: list[dict[str, Any]] = []
    for line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = {}
        rows.append(record if isinstance(record, dict) else {})
        if len(rows) >= 65_536:
            yield _columns(rows)
            rows = []
    if rows:
        yield _columns(rows)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [r.get(key) for r in rows] for key in ("id", "label", "row", "ts")}


def _file_labels(path: Path) -> Iterator[tuple[str, Any, float | None]]:
    lower = path.name.lower()
    batches = (
        _jsonl_batches(path) if lower.endswith((".jsonl", ".ndjson")) else _table_batches(path)
    )
    for batch in batches:
        if "id" not in batch or "label" not in batch:
            raise LiveDataError(
                f"{path}: labels need columns id and label (has {', '.join(batch)})"
            )
        ids, values = batch["id"], batch["label"]
        rows = batch.get("row") or [0] * len(ids)
        stamps = batch.get("ts") or [None] * len(ids)
        for request_id, label, row, ts in zip(ids, values, rows, stamps, strict=True):
            if request_id is None or label is None:
                yield "", None, None
                continue
            moment = None
            if ts is not None:
                try:
                    moment = parse_time(str(ts)).timestamp()
                except ValueError:
                    moment = None
            yield label_key(str(request_id), row), label, moment


def late_label_files(path: Path) -> list[Path]:
    """The labels files a Monitor names: one file, or every labels file under a directory."""
    if not path.exists():
        raise LiveDataError(f"labels {path} do not exist")
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(LABEL_FILE_SUFFIXES)
    )


def read_labels(
    root: Path, window: Window, late: Path | None
) -> Iterator[tuple[str, Any, float | None]]:
    """``(key, label, ts or None)`` of every label; ``("", None, None)`` for an unreadable one."""
    yield from _feedback_labels(root, window)
    if late is not None:
        for path in late_label_files(late):
            yield from _file_labels(path)

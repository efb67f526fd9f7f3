"""Sampled inference logging to the store, in a background thread that requests never wait on.

The drift checker reads exactly this layout under the log directory::

    YYYY-MM-DD/HH/<writer-id>-<seq>.jsonl        (UTC date and hour of the request)

one JSON object per predicted row::

    {"ts": "2026-01-02T03:04:05.678Z", "model": "churn", "version": 3,
     "request_id": "...", "status": 200, "inputs": {"age": 41, ...},
     "output": 1, "error": "..."}            # "error" only on failures; output null then
                                             # "row": i on each row of a batch request

Feedback labels go through a second writer of this class under ``labels/`` (see
``feedback``), as lines the caller formats; the drift reader lists date directories
only, so it never reads a label as a prediction.

The request path only decides the sample and puts one record per request into a bounded
queue (``put_nowait``); when the rows queued exceed the bound the record is dropped and
counted. The writer thread turns records into lines, appends them, rotates by size and
by hour, and deletes the oldest files beyond a total bound. What one request can add to
the log is bounded by its size: a record carries a byte budget (``LOG_BYTES_PER_BODY_BYTE``
times its body, plus a constant for tiny bodies); rows beyond it are dropped and counted
(``over_budget``), so repeating a long request id or error text on every row cannot turn
a small body into a large log. Lines are written in chunks of at most ``WRITE_CHUNK_BYTES``,
never all queued records joined in memory at once. A full disk, a read-only
store or a slow one costs rows (counted), never a request's latency or status; a file
cut short by ENOSPC is truncated back to its last whole line.

With an ``s3://`` directory the same records go to ``store.logsink.S3LogSink`` instead of
files: batched by rows or seconds (whichever comes first), gzip-compressed objects
``YYYY-MM-DD/HH/<writer-id>-<seq>.jsonl.gz``, failed uploads counted in
``log_errors`` and retried a bounded number of times, then dropped and counted. Retention
on S3 is the bucket's lifecycle rule, not the writer's.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from numpy.typing import NDArray

from mlkube.runtime.serve.metrics import ModelMetrics
from mlkube.runtime.serve.model import Batch
from mlkube.runtime.store.logsink import S3LogSink, SinkCounters
from mlkube.runtime.store.s3 import S3Location

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 5.0
RETENTION_CHECK_SECONDS: Final = 60.0
LOG_BYTES_PER_BODY_BYTE: Final = 16  # feature names on every row make ~5x normal
LOG_BYTES_PER_REQUEST: Final = 4096
WRITE_CHUNK_BYTES: Final = 1 << 20


def log_budget(body_bytes: int) -> int:
    """The most inference-log bytes a request with a body of ``body_bytes`` may cause."""
    return LOG_BYTES_PER_BODY_BYTE * body_bytes + LOG_BYTES_PER_REQUEST


@dataclass(frozen=True)
class Record:
    """One sampled request, kept as cheap references until the writer formats it."""

    ts: float
    request_id: str
    status: int
    batch: Batch | None
    outputs: NDArray[Any] | None
    error: str | None
    budget: int = LOG_BYTES_PER_REQUEST  # bytes of log lines this record may produce
    # Lines formatted by the caller (the feedback route's labels), written as they are.
    lines: tuple[bytes, ...] | None = None

    @property
    def rows(self) -> int:
        if self.lines is not None:
            return len(self.lines)
        return self.batch.rows if self.batch is not None else 1


class InferenceLogger:
    """Appends sampled rows under ``directory``; ``submit`` never blocks and never raises."""

    def __init__(
        self,
        directory: Path | S3Location,
        *,
        model: str,
        version: int,
        feature_names: list[str],
        metrics: ModelMetrics,
        writer_id: str,
        max_queued_rows: int,
        rotate_bytes: int,
        retain_bytes: int,
        retain_files: int,
        batch_rows: int = 10_000,
        batch_seconds: float = 60.0,
        pending_bytes: int = 64 << 20,
    ) -> None:
        self.directory = directory
        self._sink: S3LogSink | None = None
        if isinstance(directory, S3Location):
            counters = SinkCounters(
                metrics.log_rows.inc, metrics.log_dropped_write.inc, metrics.log_errors.inc
            )
            self._sink = S3LogSink(
                directory,
                writer_id,
                counters,
                batch_rows=batch_rows,
                batch_bytes=min(rotate_bytes, 16 << 20),
                batch_seconds=batch_seconds,
                max_pending_bytes=pending_bytes,
            )
        self._model = model
        self._version = version
        self._names = feature_names
        self._metrics = metrics
        self._writer_id = writer_id
        self._max_rows = max_queued_rows
        self._rotate_bytes = rotate_bytes
        self._retain_bytes = retain_bytes
        self._retain_files = retain_files
        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._fd: int | None = None
        self._file_hour = ""
        self._file_bytes = 0
        self._seq = 0
        self._retry_at = 0.0
        self._next_retention = 0.0

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: Record) -> bool:
        """Queues a record, or drops and counts it when the writer is too far behind
        (then returns False: a caller that must not lose it can tell its client to retry)."""
        rows = record.rows
        with self._lock:
            if self._queued_rows + rows > self._max_rows:
                self._metrics.log_dropped_full.inc(rows)
                return False
            self._queued_rows += rows
        self._queue.put_nowait(record)
        return True

    def close(self, timeout: float) -> None:
        """Writes what is queued (up to ``timeout`` seconds), then closes the current file."""
        if self._thread.is_alive():
            self._queue.put_nowait(None)
            self._thread.join(timeout)

    def _next(self) -> Record | Literal[False] | None:
        """The next queued item; ``False`` when the S3 sink's timer is due first."""
        wait = self._sink.wait_seconds() if self._sink is not None else None
        try:
            return self._queue.get(timeout=wait) if wait is not None else self._queue.get()
        except queue.Empty:
            return False

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is False:
                assert self._sink is not None
                self._sink.tick()
                continue
            records = [item] if item is not None else []
            stop = item is None
            while not stop:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    records.append(more)
            if records:
                self._write_records(records)
            if stop:
                self._close_file()
                return

    def _write_records(self, records: list[Record]) -> None:
        rows = sum(r.rows for r in records)
        with self._lock:
            self._queued_rows -= rows
        pending: list[bytes] = []
        pending_bytes = 0
        hour = ""
        for record in records:
            try:
                stamp = datetime.fromtimestamp(record.ts, UTC)
                lines = self._lines(record, stamp)
            except Exception:
                log.exception("cannot format an inference-log record; dropping it")
                self._metrics.log_dropped_write.inc(record.rows)
                continue
            record_hour = stamp.strftime("%Y-%m-%d/%H")
            if pending and (record_hour != hour or pending_bytes >= WRITE_CHUNK_BYTES):
                self._append(hour, b"".join(pending), len(pending))
                pending, pending_bytes = [], 0
            hour = record_hour
            pending.extend(lines)
            pending_bytes += sum(len(line) for line in lines)
        if pending:
            self._append(hour, b"".join(pending), len(pending))
        if self._sink is None and time.monotonic() >= self._next_retention:
            self._enforce_retention()

    def _lines(self, record: Record, stamp: datetime) -> list[bytes]:
        """The record's lines, as many rows as fit in its budget (the rest are counted).

        A request of several rows numbers its lines (``"row": i``), so a label can name
        one row of a batch; a one-row request's line has no ``row`` (it is row 0)."""
        if record.lines is not None:
            return list(record.lines)
        base: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "model": self._model,
            "version": self._version,
            "request_id": record.request_id,
            "status": record.status,
        }
        inputs_per_row: Iterator[dict[str, Any]] = (
            iter([{}]) if record.batch is None else record.batch.row_dicts(self._names)
        )
        outputs: Iterator[Any] = (
            iter(record.outputs.tolist()) if record.outputs is not None else itertools.repeat(None)
        )
        option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
        lines: list[bytes] = []
        left = record.budget
        numbered = record.rows > 1
        for index, (inputs, output) in enumerate(zip(inputs_per_row, outputs, strict=False)):
            row = {**base, "inputs": inputs, "output": output}
            if numbered:
                row["row"] = index
            if record.error is not None:
                row["error"] = record.error
            line = orjson.dumps(row, option=option)
            left -= len(line)
            if left < 0:
                self._metrics.log_dropped_budget.inc(record.rows - len(lines))
                break
            lines.append(line)
        return lines

    def _append(self, hour: str, data: bytes, rows: int) -> None:
        if self._sink is not None:
            self._sink.append(hour, data, rows)
            return
        now = time.monotonic()
        if now < self._retry_at:
            self._metrics.log_dropped_write.inc(rows)
            return
        try:
            if (
                self._fd is None
                or hour != self._file_hour
                or self._file_bytes >= self._rotate_bytes
            ):
                self._open(hour)
            assert self._fd is not None
            written = 0
            try:
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            except OSError:
                os.ftruncate(self._fd, self._file_bytes)
                raise
            self._file_bytes += written
            self._metrics.log_rows.inc(rows)
        except OSError as error:
            self._metrics.log_errors.inc()
            self._metrics.log_dropped_write.inc(rows)
            log.warning("inference log: cannot write under %s: %s", self.directory, error)
            self._close_file()
            self._retry_at = now + RETRY_SECONDS

    def _open(self, hour: str) -> None:
        self._close_file()
        assert isinstance(self.directory, Path)
        folder = self.directory / hour
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self._seq += 1
            path = folder / f"{self._writer_id}-{self._seq:06d}.jsonl"
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                break
            except FileExistsError:
                continue
        self._file_hour = hour
        self._file_bytes = 0
        self._next_retention = 0.0

    def _close_file(self) -> None:
        if self._sink is not None:
            self._sink.close()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                self._metrics.log_errors.inc()
            self._fd = None

    def _enforce_retention(self) -> None:
        """Deletes the oldest ``*.jsonl`` files (any writer) beyond the byte and file bounds."""
        self._next_retention = time.monotonic() + RETENTION_CHECK_SECONDS
        if not isinstance(self.directory, Path):
            return
        try:
            files = sorted(self.directory.glob("*/*/*.jsonl"), key=_mtime_or_zero)
        except OSError:
            return
        current = {f"{self._writer_id}-{self._seq:06d}.jsonl"} if self._fd is not None else set()
        sizes = [_size_or_zero(f) for f in files]
        total, count = sum(sizes), len(files)
        for path, size in zip(files, sizes, strict=True):
            if total <= self._retain_bytes and count <= self._retain_files:
                break
            if path.name in current:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                self._metrics.log_errors.inc()
                continue
            total -= size
            count -= 1
            for parent in (path.parent, path.parent.parent):
                try:
                    parent.rmdir()
                except OSError:
                    break


def _mtime_or_zero(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

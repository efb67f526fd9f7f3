"""The inference log's S3 sink: lines batched into compressed objects, uploads bounded.

Why: a predictor on any node logs to the bucket instead of a shared volume, and a slow or
unreachable endpoint must cost log rows, never a request's latency or unbounded memory.
The sink runs only in the inference log's writer thread (``serve.inferencelog``), which
hands it whole lines per UTC hour. Lines are gathered until ``batch_rows`` rows, or
``batch_bytes``, or ``batch_seconds`` after the first one, whichever comes first, or
the hour changes; the batch is then sealed (gzip) into
``<prefix>/YYYY-MM-DD/HH/<writer-id>-<seq>.jsonl.gz``, the layout the drift check lists.

A sealed batch is uploaded at once; a failed upload is counted (``on_error``) and tried
again after a back-off, at most ``max_attempts`` times, after which its rows are dropped
and counted (``on_dropped``). Sealed batches waiting for a retry are bounded by
``max_pending_bytes``: beyond it the oldest goes (counted). At shutdown each pending batch
is tried again after short pauses, within its attempts and ``CLOSE_SECONDS``, so a
momentary failure as the server stops costs no rows. So the memory the sink holds is
at most one open batch plus ``max_pending_bytes``, whatever the endpoint does.
"""

from __future__ import annotations

import gzip
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from mlkube.runtime.store import s3
from mlkube.runtime.store.s3 import S3Location

BACKOFF_SECONDS: Final = 2.0
MAX_BACKOFF_SECONDS: Final = 60.0
# An upload to a dead endpoint fails after one short connect attempt, so the writer thread
# goes back to its queue quickly (the queue drops and counts rows meanwhile).
UPLOAD_CONNECT_SECONDS: Final = 2.0
# At shutdown a failed upload (a loaded or restarting endpoint) gets a few quick retries.
CLOSE_SECONDS: Final = 10.0
CLOSE_PAUSE_SECONDS: Final = 0.25


@dataclass
class _Sealed:
    key: S3Location
    body: bytes
    rows: int
    attempts: int = 0
    next_try: float = 0.0


@dataclass
class SinkCounters:
    """Where the sink reports: rows stored, rows dropped, failed upload attempts."""

    on_rows: Callable[[int], None]
    on_dropped: Callable[[int], None]
    on_error: Callable[[], None]


@dataclass
class S3LogSink:
    root: S3Location
    writer_id: str
    counters: SinkCounters
    batch_rows: int = 10_000
    batch_bytes: int = 16 << 20
    batch_seconds: float = 60.0
    max_pending_bytes: int = 64 << 20
    max_attempts: int = 5
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _lines: list[bytes] = field(default_factory=list)
    _rows: int = 0
    _bytes: int = 0
    _hour: str = ""
    _opened: float = 0.0
    _seq: int = 0
    _pending: deque[_Sealed] = field(default_factory=deque)
    _pending_bytes: int = 0

    def append(self, hour: str, data: bytes, rows: int) -> None:
        """Adds whole lines of one UTC hour (``YYYY-MM-DD/HH``); may seal and upload."""
        if self._lines and hour != self._hour:
            self._seal()
        if not self._lines:
            self._hour, self._opened = hour, self.clock()
        self._lines.append(data)
        self._rows += rows
        self._bytes += len(data)
        if self._rows >= self.batch_rows or self._bytes >= self.batch_bytes:
            self._seal()
        self.pump()

    def wait_seconds(self) -> float | None:
        """How long the writer may sleep before ``tick`` has work (``None``: nothing open)."""
        now = self.clock()
        times = [t for t in (self._seal_at(), self._retry_at()) if t is not None]
        return max(0.0, min(times) - now) if times else None

    def tick(self) -> None:
        """Seals an open batch whose time is up and uploads what is due."""
        deadline = self._seal_at()
        if deadline is not None and self.clock() >= deadline:
            self._seal()
        self.pump()

    def close(self) -> None:
        """Seals the open batch and uploads what is pending before the server exits: a
        batch whose upload fails is tried again after a short pause, up to its
        ``max_attempts`` and within ``CLOSE_SECONDS``; what is left is dropped (counted)."""
        if self._lines:
            self._seal()
        give_up = self.clock() + CLOSE_SECONDS
        while self._pending:
            for item in self._pending:
                item.next_try = 0.0
            self.pump()
            if not self._pending or self.clock() >= give_up:
                break
            self.sleep(CLOSE_PAUSE_SECONDS)  # each round uploads a batch or spends a try
        for item in self._pending:
            self.counters.on_dropped(item.rows)
        self._pending.clear()
        self._pending_bytes = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes + self._bytes

    def _seal_at(self) -> float | None:
        return self._opened + self.batch_seconds if self._lines else None

    def _retry_at(self) -> float | None:
        return min((p.next_try for p in self._pending), default=None)

    def _seal(self) -> None:
        self._seq += 1
        name = f"{self.writer_id}-{self._seq:06d}.jsonl.gz"
        body = gzip.compress(b"".join(self._lines), compresslevel=5)
        self._pending.append(_Sealed(self.root / self._hour / name, body, self._rows))
        self._pending_bytes += len(body)
        self._lines, self._rows, self._bytes = [], 0, 0
        while self._pending_bytes > self.max_pending_bytes and len(self._pending) > 1:
            self._drop(self._pending.popleft())

    def _drop(self, item: _Sealed) -> None:
        self._pending_bytes -= len(item.body)
        self.counters.on_dropped(item.rows)

    def pump(self) -> None:
        """Uploads due batches in order; the first failure stops the round."""
        now = self.clock()
        for item in list(self._pending):
            if item.next_try > now:
                continue
            try:
                s3.client(connect_timeout=UPLOAD_CONNECT_SECONDS, attempts=0).put_object(
                    Bucket=item.key.bucket,
                    Key=item.key.key,
                    Body=item.body,
                    ContentType="application/gzip",
                )
            except Exception:  # any failure is the same to a log: count it, retry later
                self._failed(item)
                return
            self._pending.remove(item)
            self._pending_bytes -= len(item.body)
            self.counters.on_rows(item.rows)

    def _failed(self, item: _Sealed) -> None:
        self.counters.on_error()
        item.attempts += 1
        if item.attempts >= self.max_attempts:
            self._pending.remove(item)
            self._drop(item)
            return
        delay = min(BACKOFF_SECONDS * 2 ** (item.attempts - 1), MAX_BACKOFF_SECONDS)
        item.next_try = self.clock() + delay

"""The operator's cache of watched objects and its work queue, as client-go shapes them.

kopf's watch handlers only record the newest body here and enqueue a key; a fixed pool
of workers reconciles keys, one worker per key at a time, merging bursts of events into
one reconcile. Reconcilers are level-triggered: they read the cache, compare desired
with existing and write, so they may run any number of times, and a restarted operator
simply relists and converges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlkube.api.resources import Body

Key = tuple[str, str, str]  # kind, namespace, name

IndexFn = Callable[[Mapping[str, Any]], Iterable[str]]
TrimFn = Callable[[Mapping[str, Any]], Body]
Reconciler = Callable[[Key], Awaitable[float | None]]

log = logging.getLogger("mlkube.controller")


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class Cache:
    """Newest known body per object, plus secondary indexes (namespace + index value)."""

    objects: dict[str, dict[tuple[str, str], Body]] = field(default_factory=dict)
    index_fns: dict[str, IndexFn] = field(default_factory=dict)
    trim_fns: dict[str, TrimFn] = field(default_factory=dict)
    _indexes: dict[str, dict[tuple[str, str], set[str]]] = field(default_factory=dict)

    def add_index(self, kind: str, fn: IndexFn) -> None:
        self.index_fns[kind] = fn
        self._indexes.setdefault(kind, {})

    def add_trim(self, kind: str, fn: TrimFn) -> None:
        """Keeps only what the reconcilers read of ``kind`` (memory at thousands of objects)."""
        self.trim_fns[kind] = fn

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        return self.objects.get(kind, {}).get((namespace, name))

    def store(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Keeps ``body`` unless this or a newer version is already known; True when kept.

        The watch event of the operator's own write brings a version the cache already has
        (stored from the write's response): False tells the caller there is no news.
        """
        meta = body["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        bucket = self.objects.setdefault(kind, {})
        previous = bucket.get(key)
        if previous is not None and _rv(previous) >= _rv(body) > 0:
            return False
        if previous is not None:
            self._unindex(kind, key, previous)
        trim = self.trim_fns.get(kind)
        if trim is not None:
            body = trim(body)
        else:
            body = dict(body)
            body["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
        bucket[key] = body
        fn = self.index_fns.get(kind)
        if fn is not None:
            for value in fn(body):
                self._indexes[kind].setdefault((key[0], value), set()).add(key[1])
        return True

    def forget(self, kind: str, namespace: str, name: str) -> None:
        previous = self.objects.get(kind, {}).pop((namespace, name), None)
        if previous is not None:
            self._unindex(kind, (namespace, name), previous)

    def _unindex(self, kind: str, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        fn = self.index_fns.get(kind)
        if fn is None:
            return
        for value in fn(body):
            names = self._indexes[kind].get((key[0], value))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self._indexes[kind][(key[0], value)]

    def by_index(self, kind: str, namespace: str, value: str) -> list[Body]:
        names = self._indexes.get(kind, {}).get((namespace, value), set())
        bucket = self.objects.get(kind, {})
        return [bucket[(namespace, n)] for n in sorted(names) if (namespace, n) in bucket]

    def count(self, kind: str) -> int:
        return len(self.objects.get(kind, {}))

    def all(self, kind: str) -> list[Body]:
        return list(self.objects.get(kind, {}).values())


class WorkQueue:
    """Deduplicating queue: a key queued twice runs once; a key is never run concurrently."""

    def __init__(
        self,
        reconcile: Reconciler,
        workers: int,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        """``expected`` errors (an API server's answer) are logged in one line, not a trace."""
        self._reconcile = reconcile
        self._expected = expected
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        if key in self._queued:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Requeues ``key`` after ``delay`` seconds, keeping only the earliest pending timer."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None:
            if existing.when() <= when:
                return
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def depth(self) -> int:
        return len(self._queued)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                delay = await self._reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(300.0, 0.5 * 2 ** min(failures, 10))
                if isinstance(error, self._expected):
                    log.warning("reconcile of %s/%s/%s: %s; retrying in %.1fs", *key, error, delay)
                else:
                    log.exception("reconcile of %s/%s/%s failed; retrying in %.1fs", *key, delay)
            finally:
                self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif delay is not None:
                self.add_after(key, delay)

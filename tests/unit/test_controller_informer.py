"""The operator's cache (newest body wins, secondary indexes) and work queue (a key queued
many times runs once, never twice at the same time, failures retry with backoff)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlkube.controller.informer import Cache, Key, WorkQueue


def body(name: str, rv: int, model: str = "m") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
        "spec": {"modelRef": {"name": model}},
    }


def test_cache_keeps_the_newest_and_indexes() -> None:
    cache = Cache()
    cache.add_index("TrainingJob", lambda b: [b["spec"]["modelRef"]["name"]])
    assert cache.store("TrainingJob", body("a", 5))
    assert not cache.store("TrainingJob", body("a", 4))
    assert not cache.store("TrainingJob", body("a", 5))  # the echo of our own write
    assert cache.get("TrainingJob", "ns", "a")["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    cache.store("TrainingJob", body("b", 6, model="other"))
    assert [b["metadata"]["name"] for b in cache.by_index("TrainingJob", "ns", "m")] == ["a"]
    cache.store("TrainingJob", body("a", 7, model="other"))
    assert cache.by_index("TrainingJob", "ns", "m") == []
    assert len(cache.by_index("TrainingJob", "ns", "other")) == 2
    cache.forget("TrainingJob", "ns", "b")
    assert len(cache.by_index("TrainingJob", "ns", "other")) == 1


@pytest.mark.asyncio
async def test_queue_deduplicates_and_never_runs_a_key_concurrently() -> None:
    running: set[Key] = set()
    runs: list[Key] = []
    overlap = False

    async def reconcile(key: Key) -> float | None:
        nonlocal overlap
        overlap = overlap or key in running
        running.add(key)
        runs.append(key)
        await asyncio.sleep(0.02)
        running.discard(key)
        return None

    queue = WorkQueue(reconcile, workers=4)
    queue.start()
    key: Key = ("Model", "ns", "a")
    for _ in range(10):
        queue.add(key)
    await asyncio.sleep(0.005)
    for _ in range(10):
        queue.add(key)  # while it runs: marked dirty, runs once more afterwards
    await asyncio.sleep(0.1)
    await queue.stop()
    assert runs == [key, key]
    assert not overlap


@pytest.mark.asyncio
async def test_queue_retries_failures_and_honours_requeue_delays() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: Key) -> float | None:
        attempts.append(loop.time())
        if len(attempts) == 1:
            raise RuntimeError("transient")
        return 0.05 if len(attempts) == 2 else None

    queue = WorkQueue(reconcile, workers=1)
    queue.start()
    queue.add(("Model", "ns", "a"))
    await asyncio.sleep(1.5)
    await queue.stop()
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.9  # backoff after a failure
    assert 0.04 <= attempts[2] - attempts[1] < 0.5

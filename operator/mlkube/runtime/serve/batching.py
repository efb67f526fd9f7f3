"""Adaptive batching: requests that arrive while the model is busy share its next call.

Why: a model call costs nearly the same for 1 row as for 64 (scikit-learn's per-call
overhead; a 100-tree forest spends ~5 ms per call at any small batch), so predicting one
request at a time throws the batch away exactly when the server is loaded. Here every
request's rows, already decoded and validated, join a queue; one model call at a time
runs (on the event loop for fast models, on the worker's one prediction thread for slow
ones), and when it ends the next call takes everything that queued meanwhile, up to
``max_rows`` rows, then splits the answer back per request.

At low load it adds no latency: a request that finds the model idle and no other request
under way is predicted at once (in its own coroutine on the event loop, or handed
straight to the prediction thread), never held to fill a batch. Before a call the
batcher lets the event loop run (no timer) so requests whose bodies are already here
can join, and stops gathering as soon as a pass brings nobody new, the rows reach
``max_rows``, or ``max_wait`` seconds have gone by. It gathers before every call after
the first, and before a first call on the event loop too when the server counts other
requests under way (``watch_requests``: uvicorn's live request tasks).

That is how calls on the event loop coalesce: a call blocks the loop, but requests that
arrived with this one (read in the same pass of the loop) decode first and share the
call. On the prediction thread requests also queue while a call runs. An inline call is
made once, in the coroutine of the request that found the model idle; what queued
beyond ``max_rows`` is drained by a task, so no caller's answer waits on other calls.

One bad request never fails its batch-mates: rows are validated against the schema
before they queue, and if the model still refuses a combined call
(``ModelInputError``), each request of that call is predicted alone, so only the one
whose rows the model refuses gets the error. ``max_rows`` 0 turns batching off (one
call per request, still one at a time).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlkube.runtime.serve.model import Batch, ModelInputError, Prediction

Observe = Callable[[int, int], None]
"""Called after each model call with its rows and the number of requests it served."""


@dataclass
class _Waiting:
    batch: Batch
    future: asyncio.Future[Prediction]


def combine(batches: list[Batch]) -> Batch:
    """One batch holding every row of ``batches``, in order."""
    if len(batches) == 1:
        return batches[0]
    rows = sum(b.rows for b in batches)
    matrices = [b.matrix for b in batches]
    if all(m is not None for m in matrices):
        return Batch(rows=rows, matrix=np.concatenate(matrices))  # type: ignore[arg-type]
    columns = [b.columns for b in batches]
    assert all(c is not None for c in columns), "batches of one model share their layout"
    names = list(columns[0] or {})
    return Batch(
        rows=rows,
        columns={n: np.concatenate([c[n] for c in columns if c is not None]) for n in names},
    )


def split(prediction: Prediction, sizes: list[int]) -> list[Prediction]:
    """``prediction`` of a combined batch cut back into one per request (views, no copy)."""
    out = []
    start = 0
    for size in sizes:
        stop = start + size
        proba = prediction.proba[start:stop] if prediction.proba is not None else None
        out.append(Prediction(prediction.labels[start:stop], proba))
        start = stop
    return out


class Batcher:
    """Serializes one model's calls and coalesces the requests that queue meanwhile."""

    def __init__(
        self,
        predict: Callable[[Batch], Prediction],
        *,
        max_rows: int,
        max_wait: float,
        thread_initializer: Callable[[], None] | None = None,
        threaded: bool = False,
        observe: Observe | None = None,
    ) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._observe = observe
        self._queue: deque[_Waiting] = deque()
        self._queued_rows = 0
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: Callable[[], int] | None = None
        self.executor: ThreadPoolExecutor | None = None
        if threaded:
            self.executor = ThreadPoolExecutor(
                1, thread_name_prefix="predict", initializer=thread_initializer
            )

    @property
    def threading(self) -> str:
        """``thread`` when calls run on the prediction thread, ``inline`` on the event loop."""
        return "thread" if self.executor is not None else "inline"

    def watch_requests(self, count: Callable[[], int]) -> None:
        """``count()`` is the number of requests under way in this worker (this one
        included): more than are queued here means others may join a first call."""
        self._requests = count

    async def predict(self, batch: Batch) -> Prediction:
        """This request's prediction, made alone or as part of a coalesced call."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(batch, loop.create_future())
        self._queue.append(waiting)
        self._queued_rows += batch.rows
        if not self._running:
            self._running = True
            if self.executor is None:
                await self._call_inline()  # nothing running: predicted right here
            else:
                self._spawn_drain(loop)
        return await waiting.future

    def close(self) -> None:
        """Waits for a call running on the prediction thread to end."""
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def _spawn_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _others_under_way(self) -> bool:
        """Whether requests that are not queued yet are being handled (they may join)."""
        return self._requests is not None and self._requests() > len(self._queue)

    async def _call_inline(self) -> None:
        """One call on the event loop, in the coroutine of the request that found the
        model idle; what is still queued after it goes to a draining task."""
        try:
            if self.max_rows > 0 and self._others_under_way():
                await self._gather()
            await self._run(self._take())
        finally:  # also when this request is cancelled while gathering: others still queue
            self._running = False
            if self._queue:
                self._running = True
                self._spawn_drain(asyncio.get_running_loop())

    async def _drain(self) -> None:
        try:
            gather = False  # the first call starts at once: it ran no pass of the loop
            while self._queue:
                if gather and self.max_rows > 0:
                    await self._gather()
                await self._run(self._take())
                gather = True
        finally:
            self._running = False

    async def _gather(self) -> None:
        """Lets requests already here join the queue, within ``max_wait`` (no timer)."""
        deadline = time.monotonic() + self.max_wait
        while self._queued_rows < self.max_rows and time.monotonic() < deadline:
            before = len(self._queue)
            await asyncio.sleep(0)
            if len(self._queue) == before:
                return

    def _take(self) -> list[_Waiting]:
        """The queue's head requests, up to ``max_rows`` rows (always at least one)."""
        group = [self._queue.popleft()]
        rows = group[0].batch.rows
        while self._queue and rows + self._queue[0].batch.rows <= self.max_rows:
            waiting = self._queue.popleft()
            rows += waiting.batch.rows
            group.append(waiting)
        self._queued_rows -= rows
        return group

    async def _call(self, batch: Batch) -> Prediction:
        if self.executor is None:
            return self._predict(batch)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._predict, batch)

    async def _run(self, group: list[_Waiting]) -> None:
        combined = combine([w.batch for w in group])
        try:
            prediction = await self._call(combined)
        except ModelInputError as error:
            if len(group) > 1:  # someone's rows made the model refuse: each alone
                for waiting in group:
                    await self._run([waiting])
                return
            _settle(group[0], error=error)
            return
        except Exception as error:  # an internal failure: every caller answers 500
            for waiting in group:
                _settle(waiting, error=error)
            return
        if self._observe is not None:
            self._observe(combined.rows, len(group))
        parts = split(prediction, [w.batch.rows for w in group])
        for waiting, part in zip(group, parts, strict=True):
            _settle(waiting, result=part)


def _settle(waiting: _Waiting, *, result: Prediction | None = None, error: Any = None) -> None:
    """Answers one caller, unless it went away (its future was cancelled)."""
    future = waiting.future
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)

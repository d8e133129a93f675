"""Adaptive batching for one worker: whatever waited while the model was busy goes next.

There is no latency model. Requests that arrive while a forward pass runs queue up,
and the next dispatch takes all of them (up to `max_batch_series`), so under load the
batches grow by themselves to what arrives during one pass.

Greedy alone settles, under a closed loop of N clients, into two half-size batches that
take turns (one computing while the other's clients send again). So before a dispatch
the batcher may linger until as many series are queued as were pending at the busiest
moment since the previous dispatch. It stops early once no request has arrived for
`linger_gap_s` (the event loop has read in every client that was coming: reading one
request takes it well under a millisecond), and at the latest `max_linger_s` after the
oldest request arrived. With one client the target is 1 and nothing waits; under load
the turns merge into one batch of N, and the model costs less per series
(docs/SERVING.md, "Batching settings").

The model runs in one dedicated thread, so the event loop keeps reading and answering
requests during a forward pass, and passes never overlap (the model is not re-entrant
and the worker has one core's worth of torch threads anyway). Batchers of several models
may share that thread: each has at most one pass waiting for it, so they take turns.

Bounds: a request is refused (`QueueFull`) when the series already admitted would pass
`max_queue_series`, and a request still waiting after `max_wait_s` is answered
`WaitedTooLong` without running, so the queue's length and every wait stay bounded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")  # one request's input (e.g. its series)
Answer = TypeVar("Answer")  # one request's output

# The model callback: several requests in, one answer (or the exception it raised) each.
Predict = Callable[[list[Item]], Sequence["Answer | Exception"]]

logger = logging.getLogger("forecaster")


class QueueFull(Exception):
    """Admitting the request would hold more than `max_queue_series` series."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} series already wait for the model")
        self.pending = pending


def admit(pending: int, size: int, max_queue_series: int) -> None:
    """Raise `QueueFull` if `size` more series would pass the bound; an empty queue
    always admits, however large the request."""
    if pending and pending + size > max_queue_series:
        raise QueueFull(pending)


class WaitedTooLong(Exception):
    """The request waited longer than `max_wait_s` before a forward pass could take it."""


class DispatchFailed(Exception):
    """The dispatch holding the request could not be answered (a bad answer list, a bug)."""

    def __init__(self, requests: int) -> None:
        super().__init__(f"a dispatch of {requests} requests could not be answered")


@dataclass
class _Waiting(Generic[Item, Answer]):
    item: Item
    size: int  # series in the item still counted in `pending` (0 once released)
    enqueued: float  # time.perf_counter()
    future: asyncio.Future[Answer] = field(repr=False)


class Batcher(Generic[Item, Answer]):
    """Greedy batching of concurrent requests onto one model thread (one per worker)."""

    def __init__(
        self,
        predict: Predict[Item, Answer],
        size: Callable[[Item], int],
        max_batch_series: int,
        max_queue_series: int,
        max_wait_s: float,
        max_linger_s: float = 0.0,
        linger_gap_s: float = 0.002,
        executor: Executor | None = None,
    ) -> None:
        self._predict = predict
        self._size = size
        self.max_batch_series = max_batch_series
        self.max_queue_series = max_queue_series
        self.max_wait_s = max_wait_s
        self.max_linger_s = max_linger_s
        self.linger_gap_s = linger_gap_s
        self._queue: deque[_Waiting[Item, Answer]] = deque()
        self._pending = 0  # series admitted and not yet answered: queued or in a pass
        self._peak = 0  # most series pending at once since the last dispatch
        self._arrivals = 0  # requests submitted, ever
        self._target = math.inf  # queued series that end a linger
        self._enough = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        # The model thread; several batchers (one per model) may share one.
        self._thread = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, item: Item) -> Answer:
        """Queue one request and wait for its answer (raises what its forward pass raised)."""
        size = self._size(item)
        admit(self._pending, size, self.max_queue_series)
        loop = asyncio.get_running_loop()
        waiting: _Waiting[Item, Answer] = _Waiting(
            item, size, time.perf_counter(), loop.create_future()
        )
        self._queue.append(waiting)
        self._pending += size
        self._arrivals += 1
        self._peak = max(self._peak, self._pending)
        if self._pending >= self._target:
            self._enough.set()
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        # A cancelled caller (client gone, timeout) keeps its place until a dispatch
        # skips it, so `pending` is released there, never here.
        return await waiting.future

    async def _drain(self) -> None:
        """Dispatch the queue, one forward pass at a time, until it is empty."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                group: list[_Waiting[Item, Answer]] = []
                try:
                    if self.max_linger_s:
                        await self._linger()
                    group = self._take()
                    if group:
                        await self._dispatch(loop, group)
                except Exception as exc:
                    # Whatever broke, this group's callers hear it and the loop goes on:
                    # a drain loop that died would leave them waiting and `pending` held.
                    if not group:  # lingering or taking broke: fail what is queued, so
                        group = list(self._queue)  # the loop cannot spin on the same fault
                        self._queue.clear()
                    logger.exception("a dispatch of %d requests could not be answered", len(group))
                    self._fail(group, exc)
        finally:
            self._drainer = None

    async def _dispatch(
        self, loop: asyncio.AbstractEventLoop, group: list[_Waiting[Item, Answer]]
    ) -> None:
        """One forward pass for `group`, and each of its requests answered (in order)."""
        try:
            answers = await loop.run_in_executor(
                self._thread, self._predict, [w.item for w in group]
            )
        except Exception as exc:  # the whole pass failed: every caller hears it
            answers = [exc] * len(group)
        if len(answers) != len(group):  # which answer is whose cannot be known
            raise RuntimeError(f"{len(answers)} answers for {len(group)} requests")
        for waiting, answer in zip(group, answers, strict=True):
            self._pending -= waiting.size
            waiting.size = 0  # released: `_fail` must not release it again
            if waiting.future.done():  # caller cancelled meanwhile
                continue
            if isinstance(answer, Exception):
                waiting.future.set_exception(answer)
            else:
                waiting.future.set_result(answer)

    def _fail(self, group: list[_Waiting[Item, Answer]], cause: Exception) -> None:
        """Release what `group` still holds and fail each of its unanswered callers."""
        for waiting in group:
            self._pending -= waiting.size
            waiting.size = 0
            if not waiting.future.done():
                error = DispatchFailed(len(group))
                error.__cause__ = cause
                waiting.future.set_exception(error)

    async def _linger(self) -> None:
        """Wait (bounded) for the queue to fill up to the last cycle's peak of pending series.

        Runs only while the model is idle, so every pending series is a queued one. Ends
        when the target is queued, when no request arrived for `linger_gap_s` (the clients
        that were coming are in), or `max_linger_s` after the oldest request arrived.
        """
        target = min(self._peak, self.max_batch_series)
        self._peak = 0
        deadline = self._queue[0].enqueued + self.max_linger_s
        if self._pending >= target:
            return
        self._target = target
        self._enough.clear()
        while (timeout := min(self.linger_gap_s, deadline - time.perf_counter())) > 0:
            seen = self._arrivals
            try:
                await asyncio.wait_for(self._enough.wait(), timeout)
                break
            except TimeoutError:
                if self._arrivals == seen:
                    break
        self._target = math.inf

    def _take(self) -> list[_Waiting[Item, Answer]]:
        """Next dispatch, oldest first: at least one request, then up to max_batch_series.

        Cancelled requests are dropped; ones that waited past max_wait_s are answered
        `WaitedTooLong` here, without running.
        """
        now = time.perf_counter()
        group: list[_Waiting[Item, Answer]] = []
        series = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.future.done() or now - waiting.enqueued > self.max_wait_s:
                self._queue.popleft()
                self._pending -= waiting.size
                if not waiting.future.done():
                    waiting.future.set_exception(WaitedTooLong())
                continue
            if group and series + waiting.size > self.max_batch_series:
                break
            group.append(self._queue.popleft())
            series += waiting.size
        self._peak = max(self._peak, self._pending)
        return group

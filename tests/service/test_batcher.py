"""The greedy batcher: merging, order, bounds, failures, cancellation and lingering."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import pytest

from service.batcher import Batcher, DispatchFailed, QueueFull, WaitedTooLong


class Model:
    """Answers each request (a list of ints) with the doubled ints; records every call.

    `hold()` makes the next call block until `release()`, so a test can queue requests
    while a forward pass is running.
    """

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self, items: Sequence[list[int]]) -> list[list[int] | Exception]:
        self.calls.append(list(items))
        self.entered.set()
        self.gate.wait(10)
        return [[2 * x for x in item] if -1 not in item else ValueError("bad") for item in items]


def batcher(model: Model, **kwargs: float) -> Batcher[list[int], list[int]]:
    options = {"max_batch_series": 64, "max_queue_series": 1000, "max_wait_s": 10.0}
    options.update(kwargs)
    return Batcher(model, size=len, **options)  # type: ignore[arg-type]


async def occupy(
    b: Batcher[list[int], list[int]], model: Model, item: list[int]
) -> asyncio.Future[list[int]]:
    """Start a pass on `item` that blocks in the model until `model.release()`, so that
    requests submitted meanwhile queue behind it."""
    model.hold()
    first = asyncio.ensure_future(b.submit(item))
    while not model.entered.is_set():
        await asyncio.sleep(0.001)
    return first


def test_a_lone_request_is_dispatched_at_once_and_alone() -> None:
    model = Model()

    async def main() -> list[int]:
        return await batcher(model, max_linger_s=1.0).submit([1, 2])

    started = time.perf_counter()
    assert asyncio.run(main()) == [2, 4]
    assert model.calls == [[[1, 2]]]
    assert time.perf_counter() - started < 0.5  # the 1 s linger did not apply


def test_requests_queued_during_a_pass_share_the_next_one_in_order() -> None:
    model = Model()

    async def main() -> list[list[int]]:
        b = batcher(model)
        first = await occupy(b, model, [1])
        rest = [asyncio.ensure_future(b.submit([10 * i, 10 * i + 1])) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        assert b.pending == 11
        model.release()
        answers = await asyncio.gather(first, *rest)
        assert b.pending == 0
        return answers

    answers = asyncio.run(main())
    assert answers[0] == [2]
    assert answers[1:] == [[20 * i, 20 * i + 2] for i in range(1, 6)]
    assert [len(call) for call in model.calls] == [1, 5]
    assert model.calls[1] == [[10 * i, 10 * i + 1] for i in range(1, 6)]


def test_a_dispatch_stops_at_max_batch_series_but_takes_at_least_one_request() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_batch_series=4)
        first = await occupy(b, model, [0])
        sizes = [3, 2, 2, 6, 1]
        queued = [asyncio.ensure_future(b.submit([1] * n)) for n in sizes]
        model.release()
        await asyncio.gather(first, *queued)

    asyncio.run(main())
    assert [[len(item) for item in call] for call in model.calls] == [[1], [3], [2, 2], [6], [1]]


def test_queue_full_refuses_past_the_bound_but_always_admits_into_an_empty_queue() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_queue_series=5)
        assert await b.submit([1] * 9) == [2] * 9  # empty queue: admitted though > 5
        first = await occupy(b, model, [1, 1, 1])
        with pytest.raises(QueueFull) as refused:
            await b.submit([1, 1, 1])
        assert refused.value.pending == 3
        second = asyncio.ensure_future(b.submit([1, 1]))  # 3 + 2 <= 5: admitted
        model.release()
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert [len(call) for call in model.calls] == [1, 1, 1]


def test_a_request_that_waited_past_max_wait_is_answered_without_running() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_wait_s=0.05)
        first = await occupy(b, model, [1])
        late = asyncio.ensure_future(b.submit([7]))
        await asyncio.sleep(0.15)
        model.release()
        assert await first == [2]
        with pytest.raises(WaitedTooLong):
            await late
        assert b.pending == 0

    asyncio.run(main())
    assert model.calls == [[[1]]]


def test_a_failure_reaches_only_its_own_request() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model)
        first = await occupy(b, model, [1])
        good, bad = asyncio.ensure_future(b.submit([3])), asyncio.ensure_future(b.submit([-1]))
        model.release()
        assert await first == [2]
        assert await good == [6]
        with pytest.raises(ValueError, match="bad"):
            await bad

    asyncio.run(main())


def test_a_pass_that_raises_fails_every_request_in_it_and_the_batcher_goes_on() -> None:
    calls: list[int] = []

    def broken(items: Sequence[list[int]]) -> list[list[int]]:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return [list(item) for item in items]

    async def main() -> None:
        b: Batcher[list[int], list[int]] = Batcher(
            broken, size=len, max_batch_series=8, max_queue_series=100, max_wait_s=10
        )
        with pytest.raises(RuntimeError, match="model crashed"):
            await b.submit([1])
        assert await b.submit([5]) == [5]
        assert b.pending == 0

    asyncio.run(main())


def test_a_cancelled_caller_is_skipped_and_releases_its_place() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model)
        first = await occupy(b, model, [1])
        gone = asyncio.ensure_future(b.submit([5, 5]))
        kept = asyncio.ensure_future(b.submit([6]))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.release()
        assert await first == [2]
        assert await kept == [12]
        assert b.pending == 0

    asyncio.run(main())
    assert model.calls == [[[1]], [[6]]]


def test_lingering_merges_the_turns_of_a_closed_loop_and_stops_after_a_quiet_gap() -> None:
    model = Model()
    linger, gap = 0.5, 0.1

    async def main() -> tuple[float, float]:
        b = batcher(model, max_linger_s=linger, linger_gap_s=gap)
        # A busy moment: four requests at once, in one pass -> 4 series were pending.
        await asyncio.gather(*(b.submit([i]) for i in range(4)))
        # Four clients come back 20 ms apart (under the gap): one dispatch takes all four,
        # as soon as the fourth is in.
        started = time.perf_counter()
        again = []
        for i in range(4):
            again.append(asyncio.ensure_future(b.submit([10 + i])))
            await asyncio.sleep(0.02)
        await asyncio.gather(*again)
        merged = time.perf_counter() - started
        # A lone request after that busy time waits for one quiet gap, not the full linger.
        started = time.perf_counter()
        assert await b.submit([99]) == [198]
        return merged, time.perf_counter() - started

    merged, lone = asyncio.run(main())
    assert model.calls == [[[0], [1], [2], [3]], [[10], [11], [12], [13]], [[99]]]
    assert merged < gap + 0.1
    assert gap * 0.9 <= lone < linger


def test_lingering_never_passes_max_linger_however_requests_trickle_in() -> None:
    model = Model()
    linger = 0.15

    async def main() -> float:
        b = batcher(model, max_linger_s=linger, linger_gap_s=1.0)
        await asyncio.gather(*(b.submit([i]) for i in range(20)))  # peak of 20 pending
        started = time.perf_counter()
        answered: list[float] = []
        trickle = []
        for i in range(10):  # one every 40 ms: never quiet for 1 s, never 20 queued
            request = asyncio.ensure_future(b.submit([i]))
            request.add_done_callback(lambda _: answered.append(time.perf_counter() - started))
            trickle.append(request)
            await asyncio.sleep(0.04)
        await asyncio.gather(*trickle)
        return answered[0]

    first_answer = asyncio.run(main())
    assert linger * 0.9 <= first_answer < linger + 0.2
    assert 2 <= len(model.calls[1]) < 10  # the dispatch at the deadline took what was there


class Miscounts(Model):
    """A model whose second call answers `wrong(items)` instead of one answer per item."""

    def __init__(self, wrong: Callable[[list[list[int]]], object]) -> None:
        super().__init__()
        self.wrong = wrong

    def __call__(self, items: Sequence[list[int]]) -> list[list[int] | Exception]:
        answers = super().__call__(items)
        return self.wrong(list(items)) if len(self.calls) == 2 else answers  # type: ignore[return-value]


@pytest.mark.parametrize(
    "wrong",
    [
        lambda items: [[0]] * (len(items) - 1),  # one answer short
        lambda items: [[0]] * (len(items) + 1),  # one answer too many
        lambda items: None,  # not a sequence at all
    ],
    ids=["short", "long", "none"],
)
def test_a_dispatch_that_cannot_be_resolved_fails_each_of_its_requests_and_the_next_runs(
    wrong: Callable[[list[list[int]]], object], caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against the drain loop dying on a bad answer list: its callers left waiting
    (until their timeout) or given a neighbour's answer, `pending` never released (the
    queue fills up for good), and nothing in the log."""
    model = Miscounts(wrong)

    async def main() -> None:
        b = batcher(model)
        first = await occupy(b, model, [1])
        group = [asyncio.ensure_future(b.submit([n])) for n in (3, 4)]
        model.release()
        assert await first == [2]
        done = await asyncio.wait_for(asyncio.gather(*group, return_exceptions=True), 2)
        assert [type(answer) for answer in done] == [DispatchFailed, DispatchFailed]
        assert str(done[0]) == "a dispatch of 2 requests could not be answered"
        assert b.pending == 0
        assert await asyncio.wait_for(b.submit([5]), 2) == [10]
        assert b.pending == 0

    with caplog.at_level(logging.ERROR, logger="forecaster"):
        asyncio.run(main())
    assert model.calls == [[[1]], [[3], [4]], [[5]]]
    [record] = [r for r in caplog.records if r.name == "forecaster"]
    assert record.getMessage() == "a dispatch of 2 requests could not be answered"
    assert record.exc_info is not None

"""Models share one model thread and take turns: a flood on one cannot starve another."""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

from service.batcher import Batcher

PASS_S = 0.02  # one forward pass of either model
FLOOD = 120  # concurrent requests to model A
# B's request may wait for the pass of A already running, then runs its own: two passes,
# plus the event loop's scheduling. Without turns it would wait for A's whole queue
# (FLOOD / 8 = 15 passes, 300 ms).
BOUND_S = 3 * PASS_S + 0.03


def slow_model(name: str, log: list[tuple[str, int]], spans: list[tuple[float, float]]) -> object:
    def predict(batch: list[int]) -> list[int]:
        log.append((name, len(batch)))
        started = time.perf_counter()
        time.sleep(PASS_S)
        spans.append((started, time.perf_counter()))
        return batch

    return predict


def test_a_flood_on_one_model_delays_another_by_at_most_one_pass() -> None:
    """Guards against one model's queue starving another's: with a thread (or a lock) per
    model the passes would overlap, and with one queue for all, B would wait behind every
    request of A's flood."""
    log: list[tuple[str, int]] = []
    spans: list[tuple[float, float]] = []
    thread = ThreadPoolExecutor(max_workers=1)

    def batcher(name: str) -> Batcher[int, int]:
        return Batcher(
            slow_model(name, log, spans),  # type: ignore[arg-type]
            size=lambda _: 1,
            max_batch_series=8,
            max_queue_series=1000,
            max_wait_s=30.0,
            executor=thread,
        )

    async def run() -> tuple[float, int, list[int]]:
        a, b = batcher("a"), batcher("b")
        flood = [asyncio.create_task(a.submit(i)) for i in range(FLOOD)]
        await asyncio.sleep(3 * PASS_S)  # A's flood is queued and its passes are running
        started = time.perf_counter()
        answer = await b.submit(-1)
        waited = time.perf_counter() - started
        a_passes_before_b = sum(1 for name, _ in log[: log.index(("b", 1))] if name == "a")
        return waited, answer, [*await asyncio.gather(*flood), a_passes_before_b]

    waited, answer, results = asyncio.run(run())
    *flooded, a_passes_before_b = results
    assert answer == -1 and flooded == list(range(FLOOD))  # everyone got their own answer
    assert waited < BOUND_S, f"B waited {waited * 1000:.0f} ms under A's flood"
    assert a_passes_before_b <= 5  # the 3 passes run before B came, and at most one more
    assert len([1 for name, _ in log if name == "a"]) == FLOOD // 8
    spans.sort()
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))

"""Overload: offered load far above capacity, then normal load.

Every request gets an answer (200, or a fast 503 with Retry-After), the rejection
counter equals the 503s seen, queue depth and wait stay within the settings, and the
service is back to normal latency once the burst is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen import quantile
from bench.metrics import sample, scrape
from bench.servers import Server, serve_env
from tests.reliability.common import closed_loop, pinned, report

pytestmark = pytest.mark.slow

MAX_LATENCY_MS = 300
MAX_QUEUE_SERIES = 48
BURST_CLIENTS = 48
NORMAL_CLIENTS = 2


@pytest.fixture(scope="module")
def server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    env = serve_env(
        tiny_artifact,
        bentoml_home,
        max_latency_ms=str(MAX_LATENCY_MS),
        max_queue_series=str(MAX_QUEUE_SERIES),
        max_batch_size="16",
        retry_after_s="2",
    )
    with Server(env, cpus="0") as running:
        yield running


def test_burst_far_above_capacity_is_answered_200_or_fast_503_then_recovers(
    server: Server,
) -> None:
    """Guards against overload answered by timeouts, resets or 500s, or a service stuck after."""
    before = scrape(server)
    with pinned({1}):
        baseline = asyncio.run(closed_loop(server.url, NORMAL_CLIENTS, 3.0, seed=1))
        burst = asyncio.run(closed_loop(server.url, BURST_CLIENTS, 6.0, seed=2, series=4))
        after_burst = scrape(server)
        normal = asyncio.run(closed_loop(server.url, NORMAL_CLIENTS, 3.0, seed=3))
    statuses = burst.statuses
    shed = [o for o in burst.outcomes if o.status == 503]

    def delta(name: str, labels: str = "") -> float:
        return sample(after_burst, name, labels) - sample(before, name, labels)

    rejected = delta("forecaster_rejections_total", '{reason="overloaded"}') + delta(
        "forecaster_rejections_total", '{reason="queue_full"}'
    )
    waits = delta("forecaster_queue_wait_seconds_count")
    waits_over_1s = waits - delta("forecaster_queue_wait_seconds_bucket", '{le="1.0"}')
    base_p50 = quantile(baseline.latencies(), 0.5)
    normal_p50 = quantile(normal.latencies(), 0.5)
    report(
        "overload",
        burst_sent=len(burst.outcomes),
        burst_200=statuses[200],
        burst_503=statuses[503],
        burst_other=sum(n for s, n in statuses.items() if s not in (200, 503)),
        rejections_counted=int(rejected),
        queue_full=int(delta("forecaster_rejections_total", '{reason="queue_full"}')),
        latency_shed=int(delta("forecaster_rejections_total", '{reason="overloaded"}')),
        p50_503_ms=round(1000 * quantile(burst.latencies(503), 0.5), 1),
        max_503_ms=round(1000 * max(burst.latencies(503), default=0.0), 1),
        p99_200_ms=round(1000 * quantile(burst.latencies(), 0.99), 1),
        queue_waits_over_1s=int(waits_over_1s),
        queue_gauge_after=sample(after_burst, "forecaster_queue_series"),
    )
    report(
        "overload_recovery",
        baseline_sent=len(baseline.outcomes),
        baseline_p50_ms=round(1000 * base_p50, 2),
        after_sent=len(normal.outcomes),
        after_200=normal.statuses[200],
        after_p50_ms=round(1000 * normal_p50, 2),
    )
    assert set(statuses) <= {200, 503}, (statuses, burst.errors())
    assert statuses[503] > 0 and statuses[200] > 0, statuses
    assert all(o.headers["retry-after"] == "2" for o in shed)
    assert rejected == statuses[503]
    # Fast: a 503 comes back within the latency target plus the HTTP stack's own queueing
    # on this loaded 2-core machine (measured p50 ~0.5 s, max < 2 s), never after the 30 s
    # request timeout.
    assert max(burst.latencies(503)) < 5.0
    assert waits_over_1s == 0
    assert normal.statuses == {200: len(normal.outcomes)}
    assert normal_p50 < 3 * base_p50 + 0.005, (base_p50, normal_p50)

"""Overload: past FORECASTER_MAX_LATENCY_MS the service sheds load with 503 + Retry-After."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.metrics import sample
from bench.servers import Server, serve_env
from tests.service.tiny_model import MAX_HISTORY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tight_server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    env = serve_env(
        tiny_artifact,
        bentoml_home,
        max_latency_ms="10",
        max_batch_size="1",
        retry_after_s="3",
    )
    with Server(env) as running:
        yield running


def test_overload_is_503_with_retry_after_never_500_or_a_hang(tight_server: Server) -> None:
    """Guards against BentoML's 'process is overloaded' surfacing as a 500 or a bare text body."""
    rng = random.Random(8)
    bodies = [{"series": [{"values": [rng.uniform(1, 9) for _ in range(MAX_HISTORY)]}]}] * 150

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=150)
        async with httpx.AsyncClient(base_url=tight_server.url, limits=limits, timeout=30) as c:
            return await asyncio.gather(*(c.post("/forecast", json=b) for b in bodies))

    responses = asyncio.run(run())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    shed = [r for r in responses if r.status_code == 503]
    assert shed, "150 simultaneous requests at max_latency_ms=10 should shed some"
    assert shed[0].headers["retry-after"] == "3"
    assert shed[0].json()["error"] == "overloaded"
    assert "FORECASTER_MAX_LATENCY_MS" in shed[0].json()["message"]
    metrics = httpx.get(f"{tight_server.url}/metrics", timeout=10).text
    overloaded = '{model="tiny",reason="overloaded"}'
    assert sample(metrics, "forecaster_rejections_total", overloaded) == len(shed)

"""Helpers of the reliability tier: printed figures, random request bodies and a load of them.

Every figure a test measures is printed as one `RELIABILITY: <test> key=value ...` line
(run pytest with `-s`, or read the captured output of a failure) so CI logs can be grepped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import orjson

from bench import loadgen
from bench.loadgen import LoadResult, Request, prebuilt_request
from tests.service.tiny_model import MAX_HISTORY, MIN_HISTORY

# Every line reported in this session; conftest.py repeats them in pytest's summary, so
# they reach CI logs without `-s`.
REPORTED: list[str] = []


def report(test: str, **figures: Any) -> str:
    """Print (and return) one greppable line of figures."""
    parts = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    line = f"RELIABILITY: {test} {parts}"
    print(line, flush=True)
    REPORTED.append(line)
    return line


def body(rng: random.Random, series: int = 1, tag: str = "") -> dict[str, Any]:
    """A valid request of `series` random histories with ids `<tag>-<i>`."""
    items = []
    for i in range(series):
        n = rng.randint(MIN_HISTORY, MAX_HISTORY)
        level = rng.uniform(10, 1000)
        values = [round(level * (1 + 0.1 * rng.gauss(0, 1)), 3) for _ in range(n)]
        items.append({"id": f"{tag}-{i}", "values": values})
    return {"series": items}


async def closed_loop(
    url: str,
    clients: int,
    seconds: float,
    seed: int,
    series: int = 1,
    timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """`clients` concurrent clients (bench.loadgen), each sending its next request of
    `series` random histories when answered; every request is accounted for.

    One keep-alive connection per client; nothing is retried: a refused or reset
    connection is counted as a failure (status 0), never hidden.
    """
    rngs: dict[int, random.Random] = {}

    def traffic(k: int, turn: int) -> Request:
        rng = rngs.setdefault(k, random.Random(seed * 1000 + k))
        payload = body(rng, series, f"c{k}r{turn + 1}")
        ids = tuple(item["id"] for item in payload["series"])
        return Request(prebuilt_request(f"{url}/forecast", orjson.dumps(payload)), ids)

    return await loadgen.closed_loop(
        url, clients, traffic, seconds, timeout_s=timeout_s, stop=stop, tail=True
    )


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run this (client) process on `cpus` while the server has the others
    (BENCHMARKS.md, method)."""
    before = os.sched_getaffinity(0)
    usable = cpus & before
    if usable and usable != before:
        os.sched_setaffinity(0, usable)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)

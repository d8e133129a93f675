"""Helpers of the reliability tier: printed figures, an async load loop, metric samples.

Every figure a test measures is printed as one `RELIABILITY: <test> key=value ...` line
(run pytest with `-s`, or read the captured output of a failure) so CI logs can be grepped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.service.server import Server
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


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def scrape(server: Server) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


@dataclass
class Outcome:
    """What one request got: a status (0: no HTTP answer), its latency, and the error."""

    status: int
    seconds: float
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    sent_at: float = 0.0


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.outcomes)

    def latencies(self, status: int = 200) -> list[float]:
        return sorted(o.seconds for o in self.outcomes if o.status == status)

    def errors(self) -> Counter[str]:
        return Counter(o.error for o in self.outcomes if o.status == 0)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(client: httpx.AsyncClient, payload: dict[str, Any], started: float) -> Outcome:
    t0 = time.perf_counter()
    try:
        response = await client.post("/forecast", json=payload)
    except httpx.HTTPError as exc:
        return Outcome(0, time.perf_counter() - t0, type(exc).__name__, sent_at=t0 - started)
    headers = {"retry-after": response.headers.get("retry-after", "")}
    if response.status_code == 200:
        ids = [f["id"] for f in response.json()["forecasts"]]
        if ids != [s["id"] for s in payload["series"]]:
            return Outcome(-1, time.perf_counter() - t0, "mixed-up answer", sent_at=t0 - started)
    return Outcome(response.status_code, time.perf_counter() - t0, "", headers, t0 - started)


async def closed_loop(
    url: str,
    clients: int,
    seconds: float,
    seed: int,
    series: int = 1,
    timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> Tally:
    """`clients` concurrent clients, each sending its next request when answered.

    One keep-alive pool of `clients` connections (an AsyncClient each would spend seconds
    of client CPU building SSL contexts). httpx does not retry: a refused or reset
    connection is counted as a failure (status 0), never hidden.
    """
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient, k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        i = 0
        while time.perf_counter() < deadline and not (stop and stop.is_set()):
            i += 1
            outcome = await one(c, body(rng, series, f"c{k}r{i}"), started)
            tally.outcomes.append(outcome)
            if outcome.status == 0:
                await asyncio.sleep(0.05)  # no busy loop against a closed port

    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as c:
        await asyncio.gather(*(client(c, k) for k in range(clients)))
    return tally


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run this (client) process on `cpus` while the server has the others (DESIGN.md)."""
    before = os.sched_getaffinity(0)
    usable = cpus & before
    if usable and usable != before:
        os.sched_setaffinity(0, usable)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)

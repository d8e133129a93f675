"""A closed-loop HTTP load generator for the benchmark: N users, each one request at a time.

Why not locust here: locust (gevent, one greenlet per user, its own stats pipeline) costs
the generator several times the CPU per request of one asyncio loop on aiohttp, and on
this two-core machine the generator has exactly one core; its percentiles are also
rounded to two significant digits. This client keeps every latency, checks every answer
with the same rule as the locustfile (`payloads.check_forecast`), and calls back at the
edges of the measured window so the caller can read server CPU time and metrics there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from load_tests.payloads import Payload, check_forecast

Hook = Callable[[], Awaitable[Any]]


@dataclass
class LoadResult:
    """What the measured window saw (warm-up excluded, except `warmup_errors`)."""

    users: int
    series_per_request: int
    seconds: float
    ok: int = 0
    errors: int = 0
    warmup_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    before: Any = None
    after: Any = None

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def series_per_s(self) -> float:
        return self.requests_per_s * self.series_per_request

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def _user(
    session: aiohttp.ClientSession,
    url: str,
    payloads: Sequence[Payload],
    offset: int,
    horizon: int,
    state: dict[str, Any],
    result: LoadResult,
) -> None:
    i = offset
    while not state["stop"]:
        payload = payloads[i % len(payloads)]
        i += 1
        started = time.perf_counter()
        problem: str | None = None
        try:
            async with session.post(
                url, data=payload.body, headers={"Content-Type": "application/json"}
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    problem = f"HTTP {resp.status}: {raw[:200]!r}"
                else:
                    problem = check_forecast(json.loads(raw), payload.ids, horizon)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        if state["measuring"]:
            if problem is None:
                result.ok += 1
                result.latencies_ms.append(1000.0 * (ended - started))
            else:
                result.errors += 1
        elif problem is not None:
            result.warmup_errors += 1
        if problem is not None and len(result.error_samples) < 5:
            result.error_samples.append(problem)


async def closed_loop(
    url: str,
    payloads: Sequence[Payload],
    users: int,
    horizon: int,
    warmup_s: float,
    duration_s: float,
    on_start: Hook | None = None,
    on_end: Hook | None = None,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Run `users` closed-loop clients; measure completions in `duration_s` after `warmup_s`.

    A request counts (rate, latency, error) when it completes inside the window; after the
    warm-up the loop is in steady state, so that is the served rate. `on_start`/`on_end`
    run at the window's edges; their results land in `result.before`/`result.after`.
    """
    series = len(payloads[0].ids)
    result = LoadResult(users, series, duration_s)
    state: dict[str, Any] = {"stop": False, "measuring": False}
    connector = aiohttp.TCPConnector(limit=users + 2, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(_user(session, url, payloads, k * 7919, horizon, state, result))
            for k in range(users)
        ]
        try:
            await asyncio.sleep(warmup_s)
            result.before = await on_start() if on_start else None
            t0 = time.perf_counter()
            state["measuring"] = True
            await asyncio.sleep(duration_s)
            state["measuring"] = False
            result.seconds = time.perf_counter() - t0
            result.after = await on_end() if on_end else None
        finally:
            state["stop"] = True
            done, pending = await asyncio.wait(tasks, timeout=timeout_s + 5)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    return result

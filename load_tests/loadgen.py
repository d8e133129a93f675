"""A closed-loop HTTP load generator for the benchmark: N users, each one request at a time.

The generator must cost the server under test as little waiting as possible. Under a
closed loop of 32 users a batching server answers about 30 requests at once, and the
generator, one process on its own core, turns them around one after the other: each
answer's parse and check and the next request's send. With aiohttp that took 0.22 to
0.25 ms of generator CPU per request, so the last of 30 users sent again some 7 ms after
its answer, and the server sat idle meanwhile (8 to 11 % of the time at 32 users).
So each user here holds one keep-alive HTTP/1.1 connection (an asyncio protocol on
uvloop), writes a request prebuilt as bytes, and parses the answer with httptools (the C
parser uvicorn uses); a body is decoded with orjson: about 0.09 ms per request.
`make bench` records the generator's CPU beside the server's.

Why not locust here: locust (gevent, one greenlet per user, its own stats pipeline) costs
the generator several times the CPU per request again, and its percentiles are rounded to
two significant digits. This client keeps every latency, checks every answer with the
same rule as the locustfile (`payloads.check_forecast`), and calls back at the edges of
the measured window so the caller can read server CPU time and metrics there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import numpy as np
import orjson
import uvloop

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


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a prebuilt request, await (status, body)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        _, connection = await asyncio.get_running_loop().create_connection(cls, host, port)
        return connection

    async def send(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.chunks = []
        self.transport.write(request)
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ValueError(f"unparsable answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection closed by the server: {exc}"))

    def fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.chunks)))


def prebuilt_request(url: str, body: bytes) -> bytes:
    """The whole POST of `body` to `url` as bytes, ready to write on a keep-alive connection."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _user(
    url: str,
    payloads: Sequence[Payload],
    requests: Sequence[bytes],
    offset: int,
    horizon: int,
    state: dict[str, Any],
    result: LoadResult,
    timeout_s: float,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    connection: Connection | None = None
    i = offset
    try:
        while not state["stop"]:
            k = i % len(payloads)
            i += 1
            started = time.perf_counter()
            problem: str | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    if connection is None or not connection.reusable:
                        if connection is not None:
                            connection.close()
                        connection = await Connection.open(host, port)
                    status, raw = await connection.send(requests[k])
                if status != 200:
                    problem = f"HTTP {status}: {raw[:200]!r}"
                else:
                    problem = check_forecast(orjson.loads(raw), payloads[k].ids, horizon)
            except (OSError, TimeoutError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if connection is not None:
                    connection.close()
                    connection = None
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
    finally:
        if connection is not None:
            connection.close()


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
    requests = [prebuilt_request(url, p.body) for p in payloads]
    tasks = [
        asyncio.create_task(
            _user(url, payloads, requests, k * 7919, horizon, state, result, timeout_s)
        )
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


def run_closed_loop(*args: Any, **kwargs: Any) -> LoadResult:
    """`closed_loop` on a fresh uvloop event loop (what the benchmark and profiler call)."""
    return uvloop.run(closed_loop(*args, **kwargs))

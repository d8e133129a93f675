"""The one closed-loop HTTP load client: N users, each one request at a time.

The benchmark, the soak and the reliability tests all drive servers with it; what differs
is the traffic (`Traffic`: user and turn -> the next `Request`) and what they read from
the `LoadResult` (every `Outcome`, in order of completion).

The client must cost the server under test as little waiting as possible. Under a
closed loop of 32 users a batching server answers about 30 requests at once, and the
client, one process on its own core, turns them around one after the other: each
answer's parse and check and the next request's send. With aiohttp that took 0.22 to
0.25 ms of client CPU per request, so the last of 30 users sent again some 7 ms after
its answer, and the server sat idle meanwhile (8 to 11 % of the time at 32 users).
So each user here holds one keep-alive HTTP/1.1 connection (an asyncio protocol on
uvloop), writes a request prebuilt as bytes, and parses the answer with httptools (the C
parser uvicorn uses); a body is decoded with orjson: about 0.09 ms per request.
`make bench` records the client's CPU beside the server's.

Why not locust here: locust (gevent, one greenlet per user, its own stats pipeline) costs
the client several times the CPU per request again, and its percentiles are rounded to
two significant digits. This client keeps every latency, checks every forecast with the
same rule as the locustfile (`payloads.check_forecast`) or by its ids alone, never
retries (a failure is counted, never hidden), and calls back at the edges of the measured
window so the caller can read server CPU time and metrics there.

Failures without an HTTP answer (status 0) are named by what failed: `ConnectError` (no
connection), `ReadError` (reset before the answer), `RemoteProtocolError` (closed without
an answer, or an unparsable one), `ReadTimeout` (no answer within `timeout_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
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

# After a failure without an answer a user waits this long: no busy loop against a closed port.
PAUSE_AFTER_FAILURE_S = 0.05


class NoAnswer(Exception):
    """A request that got no HTTP answer; `kind` names what failed (see the module doc)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Request:
    """A request prebuilt as bytes, and how its answer is checked.

    `ids`: a 200 must forecast these series in this order (None: the body is not read);
    with `horizon` it must pass the whole `check_forecast` rule as well. `kind` labels it.
    """

    raw: bytes
    ids: tuple[str, ...] | None = None
    horizon: int | None = None
    kind: str = "forecast"


@dataclass
class Outcome:
    """What one request got.

    `status` is the HTTP status, 0 when no answer came (`error` names why) and -1 for a
    200 that failed its check (`error` says how). `sent_at` and `done_at` are seconds
    since the load started; `headers` holds the answer's Retry-After.
    """

    status: int
    seconds: float
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    sent_at: float = 0.0
    done_at: float = 0.0
    kind: str = "forecast"
    detail: str = ""
    series: int = 0  # series the request asked forecasts for

    @property
    def problem(self) -> str | None:
        """Why this is not a good answer (a 200 that passed its check), or None."""
        if self.status == 200:
            return None
        if self.status > 0:
            return f"HTTP {self.status}: {self.detail}"
        return f"{self.error}: {self.detail}" if self.detail else self.error


@dataclass
class LoadResult:
    """Every outcome of a load, and its measured window (warm-up before it, the requests
    in flight at its end after it); the figures are over the window's completions."""

    users: int
    outcomes: list[Outcome] = field(default_factory=list)
    window: tuple[float, float] = (0.0, math.inf)
    before: Any = None
    after: Any = None

    @property
    def measured(self) -> list[Outcome]:
        start, end = self.window
        return [o for o in self.outcomes if start <= o.done_at <= end]

    @property
    def seconds(self) -> float:
        start, end = self.window
        return end - start

    @property
    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.measured)

    def latencies(self, status: int = 200) -> list[float]:
        """Seconds each measured request with this status took, sorted."""
        return sorted(o.seconds for o in self.measured if o.status == status)

    def errors(self) -> Counter[str]:
        """Measured requests without an answer, by what failed."""
        return Counter(o.error for o in self.measured if o.status == 0)

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def failed(self) -> int:
        """Measured requests that did not get a good answer."""
        return len(self.measured) - self.ok

    @property
    def warmup_errors(self) -> int:
        """Requests outside the window that did not get a good answer."""
        return sum(o.problem is not None for o in self.outcomes) - self.failed

    @property
    def error_samples(self) -> list[str]:
        """The first five problems, in order of completion, warm-up included."""
        return [p for o in self.outcomes if (p := o.problem) is not None][:5]

    @property
    def latencies_ms(self) -> list[float]:
        return [1000.0 * s for s in self.latencies()]

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def series_per_request(self) -> int:
        """The most common number of series a request carried (0 before any request)."""
        counts = Counter(o.series for o in self.outcomes)
        return counts.most_common(1)[0][0] if counts else 0

    @property
    def series_per_s(self) -> float:
        return self.requests_per_s * self.series_per_request

    def percentile_ms(self, q: float) -> float:
        latencies = self.latencies_ms
        return float(np.percentile(latencies, q)) if latencies else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """The value at rank `q` of `values` (no interpolation); NaN when there is none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a prebuilt request, await (status, body)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.retry_after = ""
        self.started = False  # some of the answer has arrived
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(cls, host, port)
        except OSError as exc:
            raise NoAnswer("ConnectError", f"{type(exc).__name__}: {exc}") from exc
        return connection

    async def send(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.chunks = []
        self.retry_after = ""
        self.started = False
        self.transport.write(request)
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(NoAnswer("RemoteProtocolError", f"unparsable answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self.fail(NoAnswer("RemoteProtocolError", "server disconnected without an answer"))
        else:
            self.fail(NoAnswer("ReadError", f"{type(exc).__name__}: {exc}"))

    def fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.chunks)))


def prebuilt_request(url: str, body: bytes = b"", method: str = "POST", path: str = "") -> bytes:
    """The whole request as bytes, ready to write on a keep-alive connection; `path`
    replaces `url`'s path when given."""
    parts = urlsplit(url)
    head = f"{method} {path or parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def check(request: Request, body: bytes) -> str | None:
    """Why a 200 to `request` is not a good answer, or None when it is."""
    if request.ids is None:
        return None
    try:
        answer = orjson.loads(body)
    except ValueError as exc:
        return f"answer is not JSON: {exc}"
    if request.horizon is not None:
        return check_forecast(answer, request.ids, request.horizon)
    forecasts = answer.get("forecasts") if isinstance(answer, dict) else None
    ids = [f.get("id") for f in forecasts if isinstance(f, dict)] if forecasts else []
    return None if ids == list(request.ids) else "mixed-up answer"


Traffic = Callable[[int, int], Request]  # (user, turn) -> that user's next request


def from_payloads(url: str, payloads: Sequence[Payload], horizon: int) -> Traffic:
    """Every user cycles through `payloads` (prebuilt), from its own offset; each answer
    must pass `check_forecast` at `horizon`."""
    requests = [Request(prebuilt_request(url, p.body), p.ids, horizon) for p in payloads]

    def traffic(user: int, turn: int) -> Request:
        return requests[(user * 7919 + turn) % len(requests)]

    return traffic


async def _user(
    host: str,
    port: int,
    user: int,
    traffic: Traffic,
    record: Callable[[Outcome], None],
    stopping: Callable[[], bool],
    origin: float,
    timeout_s: float,
) -> None:
    connection: Connection | None = None
    turn = 0
    try:
        while not stopping():
            request = traffic(user, turn)
            turn += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    if connection is not None and not connection.reusable:
                        connection.close()
                        connection = None
                    if connection is None:
                        connection = await Connection.open(host, port)
                    status, raw = await connection.send(request.raw)
                problem = check(request, raw) if status == 200 else None
                outcome = Outcome(
                    -1 if problem else status,
                    0.0,
                    problem or "",
                    {"retry-after": connection.retry_after},
                    kind=request.kind,
                    detail="" if status == 200 else repr(raw[:200]),
                )
            except (NoAnswer, TimeoutError) as exc:
                if isinstance(exc, NoAnswer):
                    error, detail = exc.kind, str(exc).split(": ", 1)[1]
                else:
                    error = "ReadTimeout" if connection is not None else "ConnectTimeout"
                    detail = f"no answer in {timeout_s} s"
                if connection is not None:
                    connection.close()
                    connection = None
                outcome = Outcome(0, 0.0, error, kind=request.kind, detail=detail)
            ended = time.perf_counter()
            outcome.seconds = ended - started
            outcome.sent_at = started - origin
            outcome.done_at = ended - origin
            outcome.series = len(request.ids) if request.ids else 0
            record(outcome)
            if outcome.status == 0:
                await asyncio.sleep(PAUSE_AFTER_FAILURE_S)
    finally:
        if connection is not None:
            connection.close()


async def closed_loop(
    url: str,
    users: int,
    traffic: Traffic,
    duration_s: float,
    warmup_s: float = 0.0,
    on_start: Hook | None = None,
    on_end: Hook | None = None,
    timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    tail: bool = False,
) -> LoadResult:
    """Run `users` closed-loop clients against `url`'s host for `warmup_s + duration_s`
    (or until `stop` is set); measure completions in the `duration_s` after `warmup_s`.

    A request counts in the window when it completes inside it; after the warm-up the
    loop is in steady state, so that is the served rate. `on_start`/`on_end` run at the
    window's edges; their results land in `result.before`/`result.after`. Requests in
    flight when the load ends are waited for (up to `timeout_s` more) and recorded after
    the window, or in it with `tail` (a load whose every request must be accounted for);
    `on_outcome` sees every outcome as it completes.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult(users)
    state = {"stop": False}

    def record(outcome: Outcome) -> None:
        result.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    def stopping() -> bool:
        return state["stop"] or (stop is not None and stop.is_set())

    origin = time.perf_counter()
    tasks = [
        asyncio.create_task(_user(host, port, k, traffic, record, stopping, origin, timeout_s))
        for k in range(users)
    ]
    try:
        if warmup_s > 0:
            await asyncio.sleep(warmup_s)
            result.before = await on_start() if on_start else None
        elif on_start:
            result.before = await on_start()
        start = time.perf_counter() - origin
        if stop is None:
            await asyncio.sleep(duration_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
        result.window = (start, time.perf_counter() - origin)
        result.after = await on_end() if on_end else None
    finally:
        state["stop"] = True
        done, pending = await asyncio.wait(tasks, timeout=timeout_s + 5)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    if tail:
        result.window = (result.window[0], time.perf_counter() - origin)
    return result


def run_closed_loop(*args: Any, **kwargs: Any) -> LoadResult:
    """`closed_loop` on a fresh uvloop event loop (what the benchmark and profiler call)."""
    return uvloop.run(closed_loop(*args, **kwargs))

"""Unit tests of the HTTP boundary middleware, driven in-process as a plain ASGI app."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.errors import ClientError
from service.guard import RequestGuard
from service.runtime import Runtime, Served
from service.schemas import ForecastRequest, Limits
from service.settings import Settings

LIMITS = Limits(6, (0.1, 0.5, 0.9), 4, 40, 3, 50, 1e6)
VALID = b'{"series": [{"values": [1, 2, 3, 4]}]}'


class Downstream:
    """Stands in for BentoML's app: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.calls.append((scope, message["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


def call(
    guard: RequestGuard, method: str, path: str, chunks: list[bytes], headers: list[Any]
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """Run one request; returns status, headers, body and how many body chunks were read
    before the answer started (after a 413 the guard drops the rest: see `linger`)."""
    pending = list(chunks)
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not pending:
            return {"type": "http.disconnect"}
        read += not sent
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body, read


class Engine:
    """Stands in for `Engine.answer`: records each validated request, or raises `error`."""

    def __init__(self, error: ClientError | None = None) -> None:
        self.requests: list[ForecastRequest] = []
        self.error = error

    async def __call__(self, request: ForecastRequest) -> bytes:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return b'{"answered": %d}' % len(request.series)


def runtime_of(engine: Engine, max_body_bytes: int = 1024) -> Runtime:
    """A runtime of one model called "tiny" whose engine's `answer` is `engine`."""
    served = Served(
        artifact=SimpleNamespace(name="tiny"),
        limits=LIMITS,
        engine=SimpleNamespace(answer=engine),
        card={"name": "tiny"},
    )
    settings = Settings(max_body_bytes=max_body_bytes)
    return Runtime(settings, {"tiny": served}, default="tiny", device="cpu")


def make(engine: Engine | None = None) -> tuple[RequestGuard, Downstream]:
    downstream = Downstream()
    guard = RequestGuard(downstream, runtime_of(engine or Engine()))
    return guard, downstream


def requests_answered(code: int) -> float:
    labels = {"model": "tiny", "code": str(code)}
    unknown = {"model": "", "code": str(code)}  # refused before the model was known
    return sum(
        REGISTRY.get_sample_value("forecaster_requests_total", one) or 0.0
        for one in (labels, unknown)
    )


def rejections(reason: str) -> float:
    return sum(
        REGISTRY.get_sample_value("forecaster_rejections_total", {"model": m, "reason": reason})
        or 0.0
        for m in ("tiny", "")
    )


def test_a_valid_body_is_answered_by_the_engine_and_never_reaches_bentoml() -> None:
    """Guards against a second parse: the engine gets the request the guard validated."""
    engine = Engine()
    guard, downstream = make(engine)
    before = requests_answered(200)
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]  # curl -d's default
    status, got, body, _ = call(guard, "POST", "/forecast", [VALID[:10], VALID[10:]], headers)
    assert (status, body, downstream.calls) == (200, b'{"answered": 1}', [])
    assert got[b"content-type"] == b"application/json"
    assert got[b"content-length"] == str(len(body)).encode()
    [request] = engine.requests
    assert request.series[0].values == [1, 2, 3, 4]
    assert requests_answered(200) == before + 1


def test_an_engine_refusal_keeps_its_status_headers_and_reason() -> None:
    error = ClientError("queue_full", "full; retry later", headers={"Retry-After": "1"})
    guard, _ = make(Engine(error))
    before = (rejections("queue_full"), requests_answered(503))
    status, got, body, _ = call(guard, "POST", "/forecast", [VALID], [])
    assert (status, got[b"retry-after"]) == (503, b"1")
    assert json.loads(body) == {"error": "queue_full", "message": "full; retry later", "detail": []}
    assert (rejections("queue_full"), requests_answered(503)) == (before[0] + 1, before[1] + 1)


def test_declared_oversize_is_413_before_reading_the_body() -> None:
    """Guards against buffering a huge body only to refuse it afterwards."""
    guard, downstream = make()
    before = rejections("body_too_large")
    status, headers, body, read = call(
        guard, "POST", "/forecast", [b"x" * 2000], [(b"content-length", b"2000")]
    )
    assert (status, read, downstream.calls) == (413, 0, [])
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body) == {
        "error": "body_too_large",
        "message": "request body is 2000 B; the limit is 1024 B",
        "detail": [],
    }
    assert rejections("body_too_large") == before + 1


def test_undeclared_oversize_stops_reading_at_the_limit() -> None:
    guard, downstream = make()
    status, _, body, read = call(guard, "POST", "/forecast", [b"x" * 600] * 5, [])
    assert (status, read, downstream.calls) == (413, 2, [])
    assert json.loads(body)["message"] == "request body exceeds the limit of 1024 B"


class Stalled:
    """Stands in for a client that sends part of its body, then nothing: `receive` hangs."""

    def __init__(self) -> None:
        self.reads = 0

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        if self.reads == 1:
            return {"type": "http.request", "body": VALID[:10], "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class NeverAnswers(Engine):
    """An engine whose answer never comes; records whether the wait was cancelled."""

    cancelled = False

    async def __call__(self, request: ForecastRequest) -> bytes:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


def timed_out(engine: Engine, receive: Any) -> tuple[int, dict[str, Any], float]:
    """One POST /forecast through a guard with a 50 ms timeout: status, body, seconds taken
    (and the answer closes the connection)."""
    guard = RequestGuard(Downstream(), runtime_of(engine), timeout_s=0.05)
    sent, seconds = drive(guard, receive, [])
    assert (b"connection", b"close") in sent[0]["headers"]
    return sent[0]["status"], json.loads(sent[1]["body"]), seconds


def test_a_body_that_stops_arriving_is_504_after_the_timeout() -> None:
    """Guards against a slow client holding a connection (and a worker's memory) for ever."""
    before = rejections("timeout"), requests_answered(504)
    engine = Engine()
    status, body, seconds = timed_out(engine, Stalled())
    assert (status, body["error"], engine.requests) == (504, "timeout", [])
    assert body["message"] == "no answer within FORECASTER_REQUEST_TIMEOUT_S=0.05 s"
    assert 0.05 <= seconds < 1.0
    assert (rejections("timeout"), requests_answered(504)) == (before[0] + 1, before[1] + 1)


def test_an_answer_slower_than_the_timeout_is_504_and_its_wait_is_cancelled() -> None:
    """Guards against a 504 whose request still waits in the queue (the batcher skips
    cancelled requests, so their series never run)."""
    engine = NeverAnswers()

    async def whole_body() -> dict[str, Any]:
        return {"type": "http.request", "body": VALID, "more_body": False}

    status, body, _ = timed_out(engine, whole_body)
    assert (status, body["error"], engine.cancelled) == (504, "timeout", True)


def test_invalid_body_is_answered_by_the_guard_and_counted() -> None:
    guard, downstream = make()
    before = rejections("validation_error"), requests_answered(422)
    status, _, body, _ = call(guard, "POST", "/forecast", [b'{"series": []}'], [])
    assert (status, downstream.calls) == (422, [])
    assert json.loads(body)["detail"][0]["loc"] == "series"
    assert (rejections("validation_error"), requests_answered(422)) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_model_card_and_other_routes() -> None:
    guard, downstream = make()
    status, _, body, _ = call(guard, "GET", "/model", [], [])
    assert (status, json.loads(body)) == (200, {"name": "tiny"})
    status, _, body, _ = call(guard, "GET", "/metrics", [b""], [])
    assert (status, body, len(downstream.calls)) == (200, b"downstream", 1)


TOKEN = "s3cr3t-token-value"


def authed(**flags: bool) -> tuple[RequestGuard, Downstream]:
    downstream = Downstream()
    guard = RequestGuard(downstream, runtime_of(Engine()), token=TOKEN, **flags)
    return guard, downstream


def test_with_a_token_every_route_but_probes_and_metrics_needs_it_before_any_read() -> None:
    """Guards against an unauthenticated client making the service read or parse its body."""
    guard, downstream = authed()
    before = rejections("unauthorized")
    for headers in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"Bearer")]):
        status, got, body, read = call(guard, "POST", "/forecast", [VALID], headers)
        assert (status, read, downstream.calls) == (401, 0, [])
        assert got[b"www-authenticate"] == b'Bearer realm="forecaster"'
        assert json.loads(body)["error"] == "unauthorized"
        assert TOKEN.encode() not in body
    assert call(guard, "GET", "/model", [], [])[0] == 401
    assert rejections("unauthorized") == before + 4
    ok = [(b"authorization", f"Bearer {TOKEN}".encode())]
    assert call(guard, "POST", "/forecast", [VALID], ok)[0] == 200
    for path in ("/livez", "/readyz", "/metrics"):
        assert call(guard, "GET", path, [b""], [])[0] == 200, path
    assert TOKEN not in repr(guard)


def test_probes_and_metrics_can_require_the_token_too() -> None:
    guard, _ = authed(auth_health=True, auth_metrics=True)
    for path in ("/livez", "/readyz", "/metrics"):
        assert call(guard, "GET", path, [b""], [])[0] == 401, path
    guard, _ = authed(auth_metrics=True)
    assert call(guard, "GET", "/livez", [b""], [])[0] == 200
    assert call(guard, "GET", "/metrics", [b""], [])[0] == 401


def test_no_token_means_no_authentication() -> None:
    guard, _ = make()
    assert call(guard, "POST", "/forecast", [VALID], [])[0] == 200


class Fails(Engine):
    """An engine that breaks past validation, as a model answer of the wrong shape does."""

    async def __call__(self, request: ForecastRequest) -> bytes:
        raise IndexError("index 1 is out of bounds for axis 1 with size 1")


def test_an_unexpected_error_after_validation_is_a_json_500_model_error_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guards against an unexpected exception reaching uvicorn, which answers a plain-text
    500 that no forecaster metric counts and no client can parse."""
    guard, _ = make(Fails())
    before = rejections("model_error"), requests_answered(500)
    with caplog.at_level(logging.ERROR, logger="forecaster"):
        status, headers, body, _ = call(guard, "POST", "/forecast", [VALID], [])
    assert (status, headers[b"content-type"]) == (500, b"application/json")
    assert json.loads(body) == {
        "error": "model_error",
        "message": "the service failed on this request; see server log",
        "detail": [],
    }
    assert (rejections("model_error"), requests_answered(500)) == (before[0] + 1, before[1] + 1)
    [record] = [r for r in caplog.records if r.name == "forecaster"]
    assert record.getMessage() == "POST /forecast failed after validation"
    assert record.exc_info is not None and isinstance(record.exc_info[1], IndexError)


def in_progress() -> float:
    return REGISTRY.get_sample_value("forecaster_requests_in_progress") or 0.0


def drive(guard: RequestGuard, receive: Any, headers: list[Any]) -> tuple[list[Any], float]:
    """One POST /forecast: the messages sent and the seconds it took (at most 5)."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        scope = {"type": "http", "method": "POST", "path": "/forecast", "headers": headers}
        await asyncio.wait_for(guard(scope, receive, send), 5)
        return loop.time() - started

    return sent, asyncio.run(run())


def test_a_client_that_disconnects_while_its_request_waits_is_499_and_its_wait_is_cancelled() -> (
    None
):
    """Guards against a request whose client has left waiting on in the queue (its series
    run for nobody) and being counted as a 200 (or, here, a 504 after the timeout)."""
    engine = NeverAnswers()
    guard = RequestGuard(Downstream(), runtime_of(engine), timeout_s=1.0)
    messages = [{"type": "http.request", "body": VALID, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.05)  # the client leaves while its request waits
        return {"type": "http.disconnect"}

    before = requests_answered(499), requests_answered(200), requests_answered(504)
    sent, seconds = drive(guard, receive, [])
    assert (sent, engine.cancelled) == ([], True)
    assert seconds < 0.5
    assert (requests_answered(499), requests_answered(200), requests_answered(504)) == (
        before[0] + 1,
        before[1],
        before[2],
    )
    assert in_progress() == 0


class Slow(Engine):
    """An engine that answers after a real wait (the event loop runs meanwhile)."""

    async def __call__(self, request: ForecastRequest) -> bytes:
        await asyncio.sleep(0.02)
        return await super().__call__(request)


def test_a_client_that_stays_gets_its_answer_and_no_watcher_is_left_behind() -> None:
    """Guards against the disconnect watch cancelling a request whose client is still there,
    or outliving its request (one task left per request)."""
    messages = [{"type": "http.request", "body": VALID, "more_body": False}]

    async def receive() -> dict[str, Any]:  # a real server: nothing until the client leaves
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    guard = RequestGuard(Downstream(), runtime_of(Slow()))
    before = requests_answered(200)
    left: list[int] = []

    async def run() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/forecast", "headers": []}
        await guard(scope, receive, send)
        await asyncio.sleep(0)  # let a cancelled watcher finish
        left.append(len(asyncio.all_tasks()))
        return sent

    sent = asyncio.run(run())
    assert (sent[0]["status"], sent[1]["body"]) == (200, b'{"answered": 1}')
    assert left == [1]  # only this test's own task
    assert requests_answered(200) == before + 1


class Client:
    """`receive` of a client sending `chunks`, then silent (`stall`) or gone; logs reads."""

    def __init__(self, chunks: list[bytes], stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.stall = stall
        self.events: list[str] = []

    async def __call__(self) -> dict[str, Any]:
        if not self.chunks:
            if self.stall:
                await asyncio.Event().wait()
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.events.append(f"read {len(chunk)}")
        return {"type": "http.request", "body": chunk, "more_body": self.stall or bool(self.chunks)}


def lingering(guard: RequestGuard, client: Client, headers: list[Any]) -> tuple[list[str], float]:
    """What happened, in order (reads, the answer's parts), and the seconds it took; every
    answer says Connection: close and holds the whole 413 before the end of the response."""

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            client.events.append(f"start {message['status']}")
            assert (b"connection", b"close") in message["headers"]
        elif message.get("more_body"):
            client.events.append(f"body {json.loads(message['body'])['message']}")
        else:
            client.events.append(f"end {message['body']!r}")

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        scope = {"type": "http", "method": "POST", "path": "/forecast", "headers": headers}
        await asyncio.wait_for(guard(scope, client, send), 5)
        return loop.time() - started

    seconds = asyncio.run(run())
    return client.events, seconds


DECLARED_3000 = [(b"content-length", b"3000")]


def test_a_declared_oversize_is_answered_first_then_the_rest_is_read_and_dropped() -> None:
    """Guards against closing under a client that is still sending (urllib then sees a
    broken pipe, never the 413): the 413 goes out at once, and the connection closes
    only once the body is read (nginx's lingering close)."""
    guard, _ = make()
    before = requests_answered(413)
    got, _ = lingering(guard, Client([b"x" * 600] * 5), DECLARED_3000)
    assert got == [
        "start 413",
        "body request body is 3000 B; the limit is 1024 B",
        *["read 600"] * 5,
        "end b''",
    ]
    assert requests_answered(413) == before + 1
    assert in_progress() == 0


def test_an_undeclared_oversize_is_answered_at_the_limit_then_the_rest_is_dropped() -> None:
    guard, _ = make()
    got, _ = lingering(guard, Client([b"x" * 600] * 5), [])
    assert got == [
        "read 600",
        "read 600",
        "start 413",
        "body request body exceeds the limit of 1024 B",
        *["read 600"] * 3,
        "end b''",
    ]


def test_lingering_stops_at_its_byte_bound_and_at_its_time_bound() -> None:
    """Guards against a client keeping a worker busy reading an endless refused body."""
    downstream = Downstream()
    guard = RequestGuard(downstream, runtime_of(Engine()), linger_max_bytes=1000)
    got, _ = lingering(guard, Client([b"x" * 600] * 9), DECLARED_3000)
    assert got[2:] == ["read 600", "read 600", "end b''"]  # 1200 B dropped > 1000: closed
    guard = RequestGuard(downstream, runtime_of(Engine()), linger_max_s=0.1)
    got, seconds = lingering(guard, Client([b"x" * 600], stall=True), DECLARED_3000)
    assert got[2:] == ["read 600", "end b''"]
    assert 0.1 <= seconds < 1.0

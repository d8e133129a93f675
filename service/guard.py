"""The HTTP boundary: an ASGI middleware in front of BentoML's app.

`POST /forecast` (and the KServe time-series route, `service.kserve`) is answered here,
in full: the body-size limit (413, from Content-Length before reading when the client
declares it), parsing and validation against the model the request names (400 malformed
JSON, 404 unknown model, 422 broken rule, with the field, rule and value received), then
the model's engine for the forecast, and the request's status and latency in
`forecaster_requests_total` / `forecaster_request_duration_seconds`, by model.
Reading the body and waiting for the answer are bounded by `timeout_s` (504 `timeout`), so
a client that trickles its body cannot hold a connection open for ever. A client that
disconnects while its request waits is noticed (ASGI `http.disconnect`): the wait is
cancelled, so the batcher skips its series, and it counts as code 499. Any other failure
after validation is answered `500 model_error` in JSON and logged. After a 413 the rest of
the body is read and dropped, within bounds, before the connection closes (`linger`).
Going through BentoML's endpoint instead would parse the body a second time and pass
starlette's routing and BentoML's HTTP middlewares: about a sixth of the server's CPU
per request under load (docs/SERVING.md). `GET /model`, `/models` and `/models/{name}`
answer model cards; every other route passes through to BentoML.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service import kserve, metrics
from service.errors import ClientError
from service.runtime import Runtime
from service.schemas import check_request, parse_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Exchange:
    """What one forecast request has revealed so far: the model it is for, once known
    (the label of its metrics; empty until then, and for a name that is not served)."""

    __slots__ = ("model",)

    def __init__(self) -> None:
        self.model = ""


# A request body -> the JSON body of its 200 (raises ClientError otherwise).
Answer = Callable[[bytes, Exchange], Awaitable[bytes]]

FORECAST_PATH = "/forecast"
MODEL_PATH = "/model"
MODELS_PATH = "/models"
MODEL_PREFIX = "/models/"
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
METRICS_PATH = "/metrics"
# forecaster_requests_total's code for a client that left before its answer (nginx's
# "client closed request"); never sent, as nobody is there to read it.
CLIENT_CLOSED = 499
# After a 413 the client may still be sending: read and drop at most this much more of
# its body, for at most this long, then close (nginx's lingering close). Closing at once
# would reset the connection under a client that reads only after sending its whole body
# (urllib, requests): it sees a broken pipe, never the 413.
LINGER_MAX_BYTES = 64 * 1024 * 1024
LINGER_MAX_S = 5.0

logger = logging.getLogger("forecaster")


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    more_body: bool = False,
) -> None:
    """The whole JSON response; with `more_body` the response is left open (the client has
    every byte of it, Content-Length says so) until an empty last body message ends it."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole body, or `ClientError` 413 as soon as it grows past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise ClientError("body_too_large", f"request body exceeds the limit of {max_bytes} B")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def linger(receive: Receive, send: Send, max_bytes: int, max_s: float) -> int:
    """Read and drop the rest of a refused body (at most `max_bytes`, for at most `max_s`
    seconds), then end the response left open, which closes the connection; bytes dropped."""
    dropped = 0
    try:
        async with asyncio.timeout(max_s):
            while dropped <= max_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        pass
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return dropped


async def until_disconnect(receive: Receive, waiter: asyncio.Task[Any]) -> bool:
    """Cancel `waiter` when the client disconnects; whether it did. The body has been read
    whole, so the next message a server sends is `http.disconnect` (or, by the ASGI spec,
    nothing)."""
    message = await receive()
    if message["type"] != "http.disconnect":
        return False
    waiter.cancel()
    return True


class RequestGuard:
    """ASGI middleware: answer the forecast routes and the model cards; pass all else
    through."""

    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        timeout_s: float = 30.0,
        token: str = "",
        auth_health: bool = False,
        auth_metrics: bool = False,
        linger_max_bytes: int = LINGER_MAX_BYTES,
        linger_max_s: float = LINGER_MAX_S,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.max_body_bytes = runtime.settings.max_body_bytes
        self.timeout_s = timeout_s
        self.linger_max_bytes = linger_max_bytes
        self.linger_max_s = linger_max_s
        self.routes: dict[str, Answer] = {
            FORECAST_PATH: self.answer_forecast,
            kserve.PATH: lambda body, exchange: kserve.answer(runtime, body, exchange),
        }
        # Cards are served as bytes encoded once: GET /model is a liveness-cheap route.
        self.cards = {
            MODEL_PATH: encode(runtime.default_model.card),
            MODELS_PATH: encode(runtime.catalogue()),
            **{MODEL_PREFIX + name: encode(s.card) for name, s in runtime.models.items()},
        }
        self._expected = f"Bearer {token}".encode() if token else b""
        self.auth_health = auth_health
        self.auth_metrics = auth_metrics

    def __repr__(self) -> str:  # never the token
        return f"RequestGuard(auth={'on' if self._expected else 'off'})"

    def needs_token(self, path: str) -> bool:
        if not self._expected:
            return False
        if path in HEALTH_PATHS:
            return self.auth_health
        if path == METRICS_PATH:
            return self.auth_metrics
        return True

    def authorized(self, scope: Scope) -> bool:
        presented = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                presented = bytes(value)
                break
        # Constant time in the token's content: no timing oracle on how much of it matched.
        return hmac.compare_digest(presented, self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if self.needs_token(path) and not self.authorized(scope):
            exc = ClientError(
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <FORECASTER_API_TOKEN>)",
                headers={"WWW-Authenticate": 'Bearer realm="forecaster"'},
            )
            metrics.rejections("", exc.reason).inc()
            await send_json(send, exc.status, exc.body(), exc.headers)
            return
        if method in ("GET", "HEAD") and (
            path in (MODEL_PATH, MODELS_PATH) or path.startswith(MODEL_PREFIX)
        ):
            await self.describe(path, send)
            return
        answer = self.routes.get(path)
        if answer is None or method != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange = Exchange()
        metrics.IN_PROGRESS.inc()
        try:
            status = await self.forecast(scope, receive, send, answer, exchange)
        finally:
            metrics.IN_PROGRESS.dec()
        count, latency = metrics.by_status(exchange.model, status)
        count.inc()
        latency.observe(time.perf_counter() - started)
        if status == 413:  # answered, not counted as in progress while the rest is dropped
            await linger(receive, send, self.linger_max_bytes, self.linger_max_s)

    async def describe(self, path: str, send: Send) -> None:
        """GET /model (the default's card), /models (all), /models/{name} (one)."""
        card = self.cards.get(path.rstrip("/") or path)  # "/models/" is "/models"
        if card is None:
            exc = self.runtime.unknown(path.removeprefix(MODEL_PREFIX))
            await send_json(send, exc.status, exc.body(), exc.headers)
            return
        await send_json(send, 200, card)

    async def answer_forecast(self, body: bytes, exchange: Exchange) -> bytes:
        """POST /forecast: the request checked against its model, then that model's engine."""
        request = parse_request(body)
        served = self.runtime.model(request.model)
        exchange.model = served.artifact.name
        return await served.engine.answer(check_request(request, served.limits))

    async def forecast(
        self, scope: Scope, receive: Receive, send: Send, answer: Answer, exchange: Exchange
    ) -> int:
        """Answer one forecast request; its HTTP status, or `CLIENT_CLOSED` if the client
        left first. A 413 is left open, with Connection: close, for `linger` to end."""
        try:
            length = declared_length(scope)
            if length is not None and length > self.max_body_bytes:
                raise ClientError(
                    "body_too_large",
                    f"request body is {length} B; the limit is {self.max_body_bytes} B",
                )
            try:
                async with asyncio.timeout(self.timeout_s):
                    body = await read_body(receive, self.max_body_bytes)
                    reply = await self.answer_unless_gone(answer(body, exchange), receive)
            except TimeoutError:
                # Closing frees the connection of a client that may still be trickling.
                raise ClientError(
                    "timeout",
                    f"no answer within FORECASTER_REQUEST_TIMEOUT_S={self.timeout_s:g} s",
                    headers={"Connection": "close"},
                ) from None
        except ClientError as exc:
            metrics.rejections(exchange.model, exc.reason).inc()
            if exc.status == 413:  # the client may still be sending: `linger` ends it
                headers = {**exc.headers, "Connection": "close"}
                await send_json(send, exc.status, exc.body(), headers, more_body=True)
            else:
                await send_json(send, exc.status, exc.body(), exc.headers)
            return exc.status
        except ConnectionAbortedError:
            return CLIENT_CLOSED
        except Exception:
            # A bug or a model answer of the wrong shape: the client still gets JSON, not
            # uvicorn's plain-text 500, and it is counted like every answer.
            logger.exception("POST /forecast failed after validation")
            error = ClientError("model_error", "the service failed on this request; see server log")
            metrics.rejections(exchange.model, error.reason).inc()
            await send_json(send, error.status, error.body(), error.headers)
            return error.status
        await send_json(send, 200, reply)
        return 200

    async def answer_unless_gone(self, answering: Awaitable[bytes], receive: Receive) -> bytes:
        """The answer, or `ConnectionAbortedError` once the client disconnects (the wait is
        cancelled, so a queued request is skipped by the batcher, never run)."""
        task = asyncio.current_task()
        assert task is not None
        watch = asyncio.create_task(until_disconnect(receive, task))
        try:
            return await answering
        except asyncio.CancelledError:
            if not (watch.done() and not watch.cancelled() and watch.result()):
                raise  # cancelled from outside (shutdown, timeout): not ours to swallow
            task.uncancel()
            raise ConnectionAbortedError("client disconnected while waiting") from None
        finally:
            watch.cancel()


def encode(document: Any) -> bytes:
    return json.dumps(document, allow_nan=False).encode()

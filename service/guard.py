"""The HTTP boundary: an ASGI middleware in front of BentoML's app.

`POST /forecast` is answered here, in full: the body-size limit (413, from
Content-Length before reading when the client declares it), parsing and validation
against the loaded model (400 malformed JSON, 422 broken rule, with the field, rule
and value received), then `answer` (the engine) for the forecast, and the request's
status and latency in `forecaster_requests_total` / `forecaster_request_duration_seconds`.
Reading the body and waiting for the answer are bounded by `timeout_s` (504 `timeout`), so
a client that trickles its body cannot hold a connection open for ever.
Going through BentoML's endpoint instead would parse the body a second time and pass
starlette's routing and BentoML's HTTP middlewares: about a sixth of the server's CPU
per request under load (docs/SERVING.md). `GET /model` answers the model card; every
other route passes through to BentoML.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service import metrics
from service.errors import ClientError
from service.schemas import ForecastRequest, Limits, parse_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# A validated request -> the JSON body of its 200 (raises ClientError otherwise).
Answer = Callable[[ForecastRequest], Awaitable[bytes]]

FORECAST_PATH = "/forecast"
MODEL_PATH = "/model"
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
METRICS_PATH = "/metrics"


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


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


class RequestGuard:
    """ASGI middleware: answer /forecast and /model; pass all else through."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        answer: Answer,
        max_body_bytes: int,
        card: dict[str, Any],
        timeout_s: float = 30.0,
        token: str = "",
        auth_health: bool = False,
        auth_metrics: bool = False,
    ) -> None:
        self.app = app
        self.limits = limits
        self.answer = answer
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.card = json.dumps(card, allow_nan=False).encode()
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
            metrics.REJECTIONS.labels(exc.reason).inc()
            await send_json(send, exc.status, exc.body(), exc.headers)
            return
        if path == MODEL_PATH and method in ("GET", "HEAD"):
            await send_json(send, 200, self.card)
            return
        if path != FORECAST_PATH or method != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        metrics.IN_PROGRESS.inc()
        try:
            status = await self.forecast(scope, receive, send)
        finally:
            metrics.IN_PROGRESS.dec()
        if status:
            count, latency = metrics.by_status(status)
            count.inc()
            latency.observe(time.perf_counter() - started)

    async def forecast(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one POST /forecast; its HTTP status, or 0 if the client left first."""
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
                    reply = await self.answer(parse_request(body, self.limits))
            except TimeoutError:
                # Closing frees the connection of a client that may still be trickling.
                raise ClientError(
                    "timeout",
                    f"no answer within FORECASTER_REQUEST_TIMEOUT_S={self.timeout_s:g} s",
                    headers={"Connection": "close"},
                ) from None
        except ClientError as exc:
            metrics.REJECTIONS.labels(exc.reason).inc()
            await send_json(send, exc.status, exc.body(), exc.headers)
            return exc.status
        except ConnectionAbortedError:
            return 0
        await send_json(send, 200, reply)
        return 200

"""The HTTP boundary: an ASGI middleware in front of BentoML's routes.

For `POST /forecast` it enforces the body-size limit (413, from Content-Length before
reading when the client declares it), parses and validates the body against the loaded
model (400 malformed JSON, 422 broken rule) and answers those itself with the JSON
error body of `service.errors`; a valid body is replayed, unchanged, to the BentoML
endpoint. BentoML's own validation would answer 400 for every mistake, without the
value received. `GET /model` answers the model card.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service import metrics
from service.errors import ClientError
from service.schemas import Limits, parse_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORECAST_PATH = "/forecast"
MODEL_PATH = "/model"


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
    """ASGI middleware: validate /forecast bodies, answer /model; pass all else through."""

    def __init__(
        self, app: ASGIApp, limits: Limits, max_body_bytes: int, card: dict[str, Any]
    ) -> None:
        self.app = app
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.card = json.dumps(card, allow_nan=False).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == MODEL_PATH and method in ("GET", "HEAD"):
            await send_json(send, 200, self.card)
            return
        if path != FORECAST_PATH or method != "POST":
            await self.app(scope, receive, send)
            return
        try:
            length = declared_length(scope)
            if length is not None and length > self.max_body_bytes:
                raise ClientError(
                    "body_too_large",
                    f"request body is {length} B; the limit is {self.max_body_bytes} B",
                )
            body = await read_body(receive, self.max_body_bytes)
            parse_request(body, self.limits)
        except ClientError as exc:
            metrics.REJECTIONS.labels(exc.reason).inc()
            await send_json(send, exc.status, exc.body(), exc.headers)
            return
        except ConnectionAbortedError:
            return
        await self.app(_as_json(scope), _replay(body, receive), send)


def _as_json(scope: Scope) -> Scope:
    """The body parsed as JSON, so BentoML must read it as JSON too (curl -d sends a form type)."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

"""The benchmark's closed-loop client against a stub HTTP server on 127.0.0.1.

The stub answers each request with a valid forecast of the ids it was sent, in one of
the ways real servers answer: Content-Length, chunked, or closing the connection after
each answer; or with a 500, or a forecast of the wrong series.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.loadgen import LoadResult, closed_loop, from_payloads
from load_tests.payloads import History, payload_pool

HORIZON = 3
PAYLOADS = payload_pool(2, 5, seed=0, histories=[History(f"s{i}", (1.0,) * 12) for i in range(9)])


def forecast_of(body: bytes, shuffle: bool) -> bytes:
    ids = [item["id"] for item in json.loads(body)["series"]]
    if shuffle:
        ids.reverse()
    values = [1.0] * HORIZON
    forecasts = [{"id": i, "point": values, "quantiles": {"0.5": values}} for i in ids]
    return json.dumps({"forecasts": forecasts}).encode()


class Stub:
    """An HTTP/1.1 server answering every POST in `mode`; counts connections and requests."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next(
                    int(line.split(":")[1])
                    for line in lines
                    if line.lower().startswith("content-length")
                )
                body = await reader.readexactly(length)
                self.requests += 1
                writer.write(self.answer(body))
                await writer.drain()
                if self.mode == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def answer(self, body: bytes) -> bytes:
        status = b"500 Internal Server Error" if self.mode == "500" else b"200 OK"
        payload = forecast_of(body, shuffle=self.mode == "shuffled")
        if self.mode == "chunked":
            half = len(payload) // 2
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(c), c) for c in (payload[:half], payload[half:])
            )
            return b"HTTP/1.1 %s\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (
                status,
                chunks,
            )
        close = b"Connection: close\r\n" if self.mode == "close" else b""
        return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
            status,
            len(payload),
            close,
            payload,
        )


def run(mode: str, users: int = 3) -> tuple[LoadResult, Stub]:
    stub = Stub(mode)

    async def main() -> LoadResult:
        server = await asyncio.start_server(stub.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/forecast"
        async with server:
            return await closed_loop(url, users, from_payloads(url, PAYLOADS, HORIZON), 0.3, 0.1)

    return asyncio.run(main()), stub


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_each_user_keeps_one_connection_and_every_answer_is_checked(mode: str) -> None:
    result, stub = run(mode)
    assert (result.failed, result.warmup_errors, result.error_samples) == (0, 0, [])
    assert result.ok > 10
    assert len(result.latencies_ms) == result.ok
    assert stub.connections == 3
    assert result.series_per_request == 2


def test_a_server_that_closes_after_each_answer_gets_a_new_connection_each_time() -> None:
    result, stub = run("close")
    assert (result.failed, result.warmup_errors) == (0, 0)
    assert result.ok > 10
    assert stub.connections == stub.requests


@pytest.mark.parametrize(
    ("mode", "problem"), [("500", "HTTP 500"), ("shuffled", "forecasts[0].id is")]
)
def test_wrong_answers_count_as_errors_not_throughput(mode: str, problem: str) -> None:
    result, _ = run(mode)
    assert result.ok == 0
    assert result.failed > 10
    assert problem in result.error_samples[0]


def test_a_server_that_is_not_there_is_an_error_not_a_hang() -> None:
    async def main() -> LoadResult:
        url = "http://127.0.0.1:9/forecast"
        return await closed_loop(url, 2, from_payloads(url, PAYLOADS, HORIZON), 0.2, 0.05)

    result = asyncio.run(main())
    assert result.ok == 0
    assert result.failed > 0
    assert "ConnectionRefusedError" in result.error_samples[0]

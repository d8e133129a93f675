"""Failure paths against real servers: a broken model answer, a client that leaves while
queued, and a body over the limit sent by clients that read only after sending."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.metrics import sample, scrape
from bench.servers import Server, serve_env
from service.guard import LINGER_MAX_BYTES, LINGER_MAX_S
from tests.service.faulty_model import NARROW_LAST, SLOW_LAST, write_faulty_artifact

pytestmark = pytest.mark.slow

# 7 MB, as a client uploading a big batch would send; the session server's limit is 64 KiB.
BIG = b'{"series": [{"values": [' + b"1.0," * 1_750_000 + b"1.0]}]}"


@pytest.fixture(scope="module")
def faulty_server(
    tiny_artifact: Path, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    model = write_faulty_artifact(tiny_artifact, tmp_path_factory.mktemp("faulty") / "m")
    with Server(serve_env(model, bentoml_home)) as running:
        yield running


def test_a_model_answer_of_the_wrong_shape_is_a_json_500_model_error_and_counted(
    faulty_server: Server,
) -> None:
    """Guards against an exception past validation reaching uvicorn: a plain-text
    "Internal Server Error" that no client can parse and forecaster_requests_total misses."""
    before = scrape(faulty_server)
    url = f"{faulty_server.url}/forecast"
    broken = httpx.post(url, json={"series": [{"values": [1.0, 2, 3, NARROW_LAST]}]}, timeout=30)
    fine = httpx.post(url, json={"series": [{"values": [1.0, 2, 3, 4]}]}, timeout=30)
    after = scrape(faulty_server)
    assert (broken.status_code, broken.headers["content-type"]) == (500, "application/json")
    assert broken.json() == {
        "error": "model_error",
        "message": "the service failed on this request; see server log",
        "detail": [],
    }
    assert fine.status_code == 200

    def delta(name: str, labels: str) -> float:
        return sample(after, name, labels) - sample(before, name, labels)

    assert delta("forecaster_requests_total", '{code="500"}') == 1
    assert delta("forecaster_rejections_total", '{reason="model_error"}') == 1
    assert delta("forecaster_requests_total", '{code="200"}') == 1
    assert "POST /forecast failed after validation" in faulty_server.tail(20000)


def raw_post(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def until(check: str, condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, check
        time.sleep(0.02)


def test_a_client_that_leaves_while_queued_is_499_and_its_series_never_run(
    faulty_server: Server,
) -> None:
    """Guards against a request whose client has gone staying queued: its series run for
    nobody and it is counted as a 200."""
    url = f"{faulty_server.url}/forecast"
    before = scrape(faulty_server)

    def queued() -> float:
        return sample(scrape(faulty_server), "forecaster_queue_series")

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.post, url, json={"series": [{"values": [1.0, 2, 3, SLOW_LAST]}]}, timeout=60
        )
        until("the slow request is in its pass", lambda: queued() == 1)
        gone = raw_post(faulty_server.port, b'{"series": [{"values": [1, 2, 3, 4]}]}')
        until("the second request queues behind it", lambda: queued() == 2)
        gone.close()
        answered = slow.result(timeout=60)
    assert answered.status_code == 200
    after = scrape(faulty_server)

    def delta(name: str, labels: str = "") -> float:
        return sample(after, name, labels) - sample(before, name, labels)

    assert delta("forecaster_requests_total", '{code="499"}') == 1
    assert delta("forecaster_requests_total", '{code="200"}') == 1
    assert delta("forecaster_forecast_series_total") == 1
    assert delta("forecaster_model_call_series_sum") == 1  # the slow series alone
    assert sample(after, "forecaster_queue_series") == 0
    assert sample(after, "forecaster_requests_in_progress") == 0


TOO_LARGE = f"request body is {len(BIG)} B; the limit is 65536 B"


def test_urllib_posting_7_mb_reads_the_413(server: Server) -> None:
    """Guards against closing under a client still sending its body: urllib (which reads
    only after sending it all) saw a broken pipe, never the 413."""
    request = urllib.request.Request(f"{server.url}/forecast", data=BIG)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert refused.value.headers["Connection"] == "close"
    assert json.loads(refused.value.read()) == {
        "error": "body_too_large",
        "message": TOO_LARGE,
        "detail": [],
    }


def test_httpx_posting_7_mb_reads_the_413(server: Server) -> None:
    response = httpx.post(f"{server.url}/forecast", content=BIG, timeout=30)
    assert (response.status_code, response.headers["connection"]) == (413, "close")
    assert response.json()["message"] == TOO_LARGE


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response's head and body (by its Content-Length), without waiting for a close."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_a_raw_client_sending_7_mb_before_reading_gets_the_413_and_then_a_close(
    server: Server,
) -> None:
    sock = raw_post(server.port, BIG)  # the whole body, before reading anything
    sock.settimeout(10)
    with sock:
        head, body = read_response(sock)
        assert sock.recv(65536) == b""  # then closed, in order
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"connection: close" in head.lower()
    assert json.loads(body)["message"] == TOO_LARGE


def test_a_client_that_never_stops_sending_is_cut_off_past_the_linger_bound(
    server: Server,
) -> None:
    """Guards against lingering turning into reading an endless refused body."""
    declared = 10**10
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            f"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        head, body = read_response(sock)  # answered from Content-Length, at once
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < declared:
                sock.sendall(chunk)
                sent += len(chunk)
        took = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["message"] == f"request body is {declared} B; the limit is 65536 B"
    # What the server dropped, plus at most what the kernel's socket buffers held.
    assert LINGER_MAX_BYTES <= sent < LINGER_MAX_BYTES + 64 * (1 << 20)
    assert took < LINGER_MAX_S

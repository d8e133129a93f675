"""Security against a real server: bearer-token auth, size limits, nothing secret in logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.servers import Server, serve_env
from tests.reliability.common import report
from tests.service.conftest import TEST_LIMITS

pytestmark = pytest.mark.slow

TOKEN = "tok-3b9f0c7e51d24a86-do-not-log"
SECRET_ID = "series-id-7f3a9e-do-not-log"
SECRET_VALUE = 4242.123456789


@pytest.fixture(scope="module")
def server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    env = {
        **serve_env(tiny_artifact, bentoml_home, api_token=TOKEN),
        **TEST_LIMITS,
    }
    with Server(env) as running:
        yield running


def test_forecast_needs_the_bearer_token_probes_and_metrics_do_not(server: Server) -> None:
    """Guards against an open forecast endpoint when a token is configured."""
    good = {"series": [{"id": SECRET_ID, "values": [1.0, 2.0, 3.0, SECRET_VALUE]}]}
    url = f"{server.url}/forecast"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    statuses: dict[str, int] = {}
    for name, headers in {
        "none": {},
        "wrong": {"Authorization": "Bearer nope"},
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    }.items():
        r = httpx.post(url, json=good, headers=headers, timeout=10)
        statuses[name] = r.status_code
        assert r.status_code == 401, (name, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"] == "unauthorized"
    r = httpx.post(url, json=good, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{server.url}/model", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/model", headers=auth, timeout=10).status_code == 200
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    # 401 comes before the body is read: an unauthenticated 50 MB upload is not consumed.
    huge = b"[" * 50_000_000
    r = httpx.post(url, content=huge, timeout=30)
    assert r.status_code == 401
    # Authenticated but over FORECASTER_MAX_BODY_BYTES: 413 from the declared length.
    r = httpx.post(url, content=huge, headers=auth, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # The same without Content-Length (chunked): 413 once the limit is passed.
    chunks = (b"[" * 8192 for _ in range(1000))
    r = httpx.post(url, content=chunks, headers=auth, timeout=30)
    assert r.status_code == 413
    report("auth", **{f"status_{k}": v for k, v in statuses.items()}, status_with_token=200)


def test_no_token_or_request_body_reaches_the_log(server: Server) -> None:
    """Guards against secrets or client data leaking into logs (access log, errors)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{server.url}/forecast"
    bodies = [
        {"series": [{"id": SECRET_ID, "values": [1.0, 2.0, 3.0, SECRET_VALUE, 5.0]}]},
        {"series": [{"id": SECRET_ID, "values": [SECRET_VALUE, float("nan")]}]},
        {"series": [{"id": SECRET_ID, "values": [SECRET_VALUE]}], "horizn": 1},
    ]
    for payload in bodies:
        text = json.dumps(payload)  # NaN as the bare token NaN
        httpx.post(url, content=text, headers=auth, timeout=10)
    httpx.post(url, content=json.dumps(bodies[0]), headers={"Authorization": "Bearer x"})
    log = server.tail(10_000_000)
    leaks = {k: log.count(v) for k, v in {"token": TOKEN, "id": SECRET_ID}.items()}
    leaks["value"] = log.count(str(SECRET_VALUE))
    report("log_leaks", log_bytes=len(log), **leaks)
    assert leaks == {"token": 0, "id": 0, "value": 0}, log[-3000:]

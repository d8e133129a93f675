"""Fuzzing a real server: schemathesis from its OpenAPI schema, and hostile hypothesis bodies.

No 5xx, no hang (every answer within a per-request timeout), server memory bounded.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.servers import Server, serve_env
from tests.reliability.common import report
from tests.service.conftest import TEST_LIMITS

pytestmark = pytest.mark.slow

TIMEOUT_S = 10.0
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    suppress_health_check=list(HealthCheck),
    database=None,
)
SEEN: dict[str, int] = {}


def rss_mb(server: Server) -> float:
    total = 0
    for pid in server.pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            total += psutil.Process(pid).memory_info().rss
    return total / 2**20


@pytest.fixture(scope="module")
def fuzz_server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    env = serve_env(tiny_artifact, bentoml_home)
    with Server({**env, **TEST_LIMITS}) as running:
        start = rss_mb(running)
        yield running
        end = rss_mb(running)
        report("fuzz_memory", rss_start_mb=round(start, 1), rss_end_mb=round(end, 1), **SEEN)
        assert end - start < 150, f"server RSS grew {start:.0f} -> {end:.0f} MB while fuzzing"


@pytest.fixture(scope="module")
def client(fuzz_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=TIMEOUT_S) as c:
        yield c


def tally(kind: str, status: int) -> None:
    key = f"{kind}_{status}"
    SEEN[key] = SEEN.get(key, 0) + 1


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_schemathesis_finds_no_server_error(
    fuzz_server: Server, mode: schemathesis.GenerationMode
) -> None:
    """Guards against any schema-shaped (or schema-violating) input reaching a 500 or a hang.

    Schemathesis' pytest plugin (`from_fixture`) breaks on pytest 9 (`Function._nodeid`),
    so its hypothesis strategy is driven directly, over every operation in /docs.json.
    """
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/docs.json")

    @FUZZ_SETTINGS
    @given(case=schema.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, timeout=TIMEOUT_S)
        tally(f"schema_{mode.value}", response.status_code)
        assert response.status_code < 500, (case.method, case.path, case.body, response.text)

    check()


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=40,
)
huge_numbers = st.sampled_from(["1e400", "-1e400", "9" * 5000, "1e-400", "NaN", "-Infinity"])
hostile_text = st.one_of(
    st.just('{"series": [{"values": ' + "[" * 50_000 + "]" * 50_000 + "}]}"),  # deep nesting
    st.just('{"series": [{"values": [' + ",".join(["1.5"] * 15_000) + "]}]}"),  # big array
    st.just('{"series": [' + ",".join(['{"values": [1, 2, 3, 4]}'] * 5_000) + "]}"),
    huge_numbers.map(lambda n: f'{{"series": [{{"values": [1, 2, 3, {n}]}}]}}'),
    st.text(min_size=1, max_size=200).map(
        lambda s: json.dumps({"series": [{"id": s, "values": [1, 2, 3, 4]}]}, ensure_ascii=False)
    ),
    st.integers(min_value=1, max_value=60).map(
        lambda n: '{"series": [{"values": [1, 2, 3, 4, 5, 6]}], "horizon": 3}'[:n]  # truncated
    ),
    json_value.map(lambda v: json.dumps({"series": v})),
    json_value.map(lambda v: json.dumps({"series": [{"values": v}]})),
    json_value.map(json.dumps),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/json; charset=utf-16",
        "",
    ]
)


@FUZZ_SETTINGS
@given(text=hostile_text, content_type=content_types)
def test_hostile_bodies_get_a_4xx_or_200_never_a_5xx(
    client: httpx.Client, text: str, content_type: str
) -> None:
    """Guards against parser or framework corners (nesting, huge ints, encodings) as 500s."""
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(
        "/forecast", content=text.encode("utf-8", "surrogatepass"), headers=headers
    )
    tally("hostile", response.status_code)
    assert response.status_code in (200, 400, 413, 422), (text[:200], response.text[:300])
    assert response.headers["content-type"] == "application/json"
    if response.status_code != 200:
        assert response.json()["error"] in ("malformed_json", "body_too_large", "validation_error")

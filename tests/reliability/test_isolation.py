"""Isolation in a batch: a request that fails, fails alone; its batch-mates get their answer."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.metrics import sample, scrape
from bench.servers import Server, serve_env
from tests.reliability.common import body, report
from tests.reliability.poisoned import NAN_LAST, RAISE_LAST, write_poisoned_artifact
from tests.service.conftest import Reference
from tests.service.tiny_model import QUANTILES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def poisoned_server(
    tiny_artifact: Path, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    model = write_poisoned_artifact(tiny_artifact, tmp_path_factory.mktemp("p") / "poisoned")
    env = serve_env(
        model,
        bentoml_home,
        max_latency_ms="20000",  # nothing shed: every answer is checked
    )
    with Server(env) as running:
        yield running


def poisoned(rng: random.Random, last: float, tag: str) -> dict[str, Any]:
    payload = body(rng, 1, tag)
    payload["series"][0]["values"][-1] = last
    return payload


async def burst(url: str, payloads: list[Any]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(payloads))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/forecast", content=p if isinstance(p, str) else json.dumps(p))
                for p in payloads
            )
        )


def check_good(payload: dict[str, Any], response: httpx.Response, reference: Reference) -> None:
    assert response.status_code == 200, response.text
    for sent, got in zip(payload["series"], response.json()["forecasts"], strict=True):
        assert got["id"] == sent["id"]
        want = reference(sent["values"])  # (H, Q), the series alone, in-process
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(
            got["point"], want[:, QUANTILES.index(0.5)], rtol=1e-5, atol=1e-5 * scale
        )
        for q in QUANTILES:
            np.testing.assert_allclose(
                got["quantiles"][str(q)], want[:, QUANTILES.index(q)], rtol=1e-5, atol=1e-5 * scale
            )


def test_invalid_and_non_finite_requests_fail_alone_in_a_shared_model_call(
    poisoned_server: Server, reference: Reference
) -> None:
    """Guards against one NaN row or one bad body failing the whole dispatch it joined."""
    rng = random.Random(21)
    good = [body(rng, rng.choice((1, 3)), f"g{i}") for i in range(60)]
    nan = [poisoned(rng, NAN_LAST, f"n{i}") for i in range(10)]
    invalid = ['{"series": [{"values": [1, 2, NaN, 4]}]}', '{"series": [{"values": [1]}]}'] * 5
    payloads: list[Any] = [*good, *nan, *invalid]
    order = list(range(len(payloads)))
    rng.shuffle(order)
    before = scrape(poisoned_server)
    answers = asyncio.run(burst(poisoned_server.url, [payloads[i] for i in order]))
    after = scrape(poisoned_server)
    response = {i: answers[k] for k, i in enumerate(order)}
    for i, payload in enumerate(good):
        check_good(payload, response[i], reference)
    for i in range(len(good), len(good) + len(nan)):
        r = response[i]
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "unforecastable"
        assert r.json()["detail"][0]["loc"] == "series[0].values"
        assert r.json()["detail"][0]["rule"] == "finite_forecast"
    for i in range(len(good) + len(nan), len(payloads)):
        assert response[i].status_code == 422
        assert response[i].json()["error"] == "validation_error"

    def delta(name: str, labels: str = "") -> float:
        return sample(after, name, labels) - sample(before, name, labels)

    calls = delta("forecaster_model_call_series_count")
    rows = delta("forecaster_model_call_series_sum")
    report(
        "isolation_non_finite",
        requests=len(payloads),
        good_200=len(good),
        non_finite_422=len(nan),
        invalid_422=len(invalid),
        model_calls=int(calls),
        rows=int(rows),
    )
    # The poisoned rows really shared forward passes with good ones.
    assert rows == sum(len(p["series"]) for p in good) + len(nan)
    assert calls < len(good) / 2, f"{calls} model calls: nothing was batched"
    assert delta("forecaster_rejections_total", '{reason="unforecastable"}') == len(nan)


def test_a_model_exception_fails_only_the_request_that_causes_it(
    poisoned_server: Server, reference: Reference
) -> None:
    """Guards against one request that crashes the model taking its batch-mates down."""
    rng = random.Random(22)
    good = [body(rng, 2, f"g{i}") for i in range(40)]
    raising = [poisoned(rng, RAISE_LAST, f"r{i}") for i in range(4)]
    payloads: list[Any] = [*good[:20], *raising, *good[20:]]
    answers = asyncio.run(burst(poisoned_server.url, payloads))
    statuses = [r.status_code for r in answers]
    for payload, r in zip(payloads, answers, strict=True):
        if payload in raising:
            # An exception inside the model is a server bug: 500, logged, never hidden.
            assert r.status_code == 500 and r.json()["error"] == "model_error", r.text
        else:
            check_good(payload, r, reference)
    shared = poisoned_server.tail(200_000).count("model failed on a dispatch of")
    report(
        "isolation_model_exception",
        requests=len(payloads),
        good_200=statuses.count(200),
        raising_500=statuses.count(500),
        failed_shared_dispatches=shared,
    )
    assert shared >= 1, "the raising requests never shared a dispatch; the test proved nothing"

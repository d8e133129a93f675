"""FORECASTER_BATCHING=false: no dispatcher, same validation, same answers, same metrics."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.metrics import sample, scrape
from bench.servers import Server, serve_env
from tests.service.conftest import TEST_LIMITS, Reference
from tests.service.test_http import assert_each_got_its_own, history, post, post_concurrently
from tests.service.tiny_model import MAX_HISTORY, MIN_HISTORY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def unbatched(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    env = {
        **serve_env(tiny_artifact, bentoml_home, batching="false"),
        **TEST_LIMITS,
    }
    with Server(env) as running:
        yield running


def bodies() -> list[Any]:
    rng = random.Random(11)
    lengths = [30, 4, 17, MAX_HISTORY + 9, 4, 9]
    many = [{"id": f"s{i}", "values": history(rng, n)} for i, n in enumerate(lengths)]
    return [
        {"series": [{"values": history(rng, 17)}]},
        {"series": many, "horizon": 4, "quantiles": [0.9, 0.1]},
        '{"series": [{"values": [1, 2, NaN, 4]}]}',
        '{"series": [{"values": [1, 2',
        {"series": [{"values": [1, 2, 3]}]},
        {"series": [{"values": [1.0] * 4}], "horizn": 3},
    ]


def test_unbatched_answers_exactly_like_the_batched_service(
    server: Server, unbatched: Server
) -> None:
    """Guards against the benchmark's no-batching mode drifting from the real service."""
    for body in bodies():
        batched, alone = post(server, body), post(unbatched, body)
        assert alone.status_code == batched.status_code, (body, alone.text)
        assert alone.headers["content-type"] == batched.headers["content-type"]
        want, got = batched.json(), alone.json()
        if batched.status_code != 200:
            assert got == want
            continue
        assert {k: v for k, v in got.items() if k != "forecasts"} == {
            k: v for k, v in want.items() if k != "forecasts"
        }
        for g, w in zip(got["forecasts"], want["forecasts"], strict=True):
            assert (g["id"], g["history_used"], g["truncated"]) == (
                w["id"],
                w["history_used"],
                w["truncated"],
            )
            scale = float(np.abs(w["point"]).max())
            np.testing.assert_allclose(g["point"], w["point"], rtol=1e-5, atol=1e-5 * scale)
            assert list(g["quantiles"]) == list(w["quantiles"])
            for q, values in w["quantiles"].items():
                np.testing.assert_allclose(g["quantiles"][q], values, rtol=1e-5, atol=1e-5 * scale)


def test_unbatched_concurrent_requests_get_their_own_pass_and_the_same_metrics(
    unbatched: Server, reference: Reference
) -> None:
    """Guards against the unbatched path merging requests or skipping a metric."""
    rng = random.Random(12)
    histories = [history(rng, rng.randint(MIN_HISTORY, MAX_HISTORY)) for _ in range(40)]
    before = scrape(unbatched)
    responses = post_concurrently(unbatched, histories)
    after = scrape(unbatched)
    assert_each_got_its_own(responses, histories, reference)

    def delta(name: str) -> float:
        return sample(after, name) - sample(before, name)

    # One single-series request, one forward pass of one row: nothing was merged.
    assert delta("forecaster_model_call_series_count") == 40
    assert delta("forecaster_model_call_series_sum") == 40
    assert delta("forecaster_forecast_series_total") == 40
    assert delta("forecaster_queue_wait_seconds_count") == 40
    assert delta("forecaster_model_compute_seconds_count") == 40

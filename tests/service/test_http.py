"""HTTP tests against a real `bentoml serve` of the tiny model (one server per session)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.metrics import labelled, sample, scrape
from bench.servers import Server, serve_env
from tests.service.conftest import Reference
from tests.service.tiny_model import HORIZON, MAX_HISTORY, MIN_HISTORY, NAME, QUANTILES, VERSION

pytestmark = pytest.mark.slow


def post(server: Server, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{server.url}/forecast", content=content, timeout=30, **kwargs)


def assert_matches(forecast: dict[str, Any], expected: np.ndarray, quantiles: list[float]) -> None:
    """`expected` is the in-process (H, Q) forecast of the series alone."""
    h = len(forecast["point"])
    scale = float(np.abs(expected).max())
    point = expected[:h, QUANTILES.index(0.5)]
    np.testing.assert_allclose(forecast["point"], point, rtol=1e-5, atol=1e-5 * scale)
    assert list(forecast["quantiles"]) == [str(q) for q in quantiles]
    for q in quantiles:
        got = forecast["quantiles"][str(q)]
        want = expected[:h, QUANTILES.index(q)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def history(rng: random.Random, length: int) -> list[float]:
    level = rng.uniform(10, 1000)
    return [round(level * (1 + 0.1 * rng.gauss(0, 1)), 3) for _ in range(length)]


def post_concurrently(server: Server, histories: list[list[float]]) -> list[httpx.Response]:
    """One single-series request per history, all in flight at once; series `i` has id `c<i>`."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(histories))
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/forecast", json={"series": [{"id": f"c{i}", "values": h}]})
                    for i, h in enumerate(histories)
                )
            )

    return asyncio.run(run())


def assert_each_got_its_own(
    responses: list[httpx.Response], histories: list[list[float]], reference: Reference
) -> None:
    """Every response is 200 and holds its own history's forecast (id and values)."""
    assert [r.status_code for r in responses] == [200] * len(histories), responses[0].text
    for i, (values, response) in enumerate(zip(histories, responses, strict=True)):
        [forecast] = response.json()["forecasts"]
        assert forecast["id"] == f"c{i}"
        assert_matches(forecast, reference(values), list(QUANTILES))


def test_single_series_equals_the_model_run_alone(server: Server, reference: Reference) -> None:
    values = history(random.Random(1), 17)
    response = post(server, {"series": [{"values": values}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": NAME, "version": VERSION}
    assert (body["horizon"], body["quantiles"]) == (HORIZON, list(QUANTILES))
    [forecast] = body["forecasts"]
    assert (forecast["id"], forecast["history_used"], forecast["truncated"]) == ("0", 17, False)
    assert_matches(forecast, reference(values), list(QUANTILES))


def test_many_series_come_back_in_request_order_with_their_ids(
    server: Server, reference: Reference
) -> None:
    """Guards against answers re-ordered by the length sort (ids would not match forecasts)."""
    rng = random.Random(2)
    lengths = [30, 4, 17, 40, 4, 9, 25, 12]
    series = [{"id": f"s{i}", "values": history(rng, n)} for i, n in enumerate(lengths)]
    response = post(server, {"series": series, "horizon": 4, "quantiles": [0.9, 0.1]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["horizon"], body["quantiles"]) == (4, [0.9, 0.1])
    assert [f["id"] for f in body["forecasts"]] == [s["id"] for s in series]
    for sent, forecast in zip(series, body["forecasts"], strict=True):
        assert len(forecast["point"]) == 4
        assert_matches(forecast, reference(sent["values"]), [0.9, 0.1])


def test_long_history_is_cut_to_its_most_recent_points(
    server: Server, reference: Reference
) -> None:
    values = history(random.Random(3), MAX_HISTORY + 25)
    response = post(server, {"series": [{"id": "long", "values": values}]})
    assert response.status_code == 200, response.text
    [forecast] = response.json()["forecasts"]
    assert (forecast["history_used"], forecast["truncated"]) == (MAX_HISTORY, True)
    assert_matches(forecast, reference(values[-MAX_HISTORY:]), list(QUANTILES))


def test_200_concurrent_clients_each_get_their_own_forecast(
    server: Server, reference: Reference
) -> None:
    """Guards against one request being answered with another's rows under batching."""
    rng = random.Random(4)
    histories = [history(rng, rng.randint(MIN_HISTORY, MAX_HISTORY)) for _ in range(200)]
    before = scrape(server)
    responses = post_concurrently(server, histories)
    after = scrape(server)
    assert_each_got_its_own(responses, histories, reference)
    calls = sample(after, "forecaster_model_call_series_count") - sample(
        before, "forecaster_model_call_series_count"
    )
    series = sample(after, "forecaster_model_call_series_sum") - sample(
        before, "forecaster_model_call_series_sum"
    )
    assert series == 200
    # A burst of 200 must be packed: far fewer forward passes than series.
    assert calls < 100, f"{calls} model calls for 200 series"


def test_model_card_and_probes(server: Server) -> None:
    card = httpx.get(f"{server.url}/model", timeout=10).json()
    assert (card["name"], card["version"], card["horizon"]) == (NAME, VERSION, HORIZON)
    assert (card["min_history"], card["max_history"]) == (MIN_HISTORY, MAX_HISTORY)
    assert card["quantiles"] == list(QUANTILES)
    assert card["evaluation"]["smape"] == 99.0
    assert card["limits"]["max_series_per_request"] == 50
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_openapi_describes_the_real_request_with_examples(server: Server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    text = json.dumps(spec)
    assert "/forecast" in spec["paths"]
    for name in ("SeriesIn", "ForecastResponse", "SeriesForecast"):
        assert name in text, name
    assert '"examples"' in text


ONE = '{"values": [1, 2, 3, 4, 5]}'


@pytest.mark.parametrize(
    ("body", "status", "error", "loc", "message"),
    [
        ('{"series": [{"values": [1, 2', 400, "malformed_json", "body", "not valid JSON"),
        ('{"series": "abc"}', 422, "validation_error", "series", "valid array"),
        (
            '{"series": [{"values": [1, 2, "x", 4]}]}',
            422,
            "validation_error",
            "series[0].values[2]",
            "valid number",
        ),
        ('{"series": []}', 422, "validation_error", "series", "at least 1 item"),
        (
            '{"series": [{"values": []}]}',
            422,
            "validation_error",
            "series[0].values",
            "at least 1 item",
        ),
        (
            '{"series": [{"values": [1, 2, 3]}]}',
            422,
            "validation_error",
            "series[0].values",
            "history needs at least 4 points, got 3",
        ),
        (
            f'{{"series": [{ONE}, {ONE}, {{"values": [1, 2, 3, 4, 5, NaN]}}]}}',
            422,
            "validation_error",
            "series[2].values[5]",
            "finite number",
        ),
        (
            '{"series": [{"values": [1, 2, 3, Infinity]}]}',
            422,
            "validation_error",
            "series[0].values[3]",
            "finite number",
        ),
        (
            '{"series": [{"values": [1, 2, null, 4]}]}',
            422,
            "validation_error",
            "series[0].values[2]",
            "valid number",
        ),
        (
            f'{{"series": [{ONE}], "horizon": 7}}',
            422,
            "validation_error",
            "horizon",
            "between 1 and the model's horizon 6",
        ),
        (
            f'{{"series": [{ONE}], "quantiles": [0.5, 0.25]}}',
            422,
            "validation_error",
            "quantiles[1]",
            "not served by this model",
        ),
        (
            json.dumps({"series": [{"values": [1.0] * 4}] * 51}),
            422,
            "validation_error",
            "series",
            "at most 50 series per request, got 51",
        ),
        (
            json.dumps({"series": [{"values": [1.0] * 1001}] * 2}),
            422,
            "validation_error",
            "series",
            "at most 2000 history points per request, got 2002",
        ),
    ],
)
def test_client_mistakes_get_a_4xx_naming_field_rule_and_value(
    server: Server, body: str, status: int, error: str, loc: str, message: str
) -> None:
    response = post(server, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["error"] == error
    assert message in payload["message"]
    if status == 422:
        assert payload["detail"][0]["loc"] == loc
        assert payload["message"].startswith(f"{loc}: ")
        assert "value" in payload["detail"][0] and payload["detail"][0]["rule"]


def test_body_over_the_size_limit_is_413(server: Server) -> None:
    body = json.dumps({"series": [{"values": [123456.789] * 4000}] * 2})
    assert len(body) > 65536
    response = post(server, body)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert response.json()["message"] == f"request body is {len(body)} B; the limit is 65536 B"


def test_bad_requests_do_not_disturb_concurrent_good_ones(
    server: Server, reference: Reference
) -> None:
    """Guards against one bad series failing the other requests that share its batch."""
    rng = random.Random(5)
    good = [history(rng, rng.randint(MIN_HISTORY, MAX_HISTORY)) for _ in range(30)]
    bad = ['{"series": [{"values": [1, 2, NaN, 4]}]}', '{"series": [{"values": [1]}]}'] * 15

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            ok = [client.post("/forecast", json={"series": [{"values": v}]}) for v in good]
            ko = [client.post("/forecast", content=b) for b in bad]
            results = await asyncio.gather(*[x for pair in zip(ok, ko, strict=True) for x in pair])
            return list(results[0::2]), list(results[1::2])

    ok, ko = asyncio.run(run())
    assert [r.status_code for r in ko] == [422] * 30
    assert [r.status_code for r in ok] == [200] * 30
    for values, response in zip(good, ok, strict=True):
        assert_matches(response.json()["forecasts"][0], reference(values), list(QUANTILES))


def test_metrics_move_by_exactly_what_was_sent(server: Server) -> None:
    """Guards against counters that double count, miss batches or mislabel rejections."""
    rng = random.Random(6)
    before = scrape(server)
    for n in (1, 2, 4):
        series = [{"values": history(rng, 10)} for _ in range(n)]
        assert post(server, {"series": series}).status_code == 200
    long = {"series": [{"values": history(rng, MAX_HISTORY + 1)}]}
    assert post(server, long).status_code == 200
    assert post(server, "{").status_code == 400
    assert post(server, '{"series": []}').status_code == 422
    after = scrape(server)

    def delta(name: str, labels: str = "") -> float:
        return sample(after, name, labels) - sample(before, name, labels)

    assert delta("forecaster_forecast_series_total") == 8
    assert delta("forecaster_truncated_series_total") == 1
    assert delta("forecaster_history_length_points_count") == 8
    assert delta("forecaster_history_length_points_sum") == 7 * 10 + MAX_HISTORY + 1
    assert delta("forecaster_model_call_series_sum") == 8
    assert delta("forecaster_model_call_series_count") >= 4
    assert delta("forecaster_queue_wait_seconds_count") == 4
    assert delta("forecaster_model_compute_seconds_count") >= 4
    assert delta("forecaster_rejections_total", '{reason="malformed_json"}') == 1
    assert delta("forecaster_rejections_total", '{reason="validation_error"}') == 1
    assert delta("forecaster_requests_total", '{code="200"}') == 4
    assert delta("forecaster_requests_total", '{code="400"}') == 1
    assert delta("forecaster_requests_total", '{code="422"}') == 1
    assert delta("forecaster_request_duration_seconds_count", '{code="200"}') == 4
    assert sample(after, "forecaster_requests_in_progress") == 0
    info = f'{{model="{NAME}",version="{VERSION}"}}'
    assert sample(after, "forecaster_model_info", info) == 1
    # BentoML's own metrics (its other routes, process) stay on the same page.
    assert "bentoml_service_request_total" in after


def endpoints_seen_by_bentoml(metrics_text: str) -> set[str]:
    """Routes that BentoML's traffic metrics counted at least once (it lists some at 0)."""
    counted = labelled(metrics_text, "bentoml_service_request_total")
    return {labels["endpoint"] for labels, count in counted if count > 0}


def test_forecast_is_answered_before_bentoml_http_layers(server: Server) -> None:
    """Guards against BentoML's per-request layers (its traffic metrics, timeout, tracing:
    about 35 us a request) running on /forecast again; other routes still pass them."""
    assert post(server, {"series": [{"values": [1.0] * MIN_HISTORY}]}).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    seen = endpoints_seen_by_bentoml(scrape(server))
    assert "/forecast" not in seen
    assert "/readyz" in seen


def test_with_the_access_log_on_forecast_requests_are_logged(
    tiny_artifact: Path, bentoml_home: Path
) -> None:
    """The access log (and tracing) need BentoML's layers to see /forecast: the guard then
    sits inside them."""
    env = serve_env(tiny_artifact, bentoml_home, access_log="true")
    with Server(env) as logged:
        assert post(logged, {"series": [{"values": [1.0] * MIN_HISTORY}]}).status_code == 200
        assert "/forecast" in endpoints_seen_by_bentoml(scrape(logged))
        log = logged.tail(20000)
    assert re.search(r"method=POST,path=/forecast.*status=200", log), log[-2000:]


def test_a_body_that_stops_arriving_gets_504_and_the_connection_is_closed(
    tiny_artifact: Path, bentoml_home: Path
) -> None:
    """Guards against a trickling client holding a connection and its buffer for ever."""
    env = serve_env(tiny_artifact, bentoml_home, request_timeout_s="1")
    with Server(env) as running, socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(
            b"POST /forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"series": ['
        )
        sock.settimeout(10)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):  # until the server closes
            received += chunk
        waited = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504"), received[:300]
    assert json.loads(body)["error"] == "timeout"
    assert 1.0 <= waited < 5.0

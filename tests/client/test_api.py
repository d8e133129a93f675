"""Client and AsyncClient against stub servers (httpx.MockTransport): retries, errors, bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from client import AsyncClient, Client, ErrorDetail, ForecastError, Series
from client.api import retry_after_s

URL = "http://forecaster.test"
ANSWER = {
    "model": {"name": "tiny", "version": "v1"},
    "horizon": 2,
    "quantiles": [0.1, 0.5, 0.9],
    "forecasts": [
        {
            "id": "a",
            "point": [1.5, 2.5],
            "quantiles": {"0.1": [1.0, 2.0], "0.5": [1.5, 2.5], "0.9": [2.0, 3.0]},
            "history_used": 4,
            "truncated": False,
        }
    ],
}
CARD = {
    "name": "m 1",
    "version": "v",
    "horizon": 6,
    "quantiles": [0.5],
    "frequency": "monthly",
    "min_history": 4,
    "max_history": 40,
    "limits": {"max_series_per_request": 50, "max_points_per_request": 2000},
}
OVERLOADED = {"error": "overloaded", "message": "waited 2000 ms in the queue", "detail": []}
INVALID = {
    "error": "validation_error",
    "message": "series[0].values: history needs at least 4 points, got 2",
    "detail": [
        {
            "loc": "series[0].values",
            "rule": "min_history",
            "message": "history needs at least 4 points, got 2",
            "value": 2,
        }
    ],
}


class Stub:
    """A scripted server: answers `responses` in turn (the last one again once they run
    out) and records every request it got."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def reply(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def client(stub: Stub, sleeps: list[float], **kwargs: Any) -> Client:
    return Client(URL, transport=httpx.MockTransport(stub), sleep=sleeps.append, **kwargs)


def test_503_is_retried_after_its_retry_after_then_answered() -> None:
    """Guards against a client that gives up on the first 503, or retries at once and
    hammers a server that asked for 2 s of quiet."""
    stub = Stub(reply(503, OVERLOADED, **{"Retry-After": "2"}), reply(200, ANSWER))
    sleeps: list[float] = []
    with client(stub, sleeps) as service:
        result = service.forecast([[1, 2, 3, 4]])
    assert sleeps == [2.0]
    assert len(stub.requests) == 2
    assert result.forecasts[0].point == [1.5, 2.5]


def test_503_retries_stop_after_the_bound_and_raise_the_503() -> None:
    """Guards against retrying forever (or one time too many, or too few) against a
    server that stays overloaded: `retries=3` is 4 requests and 3 waits, then the 503."""
    stub = Stub(reply(503, OVERLOADED, **{"Retry-After": "1"}))
    sleeps: list[float] = []
    with client(stub, sleeps, retries=3) as service, pytest.raises(ForecastError) as caught:
        service.forecast([[1, 2, 3, 4]])
    assert len(stub.requests) == 4
    assert sleeps == [1.0, 1.0, 1.0]
    assert (caught.value.status, caught.value.reason) == (503, "overloaded")
    assert caught.value.message == "waited 2000 ms in the queue"


def test_retry_after_is_capped_and_defaults_to_one_second() -> None:
    """Guards against a Retry-After of an hour stalling a batch for an hour, and against
    a 503 without the header being retried at once."""
    stub = Stub(
        reply(503, OVERLOADED, **{"Retry-After": "3600"}),
        reply(503, OVERLOADED),
        reply(200, ANSWER),
    )
    sleeps: list[float] = []
    with client(stub, sleeps, backoff_cap=5.0) as service:
        service.forecast([[1, 2, 3, 4]])
    assert sleeps == [5.0, 1.0]


def test_retry_after_as_an_http_date() -> None:
    """Guards against a Retry-After written as a date (RFC 9110 allows it) crashing the client."""
    past = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_s(past, default=1.0) == 0.0
    assert retry_after_s(httpx.Response(503, headers={"Retry-After": "soon"}), 1.0) == 1.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, INVALID),
        (401, {"error": "unauthorized", "message": "missing or wrong bearer token"}),
        (413, {"error": "body_too_large", "message": "body over 2000000 bytes"}),
        (404, {"error": "unknown_model", "message": "no model 'x'; served: tiny, other"}),
        (500, {"error": "model_error", "message": "the model failed; see server log"}),
    ],
)
def test_other_errors_raise_at_once_without_a_retry(status: int, body: dict[str, Any]) -> None:
    """Guards against resending a request the server refused on its merits: a 422 sent
    again is refused again, a wrong token four times looks like an attack."""
    stub = Stub(reply(status, body), reply(200, ANSWER))
    sleeps: list[float] = []
    with client(stub, sleeps) as service, pytest.raises(ForecastError) as caught:
        service.forecast([[1, 2]])
    assert len(stub.requests) == 1
    assert sleeps == []
    assert (caught.value.status, caught.value.reason) == (status, body["error"])
    assert caught.value.message == body["message"]
    assert str(caught.value) == f"{status} {body['error']}: {body['message']}"


def test_a_422_keeps_the_detail_and_names_the_refused_series() -> None:
    """Guards against a client that loses which series and which rule the service named."""
    stub = Stub(reply(422, INVALID))
    with client(stub, []) as service, pytest.raises(ForecastError) as caught:
        service.forecast([[1, 2]])
    detail = ErrorDetail("series[0].values", "min_history", INVALID["detail"][0]["message"], 2)
    assert caught.value.detail == [detail]
    assert caught.value.refused_series() == {0: [detail]}
    assert detail.field() == "values"


def test_a_422_on_the_request_as_a_whole_names_no_series() -> None:
    """Guards against the batch command dropping innocent series for a request-wide rule
    (a horizon out of range) or for a field the server does not know (a version mismatch)."""
    horizon = {
        "error": "validation_error",
        "message": "horizon: out of range",
        "detail": [{"loc": "horizon", "rule": "horizon_range", "message": "m", "value": 99}],
    }
    extra = {
        "error": "validation_error",
        "message": "series[0].start: Extra inputs are not permitted",
        "detail": [{"loc": "series[0].start", "rule": "extra_forbidden", "message": "m"}],
    }
    for body in (horizon, extra):
        with client(Stub(reply(422, body)), []) as service, pytest.raises(ForecastError) as e:
            service.forecast([[1, 2, 3, 4]])
        assert e.value.refused_series() is None


def test_an_error_page_that_is_not_the_services_json_is_still_a_forecast_error() -> None:
    """Guards against a proxy's HTML 502 surfacing as a JSON decoding traceback."""
    stub = Stub(httpx.Response(502, text="<html>Bad Gateway</html>\n<body>...</body>"))
    with client(stub, []) as service, pytest.raises(ForecastError) as caught:
        service.model()
    assert (caught.value.status, caught.value.reason) == (502, "http_502")
    assert caught.value.message == "<html>Bad Gateway</html>"


def test_connection_errors_are_retried_with_a_capped_backoff_then_reported() -> None:
    """Guards against a client that hangs or retries without bound on a server that is
    down, and one whose error does not say which URL it could not reach."""
    stub = Stub(httpx.ConnectError("Connection refused"))
    sleeps: list[float] = []
    service = client(stub, sleeps, retries=4, backoff_cap=1.5)
    with service, pytest.raises(ForecastError) as caught:
        service.forecast([[1, 2, 3, 4]])
    assert len(stub.requests) == 5
    assert sleeps == [0.5, 1.0, 1.5, 1.5]
    assert (caught.value.status, caught.value.reason) == (None, "unreachable")
    assert caught.value.message == (
        f"no answer from {URL}/forecast after 5 attempts (ConnectError: Connection refused)"
    )


def test_a_timeout_is_retried_then_reported_as_a_timeout() -> None:
    """Guards against a slow server's timeout reading as "unreachable", or not retried."""
    stub = Stub(httpx.ReadTimeout("timed out"), reply(200, ANSWER))
    sleeps: list[float] = []
    with client(stub, sleeps) as service:
        assert service.forecast([[1, 2, 3, 4]]).horizon == 2
    assert sleeps == [0.5]
    stub = Stub(httpx.ReadTimeout("timed out"))
    with client(stub, [], retries=1) as service, pytest.raises(ForecastError) as caught:
        service.forecast([[1, 2, 3, 4]])
    assert caught.value.reason == "timeout"


def test_a_real_closed_port_is_unreachable_after_the_retries() -> None:
    """Guards against the retry path only working with the stub's exceptions."""
    from bench.servers import free_port

    sleeps: list[float] = []
    service = Client(f"http://127.0.0.1:{free_port()}", retries=2, sleep=sleeps.append)
    with service, pytest.raises(ForecastError) as caught:
        service.model()
    assert caught.value.reason == "unreachable"
    assert sleeps == [0.5, 1.0]


def test_the_token_is_sent_as_a_bearer_header_and_no_header_without_one() -> None:
    """Guards against a token that never reaches the server (every request a 401)."""
    stub = Stub(reply(200, ANSWER), reply(200, CARD), reply(200, ANSWER))
    with client(stub, [], token="s3cret") as service:
        service.forecast([[1, 2, 3, 4]])
        service.model()
    assert [r.headers["Authorization"] for r in stub.requests] == ["Bearer s3cret"] * 2
    with client(stub, []) as service:
        service.forecast([[1, 2, 3, 4]])
    assert "Authorization" not in stub.requests[-1].headers


@dataclass
class Row:
    values: list[float]
    id: str


def test_only_the_options_given_are_sent_and_every_series_form_is_accepted() -> None:
    """Guards against sending `levels: null` or `model: null` (the server refuses unknown
    fields), and against series forms that lose their id, start or values."""
    stub = Stub(reply(200, ANSWER))
    with client(stub, []) as service:
        service.forecast([[1, 2, 3, 4]])
        service.forecast(
            [
                (1.0, 2.0, 3.0, 4.0),
                {"id": "b", "values": [5, 6, 7, 8], "start": "2024-01-31"},
                Series([9, 10, 11, 12], id="c", frequency="M"),
                Row([13.5, 14, 15, 16], "d"),
            ],
            horizon=2,
            quantiles=[0.1, 0.9],
            levels=[80, 95],
            model="tiny",
            frequency="M",
        )
    assert stub.bodies() == [
        {"series": [{"values": [1.0, 2.0, 3.0, 4.0]}]},
        {
            "series": [
                {"values": [1.0, 2.0, 3.0, 4.0]},
                {"values": [5.0, 6.0, 7.0, 8.0], "id": "b", "start": "2024-01-31"},
                {"values": [9.0, 10.0, 11.0, 12.0], "id": "c", "frequency": "M"},
                {"values": [13.5, 14.0, 15.0, 16.0], "id": "d"},
            ],
            "horizon": 2,
            "quantiles": [0.1, 0.9],
            "levels": [80, 95],
            "model": "tiny",
            "frequency": "M",
        },
    ]
    assert all(r.headers["Content-Type"] == "application/json" for r in stub.requests)


def test_values_are_not_coerced_from_strings() -> None:
    """Guards against "1.5" silently becoming 1.5 in the client when the service itself
    refuses it as a type error."""
    with client(Stub(reply(200, ANSWER)), []) as service, pytest.raises(TypeError):
        service.forecast([["1.5", 2, 3, 4]])  # type: ignore[list-item]


def test_answers_become_typed_results() -> None:
    """Guards against optional answer fields (timestamps, intervals) breaking the parse
    when present or when absent."""
    with_new = json.loads(json.dumps(ANSWER))
    with_new["forecasts"][0]["timestamps"] = ["2024-02-29", "2024-03-31"]
    with_new["forecasts"][0]["intervals"] = {"lo-80": [1.0, 2.0], "hi-80": [2.0, 3.0]}
    with client(Stub(reply(200, ANSWER), reply(200, with_new)), []) as service:
        old = service.forecast([[1, 2, 3, 4]]).forecasts[0]
        new = service.forecast([[1, 2, 3, 4]], levels=[80]).forecasts[0]
    assert (old.timestamps, old.intervals) == (None, None)
    assert old.quantile(0.9) == [2.0, 3.0]
    assert new.timestamps == ["2024-02-29", "2024-03-31"]
    assert new.intervals == {"lo-80": [1.0, 2.0], "hi-80": [2.0, 3.0]}


def test_model_cards_come_from_model_and_models() -> None:
    """Guards against asking the wrong path for a named model (or an unquoted name)."""
    listing = {"default": "m 1", "models": [CARD]}
    stub = Stub(reply(200, CARD), reply(200, CARD), reply(200, listing))
    with client(stub, []) as service:
        default = service.model()
        named = service.model("m 1")
        listed = service.models()
    assert [r.url.raw_path for r in stub.requests] == [b"/model", b"/models/m%201", b"/models"]
    assert default == named == listed.models[0]
    assert (default.limits.max_series_per_request, default.limits.max_body_bytes) == (50, None)
    assert listed.default == "m 1"


def async_client(stub: Stub, sleeps: list[float], **kwargs: Any) -> AsyncClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        return stub(request)

    transport = httpx.MockTransport(handler)
    return AsyncClient(URL, transport=transport, sleep=sleep, **kwargs)


def run(coroutine: Callable[[], Any]) -> Any:
    return asyncio.run(coroutine())


def test_async_client_retries_the_same_way() -> None:
    """Guards against the async client drifting from the sync one: same bound, same waits,
    same token header, no retry on a 422."""
    stub = Stub(reply(503, OVERLOADED, **{"Retry-After": "2"}))
    sleeps: list[float] = []

    async def overloaded() -> None:
        async with async_client(stub, sleeps, retries=2, token="t") as service:
            await service.forecast([[1, 2, 3, 4]])

    with pytest.raises(ForecastError) as caught:
        run(overloaded)
    assert caught.value.status == 503
    assert sleeps == [2.0, 2.0]
    assert [r.headers["Authorization"] for r in stub.requests] == ["Bearer t"] * 3

    refused = Stub(reply(422, INVALID), reply(200, ANSWER))

    async def invalid() -> None:
        async with async_client(refused, []) as service:
            await service.forecast([[1, 2]])

    with pytest.raises(ForecastError):
        run(invalid)
    assert len(refused.requests) == 1

    answered = Stub(reply(503, OVERLOADED), reply(200, ANSWER))

    async def recovered() -> Any:
        async with async_client(answered, []) as service:
            return await service.forecast([[1, 2, 3, 4]])

    assert run(recovered).forecasts[0].id == "a"

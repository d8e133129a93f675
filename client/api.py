"""`Client` and `AsyncClient`: the service's HTTP API as typed calls, with bounded retries.

What is retried, by both, with the same `RetryPolicy`:

- a 503 (`overloaded`, `queue_full`): after its `Retry-After` seconds (1 s when absent),
  capped at `backoff_cap`;
- a connection that fails or times out: after 0.5 s, 1 s, 2 s, ... capped at `backoff_cap`
  (a forecast is a pure function of its body, so sending it again is safe).

At most `retries` times each call, then the last error is raised as `ForecastError`.
Every other error (401, 404, 413, 422, 500, 504) is raised at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import quote

import httpx

from client.errors import ForecastError
from client.request import SeriesLike, encode_body, encode_series, options
from client.results import ForecastResult, ModelCard, ModelList

JSON_HEADERS = {"Content-Type": "application/json"}


def retry_after_s(response: httpx.Response, default: float) -> float:
    """The wait a `Retry-After` header asks for, in seconds: a number or an HTTP date."""
    header = response.headers.get("Retry-After")
    if header is None:
        return default
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long, a call is sent again."""

    retries: int = 3
    backoff_cap: float = 10.0  # seconds, the longest single wait
    default_retry_after: float = 1.0  # a 503 without Retry-After
    first_backoff: float = 0.5  # after the first failed connection

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_cap < 0:
            raise ValueError(f"retries and backoff_cap must be >= 0, got {self}")

    def wait(
        self,
        attempt: int,
        response: httpx.Response | None = None,
        error: httpx.TransportError | None = None,
    ) -> float:
        """Seconds to wait before attempt `attempt + 1` after attempt `attempt` (0-based)
        got `response` or `error`; raises the `ForecastError` to give up with instead."""
        if error is not None:
            if attempt >= self.retries or not isinstance(error, RETRIED_ERRORS):
                raise unreachable(error, attempt + 1) from error
            return min(self.first_backoff * 2.0**attempt, self.backoff_cap)
        assert response is not None  # one of the two, by every caller
        if response.status_code != 503 or attempt >= self.retries:
            raise ForecastError.from_response(response)
        return min(retry_after_s(response, self.default_retry_after), self.backoff_cap)


# Worth another try: the server may be starting, restarting or briefly swamped.
RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def unreachable(error: httpx.TransportError, attempts: int) -> ForecastError:
    reason = "timeout" if isinstance(error, httpx.TimeoutException) else "unreachable"
    url = error.request.url if _has_request(error) else "the server"
    what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    return ForecastError(None, reason, f"no answer from {url} {tries} ({what})")


def _has_request(error: httpx.TransportError) -> bool:
    try:
        error.request  # noqa: B018 (raises RuntimeError when the error carries none)
    except RuntimeError:
        return False
    return True


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _forecast_body(
    series: Sequence[SeriesLike],
    horizon: int | None,
    quantiles: Sequence[float] | None,
    levels: Sequence[float] | None,
    model: str | None,
    frequency: str | None,
) -> bytes:
    fields = options(horizon, quantiles, levels, model, frequency)
    return encode_body([encode_series(s) for s in series], fields)


def _model_path(name: str | None) -> str:
    return "/model" if name is None else f"/models/{quote(name, safe='')}"


class Client:
    """The forecaster service at `url`; thread-safe, one connection pool for all calls.

    `token` is sent as `Authorization: Bearer <token>`; `timeout` bounds each attempt
    (seconds); see the module docstring for `retries` and `backoff_cap`. `transport` and
    `sleep` are for tests (an `httpx.MockTransport`, a recorded sleep).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_cap: float = 10.0,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = RetryPolicy(retries=retries, backoff_cap=backoff_cap)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport
        )

    def forecast(
        self,
        series: Sequence[SeriesLike],
        horizon: int | None = None,
        quantiles: Sequence[float] | None = None,
        levels: Sequence[float] | None = None,
        model: str | None = None,
        frequency: str | None = None,
    ) -> ForecastResult:
        """Forecast each series (a list of values, a dict or a `Series`), in order."""
        body = _forecast_body(series, horizon, quantiles, levels, model, frequency)
        return self.forecast_body(body)

    def forecast_body(self, body: bytes) -> ForecastResult:
        """`POST /forecast` with a body already encoded (`client.request.encode_body`)."""
        return ForecastResult.from_json(self._call("POST", "/forecast", body).json())

    def models(self) -> ModelList:
        """`GET /models`: every served model."""
        return ModelList.from_json(self._call("GET", "/models").json())

    def model(self, name: str | None = None) -> ModelCard:
        """The card of model `name` (`GET /models/{name}`), or of the default (`GET /model`)."""
        return ModelCard.from_json(self._call("GET", _model_path(name)).json())

    def _call(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        headers = JSON_HEADERS if body is not None else None
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, content=body, headers=headers)
            except httpx.TransportError as error:
                wait = self.policy.wait(attempt, error=error)
            else:
                if response.is_success:
                    return response
                wait = self.policy.wait(attempt, response=response)
            self._sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """`Client` for asyncio: the same calls, awaited, with the same retries."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_cap: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = RetryPolicy(retries=retries, backoff_cap=backoff_cap)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(token), timeout=timeout, transport=transport
        )

    async def forecast(
        self,
        series: Sequence[SeriesLike],
        horizon: int | None = None,
        quantiles: Sequence[float] | None = None,
        levels: Sequence[float] | None = None,
        model: str | None = None,
        frequency: str | None = None,
    ) -> ForecastResult:
        """Forecast each series (a list of values, a dict or a `Series`), in order."""
        body = _forecast_body(series, horizon, quantiles, levels, model, frequency)
        return await self.forecast_body(body)

    async def forecast_body(self, body: bytes) -> ForecastResult:
        """`POST /forecast` with a body already encoded (`client.request.encode_body`)."""
        return ForecastResult.from_json((await self._call("POST", "/forecast", body)).json())

    async def models(self) -> ModelList:
        """`GET /models`: every served model."""
        return ModelList.from_json((await self._call("GET", "/models")).json())

    async def model(self, name: str | None = None) -> ModelCard:
        """The card of model `name` (`GET /models/{name}`), or of the default (`GET /model`)."""
        return ModelCard.from_json((await self._call("GET", _model_path(name))).json())

    async def _call(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        headers: Mapping[str, str] | None = JSON_HEADERS if body is not None else None
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, content=body, headers=headers)
            except httpx.TransportError as error:
                wait = self.policy.wait(attempt, error=error)
            else:
                if response.is_success:
                    return response
                wait = self.policy.wait(attempt, response=response)
            await self._sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

"""A Python client for the forecaster service, and a batch command for CSV files.

Install with the `client` extra (`pip install "forecaster[client]"`, which brings httpx).

    from client import Client, ForecastError, Series

    with Client("http://127.0.0.1:3000", token=None) as service:
        result = service.forecast(
            [[112, 118, 132, 129, 121, 135], {"id": "b", "values": [5, 7, 6, 8, 9, 8]}],
            horizon=6,
            quantiles=[0.1, 0.9],
        )
        for f in result.forecasts:
            print(f.id, f.point, f.quantile(0.9))
        card = service.model()  # GET /model: horizon, quantiles, min/max history, limits
        try:
            service.forecast([[1.0, 2.0]])  # shorter than the model's min_history
        except ForecastError as exc:
            print(exc.status, exc.reason, exc.message, exc.detail[0].loc)

A series is a list of values (oldest first), a dict with `values` and optionally `id`,
`start` (the first value's timestamp, ISO) and `frequency`, or any object with those
attributes (`client.Series`). `forecast` sends only the options given: `horizon`,
`quantiles`, `levels` (prediction intervals, answered as `intervals["lo-80"]`), `model`
(a served model's name, `GET /models`), `frequency`. `AsyncClient` has the same calls,
awaited.

A 503 (`overloaded`, `queue_full`) is retried after its `Retry-After` (capped at
`backoff_cap` seconds), a failed connection or timeout after a growing backoff, at most
`retries` times; then, like every other error at once, it raises `ForecastError` with
`status` (None when no answer came), `reason` (the service's `error`), `message` and
`detail` (`ErrorDetail(loc, rule, message, value)`).

Batch forecasts of a long-format CSV file (details: `python -m client forecast --help`
and client/__main__.py):

    .venv/bin/python -m client forecast --url http://127.0.0.1:3000 \\
        --csv history.csv --out forecasts.csv --levels 80 95 --concurrency 4
"""

from client.api import AsyncClient, Client, RetryPolicy
from client.errors import ErrorDetail, ForecastError
from client.request import Series
from client.results import ForecastResult, Limits, ModelCard, ModelList, ModelRef, SeriesForecast

__all__ = [
    "AsyncClient",
    "Client",
    "ErrorDetail",
    "ForecastError",
    "ForecastResult",
    "Limits",
    "ModelCard",
    "ModelList",
    "ModelRef",
    "RetryPolicy",
    "Series",
    "SeriesForecast",
]

"""Request and response shapes, and the rules a request must meet for the loaded model.

Pydantic checks structure and types (strict floats, no NaN/Infinity/null); `check_limits`
then checks what depends on the model and the settings (history length, horizon,
quantiles, sizes), so each error names its field path, its rule and the value received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from service.errors import FieldError, from_validation_error, validation_failed

# Strict: "1.5", true and null are type errors, not silently coerced; ints are fine.
Value = Annotated[float, Field(strict=True, allow_inf_nan=False)]

EXAMPLE_VALUES: list[JsonValue] = [112.0, 118.0, 132.0, 129.0, 121.0, 135.0, 148.0]
EXAMPLE_VALUES += [148.0, 136.0, 119.0, 104.0]
EXAMPLE_VALUES += [118.0, 115.0, 126.0, 141.0, 135.0, 125.0, 149.0, 170.0, 170.0, 158.0]


class SeriesIn(BaseModel):
    """One history to forecast."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None,
        max_length=200,
        description="Echoed back with the forecast; defaults to the series' index as text.",
        examples=["store-17"],
    )
    values: list[Value] = Field(
        min_length=1,
        description=(
            "Observed history, oldest first, equally spaced. Longer than the model's "
            "max_history: only the most recent max_history points are used."
        ),
        examples=[EXAMPLE_VALUES],
    )


class ForecastRequest(BaseModel):
    """Body of POST /forecast."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"series": [{"values": EXAMPLE_VALUES}]},
                {
                    "series": [
                        {"id": "a", "values": EXAMPLE_VALUES},
                        {"id": "b", "values": EXAMPLE_VALUES[:14]},
                    ],
                    "horizon": 6,
                    "quantiles": [0.1, 0.9],
                },
            ]
        },
    )

    series: list[SeriesIn] = Field(min_length=1, description="Series, answered in this order.")
    horizon: int | None = Field(
        default=None, strict=True, description="Steps to forecast; default the model's horizon."
    )
    quantiles: list[Value] | None = Field(
        default=None, description="Subset of the model's quantiles; default all of them."
    )


class SeriesForecast(BaseModel):
    """The forecast of one series."""

    id: str
    point: list[float] = Field(description="Median (0.5 quantile) forecast, `horizon` steps.")
    quantiles: dict[str, list[float]] = Field(
        description='Requested quantiles, keyed by their text form ("0.1"), `horizon` steps each.'
    )
    history_used: int = Field(description="Points of the history the model saw.")
    truncated: bool = Field(description="True when the history was cut to max_history points.")


class ModelRef(BaseModel):
    name: str
    version: str


class ForecastResponse(BaseModel):
    """Body of a 200 from POST /forecast."""

    model: ModelRef
    horizon: int
    quantiles: list[float]
    forecasts: list[SeriesForecast]


class ErrorDetail(BaseModel):
    loc: str = Field(examples=["series[0].values[3]"])
    rule: str = Field(examples=["finite_number"])
    message: str
    value: Any = None


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx the service itself answers."""

    error: str = Field(examples=["validation_error"])
    message: str
    detail: list[ErrorDetail] = []


@dataclass(frozen=True)
class Limits:
    """What a request may ask of the loaded model, from its metadata and the settings."""

    horizon: int
    quantiles: tuple[float, ...]
    min_history: int
    max_history: int
    max_series: int
    max_points: int
    max_abs_value: float


def parse_request(body: bytes, limits: Limits) -> ForecastRequest:
    """Validate a raw body: `ClientError` 400 if it is not JSON, 422 for any broken rule."""
    try:
        request = ForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return check_request(request, limits)


def check_request(request: ForecastRequest, limits: Limits) -> ForecastRequest:
    """The request itself if it keeps every limit; `ClientError` 422 listing all it breaks."""
    problems = check_limits(request, limits)
    if problems:
        raise validation_failed(problems)
    return request


def check_limits(request: ForecastRequest, limits: Limits) -> list[FieldError]:
    """Every model- and settings-dependent rule the request breaks, in field order."""
    problems: list[FieldError] = []
    n = len(request.series)
    if n > limits.max_series:
        msg = f"at most {limits.max_series} series per request, got {n}"
        problems.append(FieldError("series", "max_series", msg, n))
    if request.horizon is not None and not 1 <= request.horizon <= limits.horizon:
        msg = f"horizon must be between 1 and the model's horizon {limits.horizon}"
        problems.append(FieldError("horizon", "horizon_range", msg, request.horizon))
    if request.quantiles is not None:
        if not request.quantiles:
            msg = f"quantiles must not be empty; the model has {list(limits.quantiles)}"
            problems.append(FieldError("quantiles", "min_length", msg, []))
        for i, q in enumerate(request.quantiles):
            if q not in limits.quantiles:
                msg = f"quantile not served by this model; choose from {list(limits.quantiles)}"
                problems.append(FieldError(f"quantiles[{i}]", "known_quantile", msg, q))
    total = 0
    for i, item in enumerate(request.series):
        length = len(item.values)
        total += length
        if length < limits.min_history:
            msg = f"history needs at least {limits.min_history} points, got {length}"
            problems.append(FieldError(f"series[{i}].values", "min_history", msg, length))
        arr = np.asarray(item.values)
        over = np.flatnonzero(np.abs(arr) > limits.max_abs_value)
        if over.size:
            j = int(over[0])
            msg = f"|value| must be at most {limits.max_abs_value:g}"
            problems.append(
                FieldError(f"series[{i}].values[{j}]", "max_abs_value", msg, float(arr[j]))
            )
    if total > limits.max_points:
        msg = f"at most {limits.max_points} history points per request, got {total}"
        problems.append(FieldError("series", "max_points", msg, total))
    return problems

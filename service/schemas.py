"""Request and response shapes, and the rules a request must meet for the loaded model.

Pydantic checks structure and types (strict floats, no NaN/Infinity/null); `check_limits`
then checks what depends on the model and the settings (history length, horizon,
quantiles, sizes), so each error names its field path, its rule and the value received.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from contract.frequency import Frequency, parse_frequency, parse_start, step_timestamps
from service.errors import FieldError, from_validation_error, validation_failed

# Strict: "1.5", true and null are type errors, not silently coerced; ints are fine.
Value = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _frequency(value: Any) -> Any:
    """A frequency's code or long name as its `Frequency`; the rule `frequency` otherwise."""
    if not isinstance(value, str):
        return value  # the enum check reports the type
    try:
        return parse_frequency(value)
    except ValueError as exc:
        raise PydanticCustomError("frequency", str(exc)) from None


def _start(value: str) -> str:
    """An ISO 8601 date or datetime, kept as sent (parsed again only to step from it)."""
    try:
        parse_start(value)
    except ValueError as exc:
        raise PydanticCustomError("iso_timestamp", str(exc)) from None
    return value


FrequencyIn = Annotated[
    Frequency,
    BeforeValidator(_frequency),
    Field(description="S, T (minute), H, D, W, M, Q, Y, or SECOND ... YEAR.", examples=["M"]),
]
Start = Annotated[str, AfterValidator(_start)]


def _level(value: float) -> float:
    # Checked here rather than as gt/lt bounds: BentoML's OpenAPI 3.0 document cannot
    # carry JSON Schema's numeric exclusiveMinimum/exclusiveMaximum.
    if not 0 < value < 100:
        raise PydanticCustomError("level_range", "a level is a percentage between 0 and 100")
    return value


Level = Annotated[float, Field(strict=True, allow_inf_nan=False), AfterValidator(_level)]

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
    start: Start | None = Field(
        default=None,
        max_length=64,
        description=(
            "ISO 8601 date or datetime of the first value; the forecast then carries each "
            "step's timestamp."
        ),
        examples=["2020-01-31"],
    )
    frequency: FrequencyIn | None = Field(
        default=None, description="This series' frequency; default the request's."
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
    levels: list[Level] | None = Field(
        default=None,
        description="Central prediction intervals, in percent: 80 gives lo-80 and hi-80.",
    )
    model: str | None = Field(
        default=None, max_length=200, description="Model to use (GET /models); default the default."
    )
    frequency: FrequencyIn | None = Field(
        default=None, description="Frequency of every series that gives none of its own."
    )


class SeriesForecast(BaseModel):
    """The forecast of one series."""

    id: str
    point: list[float] = Field(description="Median (0.5 quantile) forecast, `horizon` steps.")
    quantiles: dict[str, list[float]] = Field(
        description='Requested quantiles, keyed by their text form ("0.1"), `horizon` steps each.'
    )
    timestamps: list[str] | None = Field(
        default=None, description="Each step's timestamp; only for a series sent with `start`."
    )
    intervals: dict[str, list[float]] | None = Field(
        default=None, description='Asked levels as "lo-80" / "hi-80" lists; only with `levels`.'
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
    levels: list[float] | None = None
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
    """What a request may ask of one model, from its metadata and the settings."""

    horizon: int
    quantiles: tuple[float, ...]
    min_history: int
    max_history: int
    max_series: int
    max_points: int
    max_abs_value: float
    frequency: Frequency | None = None  # None: the model has no fixed frequency
    model: str = "model"  # its name, for messages

    def interval(self, level: float) -> tuple[int, int] | None:
        """Columns of the quantiles bounding the central `level`% interval, if served."""
        low, high = self._column(0.5 - level / 200), self._column(0.5 + level / 200)
        return None if low is None or high is None else (low, high)

    def levels(self) -> list[float]:
        """Every level the model's quantiles can give, ascending."""
        return sorted(
            round(100 * (1 - 2 * q), 9) for q in self.quantiles if q < 0.5 and self._column(1 - q)
        )

    def _column(self, quantile: float) -> int | None:
        for column, q in enumerate(self.quantiles):
            if math.isclose(q, quantile, abs_tol=1e-9):
                return column
        return None


def level_name(level: float) -> str:
    """80 and 80.0 -> "80"; 95.5 -> "95.5"."""
    return f"{level:g}"


def parse_request(body: bytes) -> ForecastRequest:
    """A raw body's structure: `ClientError` 400 if it is not JSON, 422 for a broken rule.
    The model's own limits are checked next, by `check_request`."""
    try:
        return ForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


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
    if request.levels is not None:
        for i, level in enumerate(request.levels):
            if limits.interval(level) is None:
                msg = f"level not served by this model's quantiles; choose from {limits.levels()}"
                problems.append(FieldError(f"levels[{i}]", "known_level", msg, level))
    if request.frequency is not None:
        problems += check_frequency("frequency", request.frequency, limits)
    total = 0
    for i, item in enumerate(request.series):
        length = len(item.values)
        total += length
        if length < limits.min_history:
            msg = f"history needs at least {limits.min_history} points, got {length}"
            problems.append(FieldError(f"series[{i}].values", "min_history", msg, length))
        if item.frequency is not None:
            problems += check_frequency(f"series[{i}].frequency", item.frequency, limits)
        if item.start is not None and series_frequency(item, request, limits) is None:
            msg = f"a start needs a frequency: model {limits.model!r} has none, so send one"
            problems.append(FieldError(f"series[{i}].frequency", "frequency_required", msg, None))
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


def series_frequency(item: SeriesIn, request: ForecastRequest, limits: Limits) -> Frequency | None:
    """A series' frequency: its own, else the request's, else the model's (None: none)."""
    return item.frequency or request.frequency or limits.frequency


def forecast_timestamps(item: SeriesIn, frequency: Frequency, steps: int) -> list[str]:
    """The timestamps of the `steps` forecast steps of a series sent with a `start`: they
    follow its last point (every value sent counts, used or cut to max_history)."""
    assert item.start is not None  # only asked for a series with one
    return step_timestamps(parse_start(item.start), frequency, len(item.values), steps)


def check_frequency(loc: str, given: Frequency, limits: Limits) -> list[FieldError]:
    """A 422 detail when `given` is not the model's frequency (a model without one takes any)."""
    if limits.frequency is None or given == limits.frequency:
        return []
    msg = (
        f"frequency {given.value} does not match model {limits.model!r}, "
        f"whose frequency is {limits.frequency.value}"
    )
    return [FieldError(loc, "model_frequency", msg, given.value)]

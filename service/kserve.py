"""`POST /v1/timeseries/forecast`: KServe's time-series forecast protocol on the same engine.

The request names a model, lists `inputs` (each a named univariate series with its
frequency and optional start timestamp) and `options` (horizon, quantiles). Each input
is checked on its own by the rules of `POST /forecast`: one that breaks a rule
(multivariate, too short, a NaN, a frequency the model does not serve) fails only its own
output, with an `error` object, while the others are forecast in one dispatch and the
top-level status says `partial`. A request-level fault (not JSON, an unknown model, a
horizon or quantile the model cannot give) fails the whole request with a top-level
`error`, in the same response shape, and a 4xx.

Not supported (docs/API.md): multivariate series, `usage`, the `pending` status; extra
fields are accepted and ignored, `metadata` is echoed back. `mean_forecast` carries the
median, as the models forecast quantiles, not a mean.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from service.engine import NOT_FINITE
from service.errors import (
    ClientError,
    FieldError,
    from_validation_error,
    json_safe,
    validation_failed,
)
from service.schemas import (
    ForecastRequest,
    Limits,
    SeriesIn,
    Value,
    check_limits,
    forecast_timestamps,
)

if TYPE_CHECKING:  # type names only: the guard imports this module
    from service.guard import Exchange
    from service.runtime import Runtime, Served

PATH = "/v1/timeseries/forecast"
UNIVARIATE = "univariate_time_series"
MULTIVARIATE = "multivariate_time_series"
# Field names of POST /forecast as KServe calls them, for error locations.
_KSERVE_NAMES = {"values": "series", "start": "start_timestamp", "id": "name"}


class Input(BaseModel):
    """One TimeSeriesInput; `series` is checked per input, not here."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str = Field(max_length=200)
    series: JsonValue
    frequency: JsonValue = None
    start_timestamp: JsonValue = None


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")

    horizon: int = Field(strict=True)
    quantiles: list[Value] | None = None


class KServeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=200)
    inputs: list[Input] = Field(min_length=1)
    options: Options
    metadata: JsonValue = None


@dataclass
class KServeError(ClientError):
    """A refused request, answered in KServe's response shape: a top-level `error`, and
    each input's failed output when every input failed."""

    model: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> bytes:
        first = self.detail[0] if self.detail else None
        error = error_object(
            first.rule if first else self.reason, self.message, first.loc if first else None
        )
        return orjson.dumps(
            {**envelope(self.model, "error"), "error": error, "outputs": self.outputs}
        )


def envelope(model: str, status: str) -> dict[str, Any]:
    return {
        "id": f"fc_{uuid.uuid4().hex}",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "model": model,
    }


def error_object(code: str, message: str, param: str | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "type": "invalid_request_error"}


def kserve_loc(loc: str, index: int) -> str:
    """A location in a one-series `POST /forecast` check as KServe names it:
    `series[0].values[3]` -> `inputs[2].series[3]`."""
    head, _, rest = loc.partition(".")
    if not head.startswith("series["):
        return f"inputs[{index}]"
    name, bracket, tail = rest.partition("[")
    return f"inputs[{index}].{_KSERVE_NAMES.get(name, name)}" + (bracket + tail if bracket else "")


def refuse(
    detail: list[FieldError], model: str, outputs: list[dict[str, Any]] | None = None
) -> KServeError:
    """A request-level 422 whose message names the first broken rule."""
    error = validation_failed(detail)
    return KServeError(error.reason, error.message, detail, model=model, outputs=outputs or [])


def parse(body: bytes) -> KServeRequest:
    try:
        return KServeRequest.model_validate_json(body)
    except ValidationError as exc:
        error = from_validation_error(exc)
        if not error.detail:  # not JSON at all
            raise KServeError(error.reason, error.message) from None
        raise refuse(error.detail, "") from None


def options_problems(request: KServeRequest, limits: Limits) -> list[FieldError]:
    """What the request as a whole asks that the model cannot give, at KServe's field names."""
    options = ForecastRequest.model_construct(
        series=[],
        horizon=request.options.horizon,
        quantiles=request.options.quantiles,
        levels=None,
        model=None,
        frequency=None,
    )
    problems = [replace(p, loc=f"options.{p.loc}") for p in check_limits(options, limits)]
    n = len(request.inputs)
    if n > limits.max_series:
        msg = f"at most {limits.max_series} inputs per request, got {n}"
        problems.append(FieldError("inputs", "max_series", msg, n))
    total = sum(len(i.series) for i in request.inputs if isinstance(i.series, list))
    if total > limits.max_points:
        msg = f"at most {limits.max_points} history points per request, got {total}"
        problems.append(FieldError("inputs", "max_points", msg, total))
    return problems


def check_input(item: Input, index: int, seen: set[str], limits: Limits) -> SeriesIn:
    """One input as a `POST /forecast` series; `FieldError` (KServe locations) if it breaks
    a rule: only its own output fails."""
    where = f"inputs[{index}]"
    if item.type != UNIVARIATE:
        msg = f"type must be {UNIVARIATE!r}: multivariate series are not supported"
        raise InputError(FieldError(f"{where}.type", "univariate", msg, json_safe(item.type)))
    if item.name in seen:
        raise InputError(
            FieldError(f"{where}.name", "unique_name", "names must be unique", item.name)
        )
    seen.add(item.name)
    if item.frequency is None:
        msg = "frequency is required (S, T, H, D, W, M, Q, Y)"
        raise InputError(FieldError(f"{where}.frequency", "missing", msg, None))
    fields = {"id": item.name, "values": item.series, "frequency": item.frequency}
    if item.start_timestamp is not None:
        fields["start"] = item.start_timestamp
    try:
        series = SeriesIn.model_validate(fields)
    except ValidationError as exc:
        first = from_validation_error(exc).detail[0]
        raise InputError(replace(first, loc=kserve_loc(f"series[0].{first.loc}", index))) from None
    one = ForecastRequest.model_construct(
        series=[series], horizon=None, quantiles=None, levels=None, model=None, frequency=None
    )
    problems = check_limits(one, limits)
    if problems:
        raise InputError(replace(problems[0], loc=kserve_loc(problems[0].loc, index)))
    return series


class InputError(Exception):
    """One input breaks a rule; its output fails, the others go on."""

    def __init__(self, problem: FieldError) -> None:
        super().__init__(problem.message)
        self.problem = problem


def failed_output(output_id: str, problem: FieldError) -> dict[str, Any]:
    return {
        "type": "time_series_forecast",
        "id": output_id,
        "status": "error",
        "content": [],
        "error": error_object(problem.rule, f"{problem.loc}: {problem.message}", problem.loc),
    }


def completed_output(
    output_id: str, series: SeriesIn, block: np.ndarray, request: KServeRequest, served: Served
) -> dict[str, Any]:
    """One input's forecast: `block` is its (h, Q) quantile forecast."""
    frequency = series.frequency
    assert frequency is not None  # check_input refused an input without one
    start = None
    if series.start is not None:  # the step after the history's last point
        start = forecast_timestamps(series, frequency, 1)[0]
    content: dict[str, Any] = {
        "type": UNIVARIATE,
        "name": series.id,
        "mean_forecast": block[:, served.artifact.point_index].tolist(),
        "frequency": frequency.value,
        "start_timestamp": start,
    }
    if request.options.quantiles:
        columns = [served.limits.quantiles.index(q) for q in request.options.quantiles]
        content["quantiles"] = {
            str(q): block[:, c].tolist()
            for q, c in zip(request.options.quantiles, columns, strict=True)
        }
    return {
        "type": "time_series_forecast",
        "id": output_id,
        "status": "completed",
        "content": [content],
    }


async def answer(runtime: Runtime, body: bytes, exchange: Exchange) -> bytes:
    """The KServe response to one request body; `KServeError` for a request-level fault."""
    request = parse(body)
    try:
        served = runtime.model(request.model)
    except ClientError as exc:
        raise KServeError(exc.reason, exc.message, model=request.model) from None
    name = exchange.model = served.artifact.name
    refused = options_problems(request, served.limits)
    if refused:
        raise refuse(refused, name)
    response = envelope(name, "completed")
    outputs: list[dict[str, Any]] = [{} for _ in request.inputs]
    problems: dict[int, FieldError] = {}  # input index -> why its output failed
    good: list[tuple[int, SeriesIn]] = []
    seen: set[str] = set()

    def fail(i: int, problem: FieldError) -> None:
        outputs[i] = failed_output(f"{response['id']}_{i}", problem)
        problems[i] = problem

    for i, item in enumerate(request.inputs):
        try:
            good.append((i, check_input(item, i, seen, served.limits)))
        except InputError as exc:
            fail(i, exc.problem)
    if good:
        forecasts, used = await served.engine.predict([series for _, series in good])
        answered = []
        for (i, series), forecast, one in zip(good, forecasts, used, strict=True):
            block = forecast[: request.options.horizon]  # (h, Q)
            if np.isfinite(block).all():
                outputs[i] = completed_output(
                    f"{response['id']}_{i}", series, block, request, served
                )
                answered.append(one)
            else:
                fail(i, FieldError(f"inputs[{i}].series", "finite_forecast", NOT_FINITE, one[0]))
        served.engine.count(answered)
    if len(problems) == len(outputs):
        raise refuse([problems[i] for i in sorted(problems)], name, outputs)
    response["status"] = "partial" if problems else "completed"
    response["outputs"] = outputs
    if request.metadata is not None:
        response["metadata"] = request.metadata
    return orjson.dumps(response)

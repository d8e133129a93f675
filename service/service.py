"""The BentoML service: wires settings, the models, the request guard and metrics.

`POST /forecast` takes one or many series plus per-request options, for one of the
served models. `RequestGuard` validates the body and hands it to that model's
`Engine.answer`, whose batcher merges the series of concurrent requests into few forward
passes (packed by `service.batching`). With `FORECASTER_BATCHING=false` each request
runs alone. Everything is built once, by `service.runtime.build`.

Why its own batcher and not a batchable `@bentoml.api`: docs/SERVING.md.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, NoReturn

import bentoml
import torch
from pydantic import Field
from starlette.responses import Response

from service import metrics
from service.errors import ClientError
from service.guard import ASGIApp, RequestGuard
from service.runtime import Runtime, StartupError, build, read_settings
from service.schemas import (
    EXAMPLE_VALUES,
    ForecastRequest,
    ForecastResponse,
    FrequencyIn,
    Level,
    SeriesIn,
    check_request,
)

logger = logging.getLogger("forecaster")


def _refuse_to_start(reason: str) -> NoReturn:
    # One line on stderr and exit status 1, rather than a traceback through BentoML's loader.
    print(f"forecaster cannot start: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# At import, so `bentoml serve` and `bentoml build` stop at once with the reason; every
# model is loaded and probed here too, so a corrupt or mismatched model.ts stops the
# server before any worker starts (BentoML would otherwise restart failing workers).
try:
    RUNTIME: Runtime = build(read_settings())
except StartupError as exc:
    _refuse_to_start(str(exc))
SETTINGS = RUNTIME.settings
GUARD_OPTIONS: dict[str, Any] = {
    "runtime": RUNTIME,
    "timeout_s": SETTINGS.request_timeout_s,
    "token": SETTINGS.api_token.get_secret_value(),
    "auth_health": SETTINGS.auth_health,
    "auth_metrics": SETTINGS.auth_metrics,
}
# BentoML's per-request HTTP layers (its traffic metrics, tracing, the request timeout,
# the access log) cost about 35 us a request, a twentieth of a batched forecast's CPU
# (python -m bench.asgi_layers; docs/SERVING.md). So the guard wraps BentoML's
# whole app and answers /forecast before them, with its own timeout and metrics. Only
# when tracing or the access log is asked for does it go inside, where those layers
# see /forecast too.
GUARD_OUTSIDE = not (SETTINGS.trace_requests or SETTINGS.access_log)
# Models from the BentoML store, declared (as class attributes, which is where BentoML
# looks) so that `bentoml build` packs them into the bento; folders under models/ travel
# through bentofile.yaml's include.
StoredModels = type(
    "StoredModels",
    (),
    {
        f"stored_model_{i}": bentoml.models.BentoModel(served.artifact.store_tag)
        for i, served in enumerate(RUNTIME.models.values())
        if served.artifact.store_tag is not None
    },
)


class GuardedService(bentoml.Service):
    """A BentoML service whose ASGI app is wrapped by `RequestGuard` (see GUARD_OUTSIDE)."""

    def to_asgi(self, is_main: bool = True) -> ASGIApp:
        app: ASGIApp = super().to_asgi(is_main)
        return RequestGuard(app, **GUARD_OPTIONS) if GUARD_OUTSIDE else app


@bentoml.service(
    service_class=GuardedService,
    name="forecaster",
    workers=SETTINGS.workers,
    traffic={"timeout": SETTINGS.request_timeout_s},
    logging={"access": {"enabled": SETTINGS.access_log}},
    # Health and metrics endpoints are never traced; the forecast routes only when asked to.
    tracing={
        "excluded_urls": ["/livez", "/readyz", "/metrics"]
        + ([] if SETTINGS.trace_requests else ["/forecast", "/model", "/models", "/v1"])
    },
)
class Forecaster(StoredModels):  # type: ignore[misc,valid-type]
    """Stacked-LSTM forecasts for many variable-length series, batched across requests."""

    def __init__(self) -> None:
        torch.set_num_threads(SETTINGS.torch_threads)
        # A worker killed before (this may be its replacement) left its gauges' last values.
        gone = metrics.forget_dead_processes()
        if gone:
            logger.warning("dropped the gauge values of worker processes gone: %s", gone)
        self.runtime = RUNTIME
        self.ready = False
        for name, served in RUNTIME.models.items():
            metrics.MODEL_INFO.labels(name, served.artifact.version).set(1)
            logger.info(
                "loaded model %s version %s on %s", name, served.artifact.version, RUNTIME.device
            )

    @bentoml.on_startup
    async def warm_up(self) -> None:
        """Run each model through its batcher before /readyz says ready (TorchScript
        compiles its graph on the first calls)."""
        await self.runtime.warm_up(SETTINGS.warmup_rounds)
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(route="/forecast")
    async def forecast(
        self,
        series: Annotated[
            list[SeriesIn],
            Field(
                min_length=1,
                description="Series to forecast, answered in this order.",
                examples=[[{"id": "a", "values": EXAMPLE_VALUES}]],
            ),
        ],
        horizon: Annotated[
            int | None,
            Field(description="Steps to forecast (<= the model's); default all.", examples=[6]),
        ] = None,
        quantiles: Annotated[
            list[float] | None,
            Field(
                description="Subset of the model's quantiles (GET /model); default all.",
                examples=[[0.1, 0.9]],
            ),
        ] = None,
        levels: Annotated[
            list[Level] | None,
            Field(description="Central intervals in percent (80: lo-80, hi-80).", examples=[[80]]),
        ] = None,
        model: Annotated[
            str | None,
            Field(
                description="Model to use (GET /models); default the default.",
                examples=["m3-monthly"],
            ),
        ] = None,
        frequency: Annotated[
            FrequencyIn | None,
            Field(description="Frequency of the series that give none.", examples=["M"]),
        ] = None,
    ) -> ForecastResponse:
        """Forecast each series' next `horizon` steps: median and quantiles.

        Over HTTP, `RequestGuard` validates and answers this route itself with the same
        `Engine.answer` (BentoML's argument parsing and routing would cost about a sixth
        of the server's CPU per request); this declaration gives the OpenAPI schema and
        in-process callers the same behaviour.
        """
        request = ForecastRequest(
            series=series,
            horizon=horizon,
            quantiles=quantiles,
            levels=levels,
            model=model,
            frequency=frequency,
        )
        name = ""
        try:
            served = self.runtime.model(model)
            name = served.artifact.name
            body = await served.engine.answer(check_request(request, served.limits))
        except ClientError as exc:
            metrics.rejections(name, exc.reason).inc()
            return Response(exc.body(), exc.status, exc.headers, media_type="application/json")  # type: ignore[return-value]
        return Response(body, media_type="application/json")  # type: ignore[return-value]


if not GUARD_OUTSIDE:
    # @bentoml.service made Forecaster a bentoml.Service (to mypy, Forecaster is untyped:
    # its base is built at run time).
    Forecaster.add_asgi_middleware(RequestGuard, **GUARD_OPTIONS)

"""The BentoML service: wires settings, the model, the request guard and metrics.

`POST /forecast` takes one or many series plus per-request options. `RequestGuard`
validates the body and hands it to `Engine.answer`, whose batcher merges the series of
concurrent requests into few forward passes (packed by `service.batching`). With
`FORECASTER_BATCHING=false` each request runs alone.

Why its own batcher and not a batchable `@bentoml.api`: docs/SERVING.md.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Annotated, Any, NoReturn

import bentoml
import numpy as np
import torch
from pydantic import Field, ValidationError
from starlette.responses import Response

from service import artifact, metrics
from service.engine import Engine, Queued
from service.errors import ClientError
from service.guard import ASGIApp, RequestGuard
from service.schemas import (
    EXAMPLE_VALUES,
    ForecastRequest,
    ForecastResponse,
    Limits,
    SeriesIn,
    check_request,
)
from service.settings import Settings

logger = logging.getLogger("forecaster")


def _refuse_to_start(reason: str) -> NoReturn:
    # One line on stderr and exit status 1, rather than a traceback through BentoML's loader.
    print(f"forecaster cannot start: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# At import, so `bentoml serve` and `bentoml build` stop at once with the reason; the
# module is loaded and probed here too, so a corrupt or mismatched model.ts stops the
# server before any worker starts (BentoML would otherwise restart failing workers).
try:
    SETTINGS = Settings()
    ARTIFACT = artifact.locate(SETTINGS.model)
    MODULE = ARTIFACT.load_checked()
except ValidationError as exc:
    _refuse_to_start(
        "; ".join(
            f"FORECASTER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    )
except artifact.ArtifactError as exc:
    _refuse_to_start(artifact.one_line(exc))
LIMITS = Limits(
    horizon=ARTIFACT.horizon,
    quantiles=ARTIFACT.quantiles,
    min_history=int(ARTIFACT.metadata["min_history"]),
    max_history=int(ARTIFACT.metadata["max_history"]),
    max_series=SETTINGS.max_series_per_request,
    max_points=SETTINGS.max_points_per_request,
    max_abs_value=SETTINGS.max_abs_value,
)


ENGINE = Engine(MODULE, ARTIFACT, LIMITS, SETTINGS)
GUARD_OPTIONS: dict[str, Any] = {
    "limits": LIMITS,
    "answer": ENGINE.answer,
    "max_body_bytes": SETTINGS.max_body_bytes,
    "timeout_s": SETTINGS.request_timeout_s,
    "token": SETTINGS.api_token.get_secret_value(),
    "auth_health": SETTINGS.auth_health,
    "auth_metrics": SETTINGS.auth_metrics,
    "card": {
        **ARTIFACT.card(),
        "limits": {
            "max_series_per_request": SETTINGS.max_series_per_request,
            "max_points_per_request": SETTINGS.max_points_per_request,
            "max_body_bytes": SETTINGS.max_body_bytes,
            "max_abs_value": SETTINGS.max_abs_value,
        },
    },
}
# BentoML's per-request HTTP layers (its traffic metrics, tracing, the request timeout,
# the access log) cost about 35 us a request, a twentieth of a batched forecast's CPU
# (python -m bench.asgi_layers; docs/SERVING.md). So the guard wraps BentoML's
# whole app and answers /forecast before them, with its own timeout and metrics. Only
# when tracing or the access log is asked for does it go inside, where those layers
# see /forecast too.
GUARD_OUTSIDE = not (SETTINGS.trace_requests or SETTINGS.access_log)


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
    # Health and metrics endpoints are never traced; /forecast only when asked to.
    tracing={
        "excluded_urls": ["/livez", "/readyz", "/metrics"]
        + ([] if SETTINGS.trace_requests else ["/forecast", "/model"])
    },
)
class Forecaster:
    """Stacked-LSTM forecasts for many variable-length series, batched across requests."""

    if ARTIFACT.store_tag is not None:
        # Declared so that `bentoml build` packs this model into the bento.
        bento_model = bentoml.models.BentoModel(ARTIFACT.store_tag)

    def __init__(self) -> None:
        torch.set_num_threads(SETTINGS.torch_threads)
        # A worker killed before (this may be its replacement) left its gauges' last values.
        gone = metrics.forget_dead_processes()
        if gone:
            logger.warning("dropped the gauge values of worker processes gone: %s", gone)
        self.engine = ENGINE
        self.ready = False
        metrics.MODEL_INFO.labels(ARTIFACT.name, ARTIFACT.version).set(1)
        logger.info("loaded model %s version %s", ARTIFACT.name, ARTIFACT.version)

    @bentoml.on_startup
    async def warm_up(self) -> None:
        """Run the model through the batcher before /readyz says ready (TorchScript
        compiles its graph on the first calls)."""
        self.engine.recording = False
        rng = np.random.default_rng(0)
        lengths = (LIMITS.min_history, LIMITS.max_history)
        for i in range(SETTINGS.warmup_rounds):
            values = rng.normal(100.0, 10.0, lengths[i % 2]).astype(np.float32)
            await self.engine.dispatch([Queued(values, time.perf_counter())])
        self.engine.recording = True
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
    ) -> ForecastResponse:
        """Forecast each series' next `horizon` steps: median and quantiles.

        Over HTTP, `RequestGuard` validates and answers this route itself with the same
        `Engine.answer` (BentoML's argument parsing and routing would cost about a sixth
        of the server's CPU per request); this declaration gives the OpenAPI schema and
        in-process callers the same behaviour.
        """
        request = ForecastRequest(series=series, horizon=horizon, quantiles=quantiles)
        try:
            body = await self.engine.answer(check_request(request, LIMITS))
        except ClientError as exc:
            metrics.REJECTIONS.labels(exc.reason).inc()
            return Response(exc.body(), exc.status, exc.headers, media_type="application/json")  # type: ignore[return-value]
        return Response(body, media_type="application/json")  # type: ignore[return-value]


if not GUARD_OUTSIDE:
    # @bentoml.service made Forecaster a bentoml.Service; mypy ignores class decorators.
    Forecaster.add_asgi_middleware(RequestGuard, **GUARD_OPTIONS)  # type: ignore[attr-defined]

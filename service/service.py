"""The BentoML service: wires settings, the model, BentoML's adaptive batcher and metrics.

`POST /forecast` takes one or many series plus per-request options; the series of
concurrent requests are merged by BentoML's adaptive batcher (`CorkDispatcher`, the
engine behind `@bentoml.api(batchable=True)`) and packed by `service.batching`. With
`FORECASTER_BATCHING=false` the dispatcher is skipped: each request runs alone.

Why not a batchable `@bentoml.api`: such an API takes exactly one batched parameter, so
per-request `horizon`/`quantiles` could not sit beside `series`, and a batchable method
called from another endpoint of the same service is not batched. The documented way
around it, a front service calling a batchable model service through `bentoml.depends`,
was measured here: it doubled the latency of a single-series request (7.6 -> 14.3 ms)
and under 32 concurrent clients the inter-process hop failed with aiohttp
"Server disconnected" errors (500s). So this one service drives the same dispatcher
itself, in-process (see docs/SERVING.md).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, NamedTuple, NoReturn

import bentoml
import numpy as np
import torch

# Private, but it is BentoML's own adaptive batcher; bentoml is pinned (==1.4.40).
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service import artifact, metrics
from service.batching import SubBatch, run_packed
from service.errors import ClientError, FieldError
from service.guard import RequestGuard
from service.schemas import EXAMPLE_VALUES, ForecastResponse, Limits, SeriesIn
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


class Queued(NamedTuple):
    """One series waiting in the batcher: its (possibly cut) history and when it arrived."""

    values: np.ndarray  # (T,) float32
    enqueued: float  # time.perf_counter()


def _overloaded_error() -> ClientError:
    return ClientError(
        "overloaded",
        "the model queue is longer than FORECASTER_MAX_LATENCY_MS allows; retry later",
        headers={"Retry-After": str(SETTINGS.retry_after_s)},
    )


def _overloaded() -> Any:
    raise _overloaded_error()


def _queue_full(pending: int) -> ClientError:
    return ClientError(
        "queue_full",
        f"{pending} series already wait for the model, FORECASTER_MAX_QUEUE_SERIES is "
        f"{SETTINGS.max_queue_series}; retry later",
        headers={"Retry-After": str(SETTINGS.retry_after_s)},
    )


def _unforecastable(broken: list[int], used: list[tuple[int, bool]]) -> ClientError:
    """A 422: valid input on which the model's forecast is not finite (retrying won't help)."""
    message = "the model's forecast of this history is not finite"
    detail = [
        FieldError(f"series[{i}].values", "finite_forecast", message, used[i][0]) for i in broken
    ]
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    return ClientError("unforecastable", f"series[{broken[0]}]: {message}{more}", detail)


def _error_response(exc: ClientError) -> Response:
    metrics.REJECTIONS.labels(exc.reason).inc()
    return Response(exc.body(), exc.status, exc.headers, media_type="application/json")


@bentoml.service(
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
        self.module = MODULE
        self.ready = False
        self.recording = True
        # Series admitted and not yet answered (queued or in a forward pass), this worker.
        self.pending = 0
        self.batched: Callable[[list[Queued]], Awaitable[list[np.ndarray] | None]]
        if SETTINGS.batching:
            dispatcher: CorkDispatcher[list[Queued], list[np.ndarray] | Exception]
            dispatcher = CorkDispatcher(
                max_latency_in_ms=SETTINGS.max_latency_ms,
                max_batch_size=SETTINGS.max_batch_size,
                fallback=_overloaded,
                get_batch_size=len,
            )
            # Synchronous callback: the dispatcher runs it in a worker thread, one at a time.
            self.batched = dispatcher(self.predict_batches)
        else:
            self.batched = self.predict_alone
        metrics.MODEL_INFO.labels(ARTIFACT.name, ARTIFACT.version).set(1)
        logger.info("loaded model %s version %s", ARTIFACT.name, ARTIFACT.version)

    @bentoml.on_startup
    async def warm_up(self) -> None:
        """Run the model through the batcher before /readyz says ready.

        Besides compiling TorchScript's graph, this trains the dispatcher's latency model,
        whose first few calls are otherwise made one by one on real traffic.
        """
        self.recording = False
        rng = np.random.default_rng(0)
        lengths = (LIMITS.min_history, LIMITS.max_history)
        for i in range(SETTINGS.warmup_rounds):
            values = rng.normal(100.0, 10.0, lengths[i % 2]).astype(np.float32)
            await self.batched([Queued(values, time.perf_counter())])
        self.recording = True
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    def forward(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(B, T) float32, (B,) int64 -> (B, H, Q) float32."""
        with torch.inference_mode():
            out = self.module(torch.from_numpy(values), torch.from_numpy(lengths))  # (B, H, Q)
        return out.numpy()

    def observe_pass(self, batch: SubBatch, padding: float, seconds: float) -> None:
        if self.recording:
            metrics.CALL_SERIES.observe(len(batch.rows))
            metrics.CALL_PADDING.observe(padding)
            metrics.COMPUTE.observe(seconds)

    def predict_batches(
        self, batches: Sequence[list[Queued]]
    ) -> list[list[np.ndarray] | Exception]:
        """One dispatch: the series of several requests in, each request's forecasts out.

        Should the model fail, each request is retried alone, so a failure reaches only
        the request that causes it and not the others that shared its dispatch.
        """
        started = time.perf_counter()
        if self.recording:
            for batch in batches:
                metrics.QUEUE_WAIT.observe(started - batch[0].enqueued)
        requests = [[q.values for q in batch] for batch in batches]
        try:
            return list(self.run(requests))
        except Exception:
            logger.exception("model failed on a dispatch of %d requests", len(batches))
            if len(batches) == 1:
                raise
        answers: list[list[np.ndarray] | Exception] = []
        for request in requests:
            try:
                answers.extend(self.run([request]))
            except Exception as exc:
                answers.append(exc)
        return answers

    async def predict_alone(self, queued: list[Queued]) -> list[np.ndarray]:
        """FORECASTER_BATCHING=false: this request's series alone, in a worker thread."""
        [answer] = await run_in_threadpool(self.predict_batches, [queued])
        if isinstance(answer, Exception):  # only a multi-request dispatch returns these
            raise answer
        return answer

    def run(self, requests: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return run_packed(
            requests,
            self.forward,
            SETTINGS.max_padded_cost,
            SETTINGS.max_batch_size,
            on_pass=self.observe_pass,
        )

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

        The request was validated by `RequestGuard` before BentoML parsed it, so every
        value here is finite and within the model's limits.
        """
        now = time.perf_counter()
        queued: list[Queued] = []
        used: list[tuple[int, bool]] = []
        for item in series:
            values = np.asarray(item.values, dtype=np.float32)  # (T,)
            metrics.HISTORY_LENGTH.observe(len(values))
            cut = len(values) > LIMITS.max_history
            if cut:
                values = values[-LIMITS.max_history :]  # most recent points
            queued.append(Queued(values, now))
            used.append((len(values), cut))
        if self.pending and self.pending + len(queued) > SETTINGS.max_queue_series:
            return _error_response(_queue_full(self.pending))
        self.pending += len(queued)
        metrics.QUEUE_SERIES.inc(len(queued))
        try:
            outputs = await self.batched(queued)
        except ClientError as exc:
            return _error_response(exc)
        except Exception:
            logger.exception("forecast failed")
            return _error_response(ClientError("model_error", "the model failed; see server log"))
        finally:
            self.pending -= len(queued)
            metrics.QUEUE_SERIES.dec(len(queued))
        if outputs is None:  # typed Optional by BentoML; its fallback raises instead
            return _error_response(_overloaded_error())
        h = horizon or LIMITS.horizon
        wanted = list(quantiles) if quantiles else list(LIMITS.quantiles)
        columns = [LIMITS.quantiles.index(q) for q in wanted]
        broken = [i for i, out in enumerate(outputs) if not np.isfinite(out[:h]).all()]
        if broken:
            # Logged without the values or ids: request bodies stay out of the logs.
            logger.warning("non-finite forecast for series %s of a request", broken[:10])
            return _error_response(_unforecastable(broken, used))
        forecasts: list[dict[str, Any]] = []
        for i, (item, out, (n_used, cut)) in enumerate(zip(series, outputs, used, strict=True)):
            block = out[:h]  # (h, Q)
            forecasts.append(
                {
                    "id": item.id if item.id is not None else str(i),
                    "point": block[:, ARTIFACT.point_index].tolist(),
                    "quantiles": {
                        str(q): block[:, c].tolist() for q, c in zip(wanted, columns, strict=True)
                    },
                    "history_used": n_used,
                    "truncated": cut,
                }
            )
        metrics.SERIES.inc(len(forecasts))
        metrics.TRUNCATED.inc(sum(cut for _, cut in used))
        body = {
            "model": {"name": ARTIFACT.name, "version": ARTIFACT.version},
            "horizon": h,
            "quantiles": wanted,
            "forecasts": forecasts,
        }
        return Response(json.dumps(body).encode(), media_type="application/json")  # type: ignore[return-value]


Forecaster.add_asgi_middleware(
    RequestGuard,
    limits=LIMITS,
    max_body_bytes=SETTINGS.max_body_bytes,
    token=SETTINGS.api_token.get_secret_value(),
    auth_health=SETTINGS.auth_health,
    auth_metrics=SETTINGS.auth_metrics,
    card={
        **ARTIFACT.card(),
        "limits": {
            "max_series_per_request": SETTINGS.max_series_per_request,
            "max_points_per_request": SETTINGS.max_points_per_request,
            "max_body_bytes": SETTINGS.max_body_bytes,
            "max_abs_value": SETTINGS.max_abs_value,
        },
    },
)

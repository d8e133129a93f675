"""From a validated request to its response body: queue, batch, forecast, format.

`Engine.answer` is the whole of `POST /forecast` after validation. It knows nothing of
HTTP frameworks: `service.guard` calls it straight from the ASGI layer, and the
BentoML endpoint in `service.service` calls it too. Errors leave as `ClientError`,
whose reason picks the status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

import numpy as np
import orjson
import torch
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.artifact import Artifact
from service.batcher import Batcher, QueueFull, WaitedTooLong, admit
from service.batching import SubBatch, run_packed
from service.errors import ClientError, FieldError
from service.schemas import (
    ForecastRequest,
    Limits,
    SeriesIn,
    forecast_timestamps,
    level_name,
    series_frequency,
)
from service.settings import Settings

logger = logging.getLogger("forecaster")


NOT_FINITE = "the model's forecast of this history is not finite"


class Queued(NamedTuple):
    """One series waiting for the model: its (possibly cut) history and when it arrived."""

    values: np.ndarray  # (T,) float32
    enqueued: float  # time.perf_counter()


Answers = list[np.ndarray]  # one request's forecasts, each (H, Q) float32


class Engine:
    """One model in one worker: its batcher and the response format.

    Every engine of a worker hands its passes to the same one-thread `executor`, so
    passes never overlap, and as each batcher has at most one pass in that thread's
    queue at a time, the models take turns: a flood on one model delays another's next
    pass by at most one pass of the flooded model.
    """

    def __init__(
        self,
        module: Any,
        artifact: Artifact,
        limits: Limits,
        settings: Settings,
        executor: Executor | None = None,
        device: str = "cpu",
    ):
        self.module = module
        self.artifact = artifact
        self.limits = limits
        self.settings = settings
        self.device = torch.device(device)
        self.metrics = metrics.ModelMetrics.of(artifact.name)
        # False during warm-up, so start-up passes stay out of the metrics.
        self.recording = True
        self.dispatch: Callable[[list[Queued]], Awaitable[Answers]]
        if settings.batching:
            batcher: Batcher[list[Queued], Answers] = Batcher(
                self.predict_batches,
                size=len,
                max_batch_series=settings.max_batch_size,
                max_queue_series=settings.max_queue_series,
                max_wait_s=settings.max_latency_ms / 1000,
                max_linger_s=settings.batch_linger_ms / 1000,
                executor=executor,
            )
            self.dispatch = batcher.submit
        else:
            self.dispatch = self.predict_alone
        self.unbatched_pending = 0  # series in flight when batching is off

    # -- the model side (runs in a worker thread) ---------------------------------------

    def forward(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(B, T) float32, (B,) int64 -> (B, H, Q) float32."""
        with torch.inference_mode():
            x = torch.from_numpy(values).to(self.device)  # (B, T)
            n = torch.from_numpy(lengths).to(self.device)  # (B,)
            out = self.module(x, n).cpu()  # (B, H, Q); on the CPU already, .cpu() is a no-op
        result: np.ndarray = out.numpy()
        return result

    def observe_pass(self, batch: SubBatch, padding: float, seconds: float) -> None:
        if self.recording:
            self.metrics.call_series.observe(len(batch.rows))
            self.metrics.call_padding.observe(padding)
            self.metrics.compute.observe(seconds)

    def run(self, requests: list[list[np.ndarray]]) -> list[Answers]:
        return run_packed(
            requests,
            self.forward,
            self.settings.max_padded_cost,
            self.settings.max_batch_size,
            on_pass=self.observe_pass,
        )

    def predict_batches(self, batches: Sequence[list[Queued]]) -> list[Answers | Exception]:
        """One dispatch: the series of several requests in, each request's forecasts out.

        Should the model fail, each request is retried alone, so a failure reaches only
        the request that causes it and not the others that shared its dispatch.
        """
        started = time.perf_counter()
        if self.recording:
            for batch in batches:
                self.metrics.queue_wait.observe(started - batch[0].enqueued)
        requests = [[q.values for q in batch] for batch in batches]
        try:
            return list(self.run(requests))
        except Exception:
            logger.exception("model failed on a dispatch of %d requests", len(batches))
            if len(batches) == 1:
                raise
        answers: list[Answers | Exception] = []
        for request in requests:
            try:
                answers.extend(self.run([request]))
            except Exception as exc:
                answers.append(exc)
        return answers

    async def predict_alone(self, queued: list[Queued]) -> Answers:
        """FORECASTER_BATCHING=false: this request's series alone, in a worker thread."""
        admit(self.unbatched_pending, len(queued), self.settings.max_queue_series)
        self.unbatched_pending += len(queued)
        try:
            [answer] = await run_in_threadpool(self.predict_batches, [queued])
        finally:
            self.unbatched_pending -= len(queued)
        if isinstance(answer, Exception):  # only a multi-request dispatch returns these
            raise answer
        return answer

    # -- the request side (runs on the event loop) --------------------------------------

    async def answer(self, request: ForecastRequest) -> bytes:
        """The JSON body of a 200 for a validated request; `ClientError` otherwise."""
        outputs, used = await self.predict(request.series)
        return self.format(request, outputs, used)

    async def predict(self, series: Sequence[SeriesIn]) -> tuple[Answers, list[tuple[int, bool]]]:
        """Validated series in; each one's (H, Q) forecast and (points used, whether cut)
        out, in order. Queue and model failures leave as `ClientError`."""
        now = time.perf_counter()
        queued: list[Queued] = []
        used: list[tuple[int, bool]] = []  # per series: points used, whether cut
        max_history = self.limits.max_history
        for item in series:
            values = np.asarray(item.values, dtype=np.float32)  # (T,)
            self.metrics.history_length.observe(len(values))
            cut = len(values) > max_history
            if cut:
                values = values[-max_history:]  # most recent points
            queued.append(Queued(values, now))
            used.append((len(values), cut))
        self.metrics.queue_series.inc(len(queued))
        try:
            outputs = await self.dispatch(queued)
        except QueueFull as exc:
            raise self.queue_full(exc.pending) from None
        except WaitedTooLong:
            raise self.overloaded() from None
        except Exception:
            logger.exception("forecast failed")
            raise ClientError("model_error", "the model failed; see server log") from None
        finally:
            self.metrics.queue_series.dec(len(queued))
        return outputs, used

    def count(self, used: list[tuple[int, bool]]) -> None:
        """Count series answered with a forecast, and those of them that were cut."""
        self.metrics.series.inc(len(used))
        truncated = sum(cut for _, cut in used)
        if truncated:  # each metric update writes a shared file: skip the no-ops
            self.metrics.truncated.inc(truncated)

    def format(
        self, request: ForecastRequest, outputs: Answers, used: list[tuple[int, bool]]
    ) -> bytes:
        h = request.horizon or self.limits.horizon
        wanted = list(request.quantiles) if request.quantiles else list(self.limits.quantiles)
        columns = [self.limits.quantiles.index(q) for q in wanted]
        broken = [i for i, out in enumerate(outputs) if not np.isfinite(out[:h]).all()]
        if broken:
            # Logged without the values or ids: request bodies stay out of the logs.
            logger.warning("non-finite forecast for series %s of a request", broken[:10])
            raise unforecastable(broken, used)
        point = self.artifact.point_index
        levels = [(level_name(lv), self.limits.interval(lv)) for lv in request.levels or ()]
        forecasts: list[dict[str, Any]] = []
        for i, (item, out, (n_used, cut)) in enumerate(
            zip(request.series, outputs, used, strict=True)
        ):
            block = out[:h]  # (h, Q)
            forecast: dict[str, Any] = {
                "id": item.id if item.id is not None else str(i),
                "point": block[:, point].tolist(),
                "quantiles": {
                    str(q): block[:, c].tolist() for q, c in zip(wanted, columns, strict=True)
                },
            }
            if item.start is not None:
                frequency = series_frequency(item, request, self.limits)
                assert frequency is not None  # check_limits refused a start without one
                forecast["timestamps"] = forecast_timestamps(item, frequency, h)
            if levels:
                forecast["intervals"] = interval_lists(block, levels)
            forecast["history_used"] = n_used
            forecast["truncated"] = cut
            forecasts.append(forecast)
        self.count(used)
        body: dict[str, Any] = {
            "model": {"name": self.artifact.name, "version": self.artifact.version},
            "horizon": h,
            "quantiles": wanted,
        }
        if request.levels:
            body["levels"] = request.levels
        body["forecasts"] = forecasts
        return orjson.dumps(body)

    def overloaded(self) -> ClientError:
        return ClientError(
            "overloaded",
            f"the request waited longer than FORECASTER_MAX_LATENCY_MS "
            f"({self.settings.max_latency_ms} ms) for the model; retry later",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )

    def queue_full(self, pending: int) -> ClientError:
        return ClientError(
            "queue_full",
            f"{pending} series already wait for the model, FORECASTER_MAX_QUEUE_SERIES is "
            f"{self.settings.max_queue_series}; retry later",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )


def interval_lists(
    block: np.ndarray, levels: list[tuple[str, tuple[int, int] | None]]
) -> dict[str, list[float]]:
    """{"lo-80": [...], "hi-80": [...]} from the quantile columns bounding each level."""
    out: dict[str, list[float]] = {}
    for name, columns in levels:
        assert columns is not None  # check_limits refused levels the model cannot give
        out[f"lo-{name}"] = block[:, columns[0]].tolist()
        out[f"hi-{name}"] = block[:, columns[1]].tolist()
    return out


def unforecastable(broken: list[int], used: list[tuple[int, bool]]) -> ClientError:
    """A 422: valid input on which the model's forecast is not finite (retrying won't help)."""
    message = NOT_FINITE
    detail = [
        FieldError(f"series[{i}].values", "finite_forecast", message, used[i][0]) for i in broken
    ]
    more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
    return ClientError("unforecastable", f"series[{broken[0]}]: {message}{more}", detail)

"""Prometheus metrics the service adds to BentoML's own, served on the same /metrics.

Names follow `forecaster_<what>_<unit>`; labels have few values. Every metric that
concerns one model carries its name as `model` (empty for a request refused before its
model was known: malformed JSON, a body too large, a missing token). Under `bentoml serve`
prometheus-client runs in multiprocess mode (BentoML sets PROMETHEUS_MULTIPROC_DIR), so
each worker writes its samples to files that /metrics aggregates. A worker that dies
without marking itself dead (SIGKILL, OOM) would leave its last gauge values in those
sums, so each worker forgets such processes' gauges as it starts (`forget_dead_processes`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead

REQUESTS = Counter(
    "forecaster_requests",
    "Forecast requests answered, by model and HTTP status code (499: the client left first).",
    ["model", "code"],
)
LATENCY = Histogram(
    "forecaster_request_duration_seconds",
    "Forecast request time from arrival to answer, by model and HTTP status code.",
    ["model", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_PROGRESS = Gauge(
    "forecaster_requests_in_progress",
    "Forecast requests received and not yet answered (any model).",
    multiprocess_mode="livesum",
)
SERIES = Counter(
    "forecaster_forecast_series",
    "Series answered with a forecast.",
    ["model"],
)
TRUNCATED = Counter(
    "forecaster_truncated_series",
    "Series whose history was cut to the model's max_history points.",
    ["model"],
)
HISTORY_LENGTH = Histogram(
    "forecaster_history_length_points",
    "History length of each series received, before any cut.",
    ["model"],
    buckets=(6, 12, 18, 24, 36, 48, 72, 96, 126, 160, 250, 500, 1000, 5000),
)
CALL_SERIES = Histogram(
    "forecaster_model_call_series",
    "Series in one forward pass of the model.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
CALL_PADDING = Histogram(
    "forecaster_model_call_padding_ratio",
    "Share of one forward pass's padded input that is padding.",
    ["model"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
)
_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_WAIT = Histogram(
    "forecaster_queue_wait_seconds",
    "Time a request's series waited in the batching queue before its dispatch started.",
    ["model"],
    buckets=_TIME_BUCKETS,
)
COMPUTE = Histogram(
    "forecaster_model_compute_seconds",
    "Time of one forward pass (collated input to output array).",
    ["model"],
    buckets=_TIME_BUCKETS,
)
QUEUE_SERIES = Gauge(
    "forecaster_queue_series",
    "Series admitted and not yet answered (waiting for or in a forward pass).",
    ["model"],
    multiprocess_mode="livesum",
)
REJECTIONS = Counter(
    "forecaster_rejections",
    "Requests answered with an error, by model and reason (malformed_json, ...).",
    ["model", "reason"],
)
MODEL_INFO = Gauge(
    "forecaster_model_info",
    "Each served model; value 1, its name and version in labels.",
    ["model", "version"],
    multiprocess_mode="max",
)


@cache
def by_status(model: str, code: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram of one model and HTTP status (looked up
    once: `.labels()` takes a lock and builds a key on every call)."""
    return REQUESTS.labels(model, str(code)), LATENCY.labels(model, str(code))


@cache
def rejections(model: str, reason: str) -> Counter:
    return REJECTIONS.labels(model, reason)


@dataclass(frozen=True)
class ModelMetrics:
    """One model's children of the per-model metrics, bound once at start-up."""

    series: Counter
    truncated: Counter
    history_length: Histogram
    call_series: Histogram
    call_padding: Histogram
    queue_wait: Histogram
    compute: Histogram
    queue_series: Gauge

    @classmethod
    def of(cls, model: str) -> ModelMetrics:
        return cls(
            series=SERIES.labels(model),
            truncated=TRUNCATED.labels(model),
            history_length=HISTORY_LENGTH.labels(model),
            call_series=CALL_SERIES.labels(model),
            call_padding=CALL_PADDING.labels(model),
            queue_wait=QUEUE_WAIT.labels(model),
            compute=COMPUTE.labels(model),
            queue_series=QUEUE_SERIES.labels(model),
        )


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc: trust the signal check
        return True
    return state not in ("Z", "X")


def forget_dead_processes(path: str | None = None) -> list[int]:
    """Remove the live-gauge files of processes that are gone from the multiprocess
    directory (`path`, else $PROMETHEUS_MULTIPROC_DIR); the pids removed. Counters and
    histograms of those processes stay: what they counted did happen."""
    path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return []
    pids = {int(m[1]) for name in os.listdir(path) if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    dead = sorted(pid for pid in pids if not alive(pid))
    for pid in dead:
        mark_process_dead(pid, path)
    return dead

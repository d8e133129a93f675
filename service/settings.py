"""Every knob of the service, read once from `FORECASTER_*` environment variables.

Each field has a default, so `bentoml serve` on a fresh clone needs no configuration.
The batching defaults come from measurement (see docs/SERVING.md, "Batching settings").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; `FORECASTER_<FIELD>` overrides each one (e.g. `FORECASTER_MODELS`)."""

    model_config = SettingsConfigDict(env_prefix="FORECASTER_", extra="ignore", frozen=True)

    models: str = Field(
        default="models",
        description=(
            "The models to serve: a directory whose subfolders are exported models, one "
            "model folder (model.ts + metadata.json), or a comma-separated list of those "
            "and BentoML model store tags (forecaster-m3-monthly:latest). Relative paths are "
            "tried against the working directory, then the project root."
        ),
    )
    default_model: str = Field(
        default="m3-monthly",
        description=(
            "The model a request that names none gets (and GET /model describes). When "
            "only one model is served, that one, whatever its name."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description=(
            "Where the models run: cuda, cpu, or auto (CUDA when torch sees a GPU). Each "
            "batch is copied there and its forecasts back."
        ),
    )
    batching: bool = Field(
        default=True,
        description=(
            "Merge concurrent requests' series into shared forward passes. False: each "
            "request's series go to the model in the request's own forward pass (same "
            "validation, responses and metrics; no queue, so no waiting-time 503s)."
        ),
    )
    trace_requests: bool = Field(
        default=False,
        description=(
            "Run /forecast and /model through BentoML's OpenTelemetry middleware. Off by "
            "default: with no exporter configured it only costs CPU (docs/LOAD.md, tuning "
            "notes)."
        ),
    )
    access_log: bool = Field(
        default=False,
        description=(
            "BentoML's per-request access log line (method, path, status, latency; never "
            "bodies). Off by default: an ingress usually logs requests already."
        ),
    )
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Most series the batcher merges into one dispatch.",
    )
    batch_linger_ms: float = Field(
        default=20.0,
        ge=0,
        description=(
            "Longest the batcher holds a dispatch (counted from its oldest request) while "
            "fewer series are queued than were pending at the busiest moment of the "
            "previous pass; it goes earlier once 2 ms pass without a new request. 0: never "
            "wait. One client at a time never waits."
        ),
    )
    max_latency_ms: int = Field(
        default=2000,
        ge=10,
        description=(
            "Longest a request may wait in the batching queue; one still waiting then is "
            "answered 503 (overloaded) without running."
        ),
    )
    max_padded_cost: int = Field(
        default=8192,
        ge=1,
        description=(
            # 64 rows of 126 points: one pass for a full dispatch of M3 monthly
            # histories (docs/SERVING.md, "Batching settings").
            "Budget of one forward pass: rows * longest (possibly truncated) history. "
            "A dispatch over budget is split into several passes."
        ),
    )
    max_queue_series: int = Field(
        default=1024,
        ge=1,
        description=(
            "Most series one worker holds admitted but unanswered; a request that would go "
            "past it is answered 503 (queue_full) at once, without waiting. A request "
            "arriving at an empty queue is always admitted."
        ),
    )
    max_series_per_request: int = Field(default=256, ge=1, description="Series in one request.")
    max_points_per_request: int = Field(
        default=100_000, ge=1, description="History points summed over a request's series."
    )
    max_body_bytes: int = Field(
        default=2_000_000, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    max_abs_value: float = Field(
        default=1e15,
        gt=0,
        description="Largest |value| accepted in a history (float32 keeps forecasts finite).",
    )
    api_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Bearer token every request must carry (`Authorization: Bearer <token>`); empty: "
            "no authentication. Health probes and /metrics follow auth_health / auth_metrics."
        ),
    )
    auth_health: bool = Field(
        default=False,
        description="With api_token set, require it on /livez, /readyz, /healthz too.",
    )
    auth_metrics: bool = Field(
        default=False, description="With api_token set, require it on /metrics too."
    )
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per worker.")
    workers: int = Field(default=1, ge=1, description="BentoML worker processes.")
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest a /forecast request may take to send its body and get its answer "
            "(then 504 timeout); BentoML's request timeout on the other routes."
        ),
    )
    retry_after_s: int = Field(
        default=1,
        ge=0,
        description="Retry-After header value on every 503 (overloaded, queue_full).",
    )
    warmup_rounds: int = Field(
        default=12,
        ge=0,
        description=(
            "Forward passes run at start-up, through the batcher, before /readyz says ready "
            "(TorchScript optimises its graph on the first calls)."
        ),
    )

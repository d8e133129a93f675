"""Start-up as a function: settings in, every model loaded, checked and wired out.

`build(settings)` is all that `service.service` does at import, and what tests and tools
call to get the same service in-process. It raises `StartupError` with one line (the
setting or the model at fault) before anything is served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from contract.frequency import model_frequency
from service import artifact
from service.artifact import Artifact, ArtifactError
from service.engine import Engine, Queued
from service.errors import ClientError
from service.repository import choose_default, locate_models
from service.schemas import Limits
from service.settings import Settings


class StartupError(RuntimeError):
    """The service cannot start; the message is one line naming the setting or model."""


@dataclass(frozen=True)
class Served:
    """One served model: its artifact, the limits requests must keep, its engine."""

    artifact: Artifact
    limits: Limits
    engine: Engine
    card: dict[str, Any]


@dataclass(frozen=True)
class Runtime:
    """Every served model of one worker, by name, and the default one."""

    settings: Settings
    models: Mapping[str, Served]
    default: str
    device: str

    @property
    def default_model(self) -> Served:
        return self.models[self.default]

    def model(self, name: str | None) -> Served:
        """The model a request names (None: the default); `ClientError` 404 if unknown."""
        if name is None:
            return self.models[self.default]
        served = self.models.get(name)
        if served is None:
            raise self.unknown(name)
        return served

    def unknown(self, name: str) -> ClientError:
        """The 404 for a model name that is not served, listing those that are."""
        return ClientError(
            "unknown_model", f"model {name!r} is not served; the models are {sorted(self.models)}"
        )

    def catalogue(self) -> dict[str, Any]:
        """GET /models: the default's name and every model's card."""
        return {"default": self.default, "models": [s.card for s in self.models.values()]}

    def set_recording(self, on: bool) -> None:
        for served in self.models.values():
            served.engine.recording = on

    async def warm_up(self, rounds: int) -> None:
        """`rounds` passes per model through its batcher, shortest and longest history in
        turn (TorchScript optimises its graph on the first calls), outside the metrics."""
        self.set_recording(False)
        rng = np.random.default_rng(0)
        try:
            for served in self.models.values():
                lengths = (served.limits.min_history, served.limits.max_history)
                for i in range(rounds):
                    values = rng.normal(100.0, 10.0, lengths[i % 2]).astype(np.float32)
                    await served.engine.dispatch([Queued(values, time.perf_counter())])
        finally:
            self.set_recording(True)


def resolve_device(wanted: str) -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu; `cuda` without one is refused."""
    has_cuda = torch.cuda.is_available()
    if wanted == "auto":
        return "cuda" if has_cuda else "cpu"
    if wanted == "cuda" and not has_cuda:
        raise StartupError("FORECASTER_DEVICE=cuda, but torch sees no CUDA device")
    return wanted


def read_settings() -> Settings:
    """Settings from the environment; `StartupError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise StartupError(
            "; ".join(
                f"FORECASTER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None


def limits_of(found: Artifact, settings: Settings) -> Limits:
    return Limits(
        horizon=found.horizon,
        quantiles=found.quantiles,
        min_history=found.min_history,
        max_history=found.max_history,
        max_series=settings.max_series_per_request,
        max_points=settings.max_points_per_request,
        max_abs_value=settings.max_abs_value,
        frequency=model_frequency(found.frequency),
        model=found.name,
    )


def card_of(found: Artifact, limits: Limits, settings: Settings) -> dict[str, Any]:
    """A model card (GET /models/{name}): the metadata a client needs, the request limits
    and the interval levels its quantiles give."""
    card = {
        **found.card(),
        "levels": limits.levels(),
        "limits": {
            "max_series_per_request": settings.max_series_per_request,
            "max_points_per_request": settings.max_points_per_request,
            "max_body_bytes": settings.max_body_bytes,
            "max_abs_value": settings.max_abs_value,
        },
    }
    json.dumps(card, allow_nan=False)  # a card that cannot be served fails start-up, not GET
    return card


def build(settings: Settings) -> Runtime:
    """Load, check and wire every model `settings` names; `StartupError` if any fails."""
    try:
        found = locate_models(settings.models)
        default = choose_default(list(found), settings.default_model)
        device = resolve_device(settings.device)
        # One model thread for all models: passes never overlap, models take turns.
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        models: dict[str, Served] = {}
        for name, one in found.items():
            module = one.load_checked(device=device)
            limits = limits_of(one, settings)
            engine = Engine(module, one, limits, settings, executor=thread, device=device)
            models[name] = Served(one, limits, engine, card_of(one, limits, settings))
    except ArtifactError as exc:
        raise StartupError(artifact.one_line(exc)) from None
    return Runtime(settings, models, default, device)

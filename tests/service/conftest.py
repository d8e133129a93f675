"""Fixtures for the service tests: a tiny scripted model, its in-process reference, a server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.servers import Server, serve_env
from tests.service.tiny_model import write_tiny_artifact

# Small limits, so that the limit tests send small bodies.
TEST_LIMITS = {
    "FORECASTER_MAX_SERIES_PER_REQUEST": "50",
    "FORECASTER_MAX_POINTS_PER_REQUEST": "2000",
    "FORECASTER_MAX_BODY_BYTES": "65536",
}

Reference = Callable[[list[float]], np.ndarray]


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def reference(tiny_artifact: Path) -> Reference:
    """The artifact run in-process on one series alone: `(H, Q)` float32."""
    module = torch.jit.load(str(tiny_artifact / "model.ts"), map_location="cpu").eval()

    def forecast_alone(values: list[float]) -> np.ndarray:
        x = torch.tensor([values], dtype=torch.float32)  # (1, T)
        with torch.inference_mode():
            return module(x, torch.tensor([len(values)])).numpy()[0]  # (H, Q)

    return forecast_alone


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.fixture(scope="session")
def server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    """One `bentoml serve` on the tiny model for the whole session (start-up takes seconds)."""
    env = serve_env(tiny_artifact, bentoml_home)
    with Server({**env, **TEST_LIMITS}) as running:
        yield running

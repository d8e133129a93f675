"""Fixtures for the service tests: tiny scripted models, their in-process references, servers."""

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


# name -> (metadata frequency, seed): three models of different weights.
MODELS = {"tiny": ("monthly", 0), "tiny-q": ("quarterly", 1), "tiny-any": ("other", 2)}
References = dict[str, Callable[[list[float]], np.ndarray]]


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models/ folder of three tiny models (and a staging folder that is not one)."""
    root = tmp_path_factory.mktemp("repository")
    for name, (frequency, seed) in MODELS.items():
        write_tiny_artifact(root / name, seed=seed, name=name, frequency=frequency)
    write_tiny_artifact(root / ".tiny.staging-1", seed=9, name="half-written")
    return root


@pytest.fixture(scope="session")
def references(repository: Path) -> References:
    """Each model run in-process with plain torch.jit.load, on one series alone: (H, Q)."""

    def alone(name: str) -> Callable[[list[float]], np.ndarray]:
        module = torch.jit.load(str(repository / name / "model.ts")).eval()

        def run(values: list[float]) -> np.ndarray:
            with torch.inference_mode():
                out = module(torch.tensor([values]), torch.tensor([len(values)]))
            return out.numpy()[0]  # (H, Q)

        return run

    return {name: alone(name) for name in MODELS}


@pytest.fixture(scope="session")
def served(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `bentoml serve` of the whole repository, default model "tiny"."""
    env = serve_env(repository, tmp_path_factory.mktemp("home"), default_model="tiny")
    with Server(env) as server:
        yield server

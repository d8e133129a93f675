"""A real `bentoml serve` on the tiny model, with a token and small request limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Server, serve_env
from tests.service.conftest import bentoml_home, reference, tiny_artifact

__all__ = ["bentoml_home", "reference", "tiny_artifact"]  # fixtures shared with tests/service

TOKEN = "client-test-token"
SETTINGS = {
    # Small, so that a few thousand series need many requests and every limit binds sometimes.
    "max_series_per_request": "64",
    "max_points_per_request": "1500",
    "max_body_bytes": "16384",
    # One series per forward pass, so that every forecast is bit-equal to the model run on
    # that series alone: a batched pass differs from it in the last float32 bit for about
    # one series in five (torch's LSTM does that in-process too; the service's own tests
    # compare batched answers within a tolerance for this reason).
    "max_batch_size": "1",
}


@pytest.fixture(scope="session")
def server(tiny_artifact: Path, bentoml_home: Path) -> Iterator[Server]:
    """One server for the client tests; every request needs `TOKEN`."""
    env = serve_env(tiny_artifact, bentoml_home, api_token=TOKEN, **SETTINGS)
    with Server(env) as running:
        yield running

"""Fixtures for the benchmark tooling: a stand-in artifact of the real architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.standin import write_standin


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained 2x64 stacked LSTM, horizon 18, quantiles (0.1, 0.5, 0.9)."""
    return write_standin(tmp_path_factory.mktemp("model") / "standin", hidden=16, layers=2)

"""The load tests reuse the benchmark tier's stand-in artifact."""

from __future__ import annotations

from tests.bench.conftest import standin

__all__ = ["standin"]

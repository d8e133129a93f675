"""The short `make load`: locust against a real `bentoml serve` on a stand-in model."""

from __future__ import annotations

from pathlib import Path

import pytest

from load_tests.run_load import run


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_short_locust_run_has_requests_and_no_failures(standin: Path, tmp_path: Path) -> None:
    """Guards against a service that fails (or answers wrongly) under concurrent load."""
    status, rows = run(standin, seconds=20, users=8, csv_prefix=tmp_path / "load")
    total = next(r for r in rows if r.name.endswith("Aggregated"))
    assert total.failures == 0, rows
    assert total.requests > 0
    assert {r.name for r in rows} >= {"POST /forecast [1 series]", "POST /forecast [64 series]"}
    assert status == 0

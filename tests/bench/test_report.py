"""Medians, floors and the BENCHMARKS.md block of the benchmark report."""

from __future__ import annotations

from typing import Any

import pytest

from bench.benchmark import call_series, finite
from bench.report import (
    BEGIN,
    END,
    floors,
    markdown,
    median_point,
    model_share,
    replace_between_markers,
)


def single(users: int, rps: float, errors: int = 0, p99: float = 100.0) -> dict[str, Any]:
    return {
        "users": users,
        "series_per_request": 1,
        "requests_per_s": rps,
        "series_per_s": rps,
        "p50_ms": 10.0,
        "p95_ms": 50.0,
        "p99_ms": p99,
        "errors": errors,
        "warmup_errors": 0,
        "cpu_ms_per_series": 1.0,
        "series_per_call": 4.0,
    }


def limit_point(mode: str, series_per_s: float, cpu_ms: float) -> dict[str, Any]:
    return {
        "mode": mode,
        "batch_size": 64,
        "series_per_s": series_per_s,
        "cpu_ms_per_series": cpu_ms,
    }


def result(ours: float, nobatch: float, ts: float, bulk_sps: float) -> dict[str, Any]:
    bulk = {**single(4, bulk_sps / 64), "series_per_request": 64, "series_per_s": bulk_sps}
    return {
        "created": "2026-01-01T00:00:00+00:00",
        "machine": {"cpu_model": "CPU", "cores": 2, "load_before": 0.1, "load_after": 0.2},
        "versions": {"torch": "2.13.0"},
        "config": {
            "server_core": 0,
            "client_core": 1,
            "model": "m",
            "model_version": "v",
            "reps": 3,
            "duration_s": 10.0,
            "warmup_s": 3.0,
            "history_lengths": "48–126",
            "bulk_series": 64,
            "bulk_users": 4,
        },
        "limit": {
            "points": [
                limit_point("packed", 1000.0, 1.0),
                limit_point("padded", 2000.0, 0.5),
            ]
        },
        "contenders": {
            "ours": {"single": [single(32, ours)], "bulk": bulk, "error": None},
            "nobatch": {"single": [single(32, nobatch)], "bulk": None, "error": None},
            "torchserve": {"single": [single(32, ts)], "bulk": None, "error": None},
        },
    }


def test_median_sums_errors_and_keeps_point_settings() -> None:
    """Guards against one failing repetition disappearing into a median of zeros."""
    reps = [single(32, 100.0), single(32, 300.0, errors=2), single(32, 200.0)]
    point = median_point(reps)
    assert point["requests_per_s"] == 200.0
    assert point["errors"] == 2
    assert point["users"] == 32 and isinstance(point["users"], int)
    assert point["reps"] == 3


def test_floors_pass_and_fail_on_their_thresholds() -> None:
    passing = {f["floor"]: f["passed"] for f in floors(result(130.0, 100.0, 99.0, 500.0))}
    assert all(passing.values()), passing
    failing = floors(result(129.0, 100.0, 200.0, 499.0))
    assert [f["passed"] for f in failing] == [False, False, True, True, False]
    assert failing[0]["measured"] == 1.29


def test_floors_fail_when_a_contender_is_missing() -> None:
    """Guards against a floor 'passing' because TorchServe never started."""
    data = result(130.0, 100.0, 99.0, 500.0)
    data["contenders"]["torchserve"] = {"single": [], "bulk": None, "error": "no java"}
    verdict = {f["floor"]: f for f in floors(data)}
    ts = verdict["req/s at 32 users, ours / TorchServe"]
    assert ts["passed"] is False and ts["measured"] is None


def test_markdown_has_every_contender_and_the_limit() -> None:
    data = result(130.0, 100.0, 99.0, 500.0)
    data["floors"] = floors(data)
    text = markdown(data)
    assert "| ours (adaptive batching) | 32 | 130.0 |" in text
    assert "| TorchServe | 32 | 99.0 |" in text
    assert "| 64 | 1,000 | 1.000 | 2,000 | 0.500 |" in text
    assert "| ours (adaptive batching) | 7.8 | 500 | 100.0 | 0 | 1.000 | 50 % |" in text


def test_markdown_shows_the_load_generator_cost_and_the_machine_drift() -> None:
    data = result(130.0, 100.0, 99.0, 500.0)
    data["contenders"]["ours"]["single"][0]["client_cpu_ms_per_request"] = 0.0876
    data["limit"]["points"].append({**limit_point("packed", 3000.0, 0.33), "batch_size": 32})
    data["limit_after"] = {"points": [{**limit_point("packed", 2400.0, 0.41), "batch_size": 32}]}
    text = markdown(data)
    assert "| ours (adaptive batching) | 32 | 130.0 |" in text
    assert "| 1.00 | 4.0 | 0.088 |" in text
    assert "ran at 3000 series/s before the contenders and 2400 after (0.80×)" in text


def test_a_variant_gets_its_own_rows_and_its_environment_is_named() -> None:
    data = result(130.0, 100.0, 99.0, 500.0)
    data["contenders"]["variant"] = {**data["contenders"]["ours"]}
    data["config"]["variant_env"] = {"FORECASTER_MAX_PADDED_COST": "8192"}
    text = markdown(data)
    assert "| ours, variant (`--variant-env`) | 32 | 130.0 |" in text
    assert "Variant: `FORECASTER_MAX_PADDED_COST=8192`." in text
    assert [f["floor"] for f in floors(data)] == [f["floor"] for f in floors(result(1, 1, 1, 1))]


def test_block_replaced_between_markers_and_the_rest_kept() -> None:
    doc = f"# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n"
    expected = f"# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\nafter\n"
    assert replace_between_markers(doc, "new\n") == expected


def test_markers_appended_when_absent() -> None:
    assert replace_between_markers("# B\n", "t\n") == f"# B\n\n{BEGIN}\nt\n{END}\n"


def test_call_series_reads_the_histogram_sum_and_count() -> None:
    text = (
        "# HELP forecaster_model_call_series Series in one forward pass of the model.\n"
        "# TYPE forecaster_model_call_series histogram\n"
        'forecaster_model_call_series_bucket{le="1.0"} 2.0\n'
        'forecaster_model_call_series_bucket{le="+Inf"} 5.0\n'
        "forecaster_model_call_series_sum 40.0\n"
        "forecaster_model_call_series_count 5.0\n"
    )
    assert call_series(text) == (40.0, 5.0)
    assert call_series("") == (0.0, 0.0)


def test_finite_turns_nan_into_none() -> None:
    assert finite({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}


def test_model_share_interpolates_the_limit_at_the_observed_series_per_call() -> None:
    data = result(130.0, 100.0, 99.0, 500.0)
    data["limit"]["points"] = [
        {"mode": "packed", "batch_size": 1, "series_per_s": 1.0, "cpu_ms_per_series": 0.8},
        {"mode": "packed", "batch_size": 16, "series_per_s": 1.0, "cpu_ms_per_series": 0.4},
        {"mode": "padded", "batch_size": 4, "series_per_s": 1.0, "cpu_ms_per_series": 9.0},
    ]
    share = model_share(data)  # ours: 1.0 CPU-ms per forecast at 4 series per call
    assert share is not None
    assert share["model_ms"] == pytest.approx(0.6)  # halfway between 1 and 16 in log scale
    assert share["model_share"] == pytest.approx(0.6)

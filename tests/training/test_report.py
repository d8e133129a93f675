"""Evaluation figures, table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.baselines import forecast_baseline
from training.data import SeriesSet, load_m3
from training.report import (
    evaluate,
    format_table,
    plot_learning_curve,
    plot_samples,
    write_eval_json,
)

QUANTILES = [0.1, 0.5, 0.9]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def toy_set() -> SeriesSet:
    train = [np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])]
    test = [np.array([4.0, 5.0]), np.array([6.0, 6.0])]
    return SeriesSet("toy", "custom", 2, 1, ["a", "b"], train, test)


def toy_forecasts() -> np.ndarray:
    """[N=2, H=2, Q=3]: median [[4,4],[6,6]], bands around it."""
    lower = [[3.5, 3.0], [5.0, 7.0]]
    median = [[4.0, 4.0], [6.0, 6.0]]
    upper = [[4.5, 4.5], [7.0, 8.0]]
    return np.stack([np.array(lower), np.array(median), np.array(upper)], axis=2)


def test_evaluate_hand_computed() -> None:
    """Guards against scoring a quantile other than the median, or mixing up the baselines.

    Model: sMAPE points 0, 200/9, 0, 0 -> 50/9; MASE (0.5/1 + 0/2)/2 = 0.25; inside
    the band: 4 yes, 5 no, 6 yes, 6 no -> 0.5. Naive (= Naive2 = seasonal naive at
    m=1) [[3,3],[4,4]]: sMAPE (200/7 + 50 + 40 + 40)/4; MASE (1.5/1 + 2/2)/2 = 1.25.
    """
    result = evaluate(toy_set(), toy_forecasts(), QUANTILES)
    assert result["smape"] == pytest.approx(5.555555555555555)
    assert result["mase"] == pytest.approx(0.25)
    assert result["coverage_80"] == 0.5
    for name in ("seasonal_naive", "naive2"):
        assert result["baselines"][name]["smape"] == pytest.approx(39.642857142857146)
        assert result["baselines"][name]["mase"] == pytest.approx(1.25)
    assert {k: result[k] for k in ("dataset", "n_series", "horizon", "season_length")} == {
        "dataset": "toy",
        "n_series": 2,
        "horizon": 2,
        "season_length": 1,
    }


def test_evaluate_scores_the_95_interval_by_its_own_quantiles() -> None:
    """Guards against a 95% coverage read from the 80% quantiles, or the other way round.

    95% bounds [[3, 3], [5, 5]] to [[5, 4.5], [8, 8]]: 4 yes, 5 no, 6 yes, 6 yes -> 0.75;
    the 80% bounds of toy_forecasts cover 0.5.
    """
    lower_95 = np.array([[3.0, 3.0], [5.0, 5.0]])
    upper_95 = np.array([[5.0, 4.5], [8.0, 8.0]])
    toy = toy_forecasts()  # (N, H, 3)
    forecasts = np.concatenate([lower_95[:, :, None], toy, upper_95[:, :, None]], axis=2)
    result = evaluate(toy_set(), forecasts, [0.025, 0.1, 0.5, 0.9, 0.975])
    assert (result["coverage_80"], result["coverage_95"]) == (0.5, 0.75)
    assert result["smape"] == evaluate(toy_set(), toy, QUANTILES)["smape"]
    assert evaluate(toy_set(), toy, QUANTILES)["coverage_95"] is None


def test_evaluate_without_80_interval_and_without_median() -> None:
    """Guards against a coverage figure from the wrong quantiles, or no point forecast."""
    series = toy_set()
    result = evaluate(series, toy_forecasts()[:, :, :2], [0.25, 0.5])
    assert result["coverage_80"] is None
    assert result["coverage_95"] is None
    with pytest.raises(ValueError, match=r"quantiles must include 0.5"):
        evaluate(series, toy_forecasts(), [0.1, 0.4, 0.9])
    with pytest.raises(ValueError, match=r"forecasts must have shape \[N, H, Q\] = \(2, 2, 3\)"):
        evaluate(series, toy_forecasts()[:, :1], QUANTILES)


def test_evaluate_m3_monthly_with_naive2_as_the_model() -> None:
    """Guards against evaluate() scoring the model differently from the baselines it shows.

    Feeding Naive2's own forecasts as the model must give Naive2's figures exactly.
    """
    m3 = load_m3("m3-monthly")
    point = forecast_baseline("naive2", m3)  # (N, H)
    forecasts = np.stack([0.9 * point, point, 1.1 * point], axis=2)  # (N, H, 3)
    result = evaluate(m3, forecasts, QUANTILES)
    assert set(result) == {
        "dataset",
        "frequency",
        "n_series",
        "horizon",
        "season_length",
        "quantiles",
        "smape",
        "mase",
        "coverage_80",
        "coverage_95",
        "cpu_ms_per_series",
        "peers",
        "baselines",
    }
    assert set(result["baselines"]) == {"seasonal_naive", "naive2"}
    assert result["smape"] == result["baselines"]["naive2"]["smape"]
    assert result["mase"] == result["baselines"]["naive2"]["mase"]
    assert 16.5 <= result["smape"] <= 17.5
    assert (result["n_series"], result["horizon"]) == (1428, 18)


def test_format_table_exact() -> None:
    """Guards against misaligned columns or figures printed for the wrong method."""
    result = {
        "dataset": "toy",
        "n_series": 2,
        "horizon": 2,
        "smape": 5.5555,
        "mase": 0.25,
        "coverage_80": 0.5,
        "cpu_ms_per_series": 0.123,
        "peers": {
            "AutoETS": {"smape": 6.0, "mase": 0.3, "coverage_80": 0.75, "cpu_ms_per_series": 55.0}
        },
        "baselines": {
            "seasonal_naive": {"smape": 39.642857, "mase": 1.25},
            "naive2": {"smape": 100.0, "mase": float("nan")},
        },
    }
    assert format_table(result) == (
        "toy: 2 series, horizon 2\n"
        "method           sMAPE   MASE  80% coverage  CPU ms/series\n"
        "model             5.56  0.250          50.0           0.12\n"
        "AutoETS           6.00  0.300          75.0          55.00\n"
        "seasonal_naive   39.64  1.250             -              -\n"
        "naive2          100.00      -             -              -"
    )


def test_format_table_shows_95_coverage_where_a_method_has_it() -> None:
    """Guards against a 95% column dropped, or its figures put in the 80% column."""
    result = {
        "dataset": "toy",
        "n_series": 2,
        "horizon": 2,
        "smape": 5.5555,
        "mase": 0.25,
        "coverage_80": 0.5,
        "coverage_95": 0.75,
        "cpu_ms_per_series": 0.123,
        "peers": {},
        "baselines": {"naive2": {"smape": 100.0, "mase": 1.0}},
    }
    assert format_table(result) == (
        "toy: 2 series, horizon 2\n"
        "method   sMAPE   MASE  80% coverage  95% coverage  CPU ms/series\n"
        "model     5.56  0.250          50.0          75.0           0.12\n"
        "naive2  100.00  1.000             -             -              -"
    )


def test_write_eval_json_is_strict_json(tmp_path: Path) -> None:
    """Guards against NaN written as a bare NaN token, which strict JSON parsers reject."""
    result = evaluate(toy_set(), toy_forecasts(), QUANTILES)
    result["mase"] = float("nan")
    path = tmp_path / "out" / "eval.json"
    write_eval_json(result, path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded["mase"] is None
    assert loaded["coverage_80"] == 0.5
    assert loaded["baselines"]["naive2"]["mase"] == pytest.approx(1.25)


def test_plots_write_png_files(tmp_path: Path) -> None:
    """Guards against plots that raise, need a display, or write empty files."""
    samples = tmp_path / "forecasts.png"
    plot_samples(toy_set(), toy_forecasts(), QUANTILES, samples, n=6, seed=0)
    curve = tmp_path / "curve.png"
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2},
        {"epoch": 2, "train_loss": 0.8, "val_loss": None},
        {"epoch": 3, "train_loss": 0.7, "val_loss": 0.9},
    ]
    plot_learning_curve(history, curve)
    for path in (samples, curve):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000

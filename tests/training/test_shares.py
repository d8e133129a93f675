"""Choosing the Theta share and the interval scale on a validation split (training.shares)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import SeriesSet
from training.metrics import coverage, mase
from training.shares import (
    best_interval_scale,
    best_share,
    best_tail_ratio,
    score_grid,
    score_shares,
)
from training.train import forecast

from .test_theta import ensemble


def test_the_best_share_has_the_lowest_mase_and_the_smaller_of_a_tie() -> None:
    rows = [
        {"theta_weight": 0.0, "mase": 1.2},
        {"theta_weight": 0.3, "mase": 1.1},
        {"theta_weight": 0.6, "mase": 1.1},
        {"theta_weight": 1.0, "mase": 1.3},
    ]
    assert best_share(rows) == (0.3, "MASE")
    assert best_share(rows[2:]) == (0.6, "MASE")


def test_without_any_mase_the_share_is_chosen_by_smape() -> None:
    # Every history constant: no in-sample scale, so no series has a MASE.
    nan = float("nan")
    rows = [
        {"theta_weight": 0.0, "mase": nan, "smape": 0.3},
        {"theta_weight": 0.5, "mase": nan, "smape": 0.1},
        {"theta_weight": 1.0, "mase": nan, "smape": 0.2},
    ]
    assert best_share(rows) == (0.5, "sMAPE")


def test_the_best_interval_scale_covers_nearest_80_percent_and_nearer_1_of_a_tie() -> None:
    rows = [
        {"interval_scale": 0.8, "coverage_80": 0.74},
        {"interval_scale": 0.9, "coverage_80": 0.79},
        {"interval_scale": 1.0, "coverage_80": 0.83},
        {"interval_scale": 1.2, "coverage_80": 0.82},
    ]
    assert best_interval_scale(rows) == 0.9
    assert best_interval_scale(rows[2:]) == 1.2
    tie = [
        {"interval_scale": 0.8, "coverage_80": 0.8},
        {"interval_scale": 1.05, "coverage_80": 0.8},
    ]
    assert best_interval_scale(tie) == 1.05
    assert best_interval_scale([{"interval_scale": 1.0, "coverage_80": None}]) is None


def toy_validation() -> SeriesSet:
    rng = np.random.default_rng(5)
    t = np.arange(36.0)
    histories = [
        50 + k * t / 6 + 4 * np.sin(t * np.pi / 2) + rng.normal(0, 1, 36) for k in range(6)
    ]
    targets = [h[-1] + rng.normal(0, 2, 4) for h in histories]
    return SeriesSet("toy", "toy", 4, 4, [f"s{k}" for k in range(6)], histories, targets)


def test_the_best_tail_ratio_covers_nearest_95_percent_and_the_smaller_of_a_tie() -> None:
    rows = [
        {"tail_ratio": 1.5, "coverage_95": 0.91},
        {"tail_ratio": 1.7, "coverage_95": 0.94},
        {"tail_ratio": 1.9, "coverage_95": 0.965},
        {"tail_ratio": 2.1, "coverage_95": 0.97},
    ]
    assert best_tail_ratio(rows) == 1.7
    assert best_tail_ratio(rows[2:]) == 1.9
    tie = [{"tail_ratio": 1.6, "coverage_95": 0.94}, {"tail_ratio": 1.8, "coverage_95": 0.96}]
    assert best_tail_ratio(tie) == 1.6


def test_each_interval_scale_is_scored_as_that_width_and_the_model_keeps_its_own() -> None:
    validation = toy_validation()
    model = ensemble(0.5)
    rows = score_grid(model, "interval_scale", [0.5, 3.0], validation, 36, [0.1, 0.5, 0.9])
    assert model.interval_scale == 1.0
    plain = forecast(model, validation.train, 36)  # (6, 4, 3)
    for row in rows:
        k = row["interval_scale"]
        lower = plain[:, :, 1] + k * (plain[:, :, 0] - plain[:, :, 1])
        upper = plain[:, :, 1] + k * (plain[:, :, 2] - plain[:, :, 1])
        assert row["coverage_80"] == pytest.approx(coverage(validation.test, lower, upper))
    assert rows[0]["coverage_80"] < rows[1]["coverage_80"]


def test_each_share_is_scored_as_that_combination_and_the_model_keeps_its_own() -> None:
    """Guards against a grid that scores another share than it names, or leaves the model
    with the last share tried (fit exports a model built afresh, theta-grid does not)."""
    validation = toy_validation()
    histories, targets = validation.train, validation.test
    model = ensemble(0.25)
    rows = score_shares(model, validation, [0.0, 0.7], 36, [0.1, 0.5, 0.9])
    assert model.theta_weight == 0.25
    for row in rows:
        points = forecast(ensemble(row["theta_weight"]), histories, 36)[:, :, 1]  # (6, 4)
        assert row["mase"] == pytest.approx(mase(targets, points, histories, 4), rel=1e-9)
    assert rows[0]["mase"] != pytest.approx(rows[1]["mase"], rel=1e-3)

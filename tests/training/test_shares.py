"""Choosing the Theta share on a validation split (training.shares)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import SeriesSet
from training.metrics import mase
from training.shares import best_share, score_shares
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


def test_each_share_is_scored_as_that_combination_and_the_model_keeps_its_own() -> None:
    """Guards against a grid that scores another share than it names, or leaves the model
    with the last share tried (fit exports a model built afresh, theta-grid does not)."""
    rng = np.random.default_rng(5)
    t = np.arange(36.0)
    histories = [
        50 + k * t / 6 + 4 * np.sin(t * np.pi / 2) + rng.normal(0, 1, 36) for k in range(6)
    ]
    targets = [h[-1] + rng.normal(0, 2, 4) for h in histories]
    validation = SeriesSet("toy", "toy", 4, 4, [f"s{k}" for k in range(6)], histories, targets)
    model = ensemble(0.25)
    rows = score_shares(model, validation, [0.0, 0.7], 36, [0.1, 0.5, 0.9])
    assert model.theta_weight == 0.25
    for row in rows:
        points = forecast(ensemble(row["theta_weight"]), histories, 36)[:, :, 1]  # (6, 4)
        assert row["mase"] == pytest.approx(mase(targets, points, histories, 4), rel=1e-9)
    assert rows[0]["mase"] != pytest.approx(rows[1]["mase"], rel=1e-3)

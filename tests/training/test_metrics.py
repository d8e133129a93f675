"""sMAPE, MASE and coverage against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics


def test_smape_hand_computed_with_zero_over_zero() -> None:
    """Guards against a wrong formula and against 0/0 turning the whole mean into NaN.

    Points: 200*2/4 = 100, 0, 0/0 := 0, 200*2/6 = 66.667; mean 41.667.
    """
    actual = np.array([[1.0, 2.0], [0.0, 4.0]])
    forecast = np.array([[3.0, 2.0], [0.0, 2.0]])
    assert metrics.smape(actual, forecast) == pytest.approx(41.666666666666664)
    assert metrics.smape_per_series(actual, forecast) == pytest.approx([50.0, 33.333333333333336])


def test_smape_is_symmetric_in_sign_of_error() -> None:
    """Guards against dividing by |y| only (MAPE) instead of |y| + |f|."""
    assert metrics.smape([np.array([100.0])], [np.array([50.0])]) == pytest.approx(
        66.66666666666667
    )
    assert metrics.smape([np.array([50.0])], [np.array([100.0])]) == pytest.approx(
        66.66666666666667
    )


def test_smape_averages_points_not_series() -> None:
    """Guards against a mean of per-series means when series lengths differ.

    Points 100, 0, 0, 0: 25 over all points (per-series means would give 50).
    """
    actual = [np.array([1.0]), np.array([2.0, 2.0, 2.0])]
    forecast = [np.array([3.0]), np.array([2.0, 2.0, 2.0])]
    assert metrics.smape(actual, forecast) == 25.0


def test_mase_hand_computed_two_series() -> None:
    """Guards against a lag-1 scale where the seasonal lag m is due, and a wrong mean.

    Series 1: in-sample lag-2 differences all 1, MAE 1.5 -> 1.5.
    Series 2: one lag-2 difference, 2; MAE 1.5 -> 0.75. Mean 1.125.
    """
    insample = [np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0]), np.array([10.0, 10.0, 12.0])]
    actual = np.array([[5.0, 7.0], [1.0, 1.0]])
    forecast = np.array([[4.0, 9.0], [2.0, 3.0]])
    assert metrics.mase_per_series(actual, forecast, insample, 2) == pytest.approx([1.5, 0.75])
    assert metrics.mase(actual, forecast, insample, 2) == pytest.approx(1.125)


def test_mase_falls_back_to_lag_one_for_short_history() -> None:
    """Guards against NaN (an empty seasonal difference) when history has <= m points."""
    assert metrics.mase_scale(np.array([1.0, 4.0]), 12) == 3.0
    assert metrics.mase([np.array([0.0])], [np.array([6.0])], [np.array([1.0, 4.0])], 12) == 2.0


def test_mase_skips_series_with_zero_scale() -> None:
    """Guards against inf (or an eps-inflated value) from a constant history swamping the mean."""
    insample = [np.array([5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0])]
    actual = np.array([[5.0], [4.0]])
    forecast = np.array([[6.0], [6.0]])
    per_series = metrics.mase_per_series(actual, forecast, insample, 1)
    assert np.isnan(per_series[0])
    assert per_series[1] == 2.0
    assert metrics.mase(actual, forecast, insample, 1) == 2.0


def test_coverage_hand_computed_bounds_included() -> None:
    """Guards against open intervals (a point on a bound is inside) and a wrong denominator.

    Inside: 1 in [0,2], 2 in [2,2], 4 in [4,5]; outside: 3, 5, 6. So 3/6.
    """
    actual = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    lower = np.array([[0.0, 2.0, 4.0], [4.0, 6.0, 0.0]])
    upper = np.array([[2.0, 2.0, 5.0], [5.0, 7.0, 5.0]])
    assert metrics.coverage(actual, lower, upper) == 0.5
    assert metrics.coverage_per_series(actual, lower, upper) == pytest.approx([2 / 3, 1 / 3])


def test_mismatched_shapes_are_rejected() -> None:
    """Guards against numpy broadcasting a [N, 1] forecast silently over [N, H] actuals."""
    with pytest.raises(ValueError, match="series 0: actual and forecast must have the same length"):
        metrics.smape(np.ones((2, 3)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="same number of series, got 2 and 3"):
        metrics.smape(np.ones((2, 3)), np.ones((3, 3)))

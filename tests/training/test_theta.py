"""The in-module Theta method: the textbook forecast, exact in any batch, equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.baselines import centred_moving_average, seasonality_test
from training.data import load_m3
from training.export import history_scale, random_batch, relative_error
from training.model import (
    ABSOLUTE_SCALE_FLOOR,
    RELATIVE_SCALE_FLOOR,
    EnsembleConfig,
    EnsembleForecaster,
    ModelConfig,
    StackedLSTMForecaster,
)
from training.theta import ALPHAS, SEASONAL_RAMP, SOFT_MINIMUM, ThetaForecaster
from training.windows import pad_right


def theta(horizon: int, season_length: int, lookback: int = 256) -> torch.jit.ScriptModule:
    module = ThetaForecaster(
        horizon, season_length, lookback, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR
    )
    return torch.jit.script(module)


def reference(x: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Theta written out plainly in float64, one series at a time, loops and all."""
    n = len(x)
    indices = np.zeros(m)
    if m > 1 and seasonality_test(x, m):
        deviation = x - centred_moving_average(x, m)  # NaN where the window overhangs
        figure = np.array([np.nanmean(deviation[p::m]) for p in range(m)])
        centred = x - x.mean()
        acf = [centred[k:] @ centred[:-k] / (centred @ centred) for k in range(1, m + 1)]
        limit = 1.645 * np.sqrt((1 + 2 * sum(r * r for r in acf[:-1])) / n)
        strength = min(1.0, (abs(acf[-1]) / limit - 1) / SEASONAL_RAMP)  # > 0: the test passed
        indices = strength * (figure - figure.mean())
    adjusted = x - indices[np.arange(n) % m]
    forecasts, errors = [], []
    for alpha in ALPHAS:
        level, sse = adjusted[0], 0.0
        for value in adjusted[1:]:
            sse += (value - level) ** 2
            level += alpha * (value - level)
        slope = np.polyfit(np.arange(n), adjusted, 1)[0] if n > 1 else 0.0
        h = np.arange(1, horizon + 1)
        trend = slope / 2 * (h - 1 + 1 / alpha - (1 - alpha) ** n / alpha)
        forecasts.append(level + trend)
        errors.append(sse)
    errors_array = np.array(errors)
    best = errors_array.min()
    weights = np.exp(-(errors_array - best) / (SOFT_MINIMUM * best + 1e-300))
    weights /= weights.sum()
    combined = (weights[:, None] * np.array(forecasts)).sum(axis=0)
    return combined + indices[(n - 1 + np.arange(1, horizon + 1)) % m]


@pytest.mark.parametrize("data_set", ["m3-monthly", "m3-quarterly", "m3-yearly"])
def test_theta_is_the_textbook_forecast_on_m3_series(data_set: str) -> None:
    """Guards against a Theta that is not the method it claims: wrong seasonal phase,
    a seasonality test that passes too often or never, smoothing that reads padding, the
    wrong trend term. Twenty M3 series of each frequency, all in one padded batch,
    against the plain float64 loops above."""
    series = load_m3(data_set)
    histories = series.train[::37][:20]
    values, lengths = pad_right(histories)
    with torch.inference_mode():
        out = theta(series.horizon, series.season_length)(
            torch.from_numpy(values), torch.from_numpy(lengths)
        )  # (20, H)
    seasonal = 0
    for row, history in enumerate(histories):
        expected = reference(history.astype(np.float64), series.horizon, series.season_length)
        spread = float(np.abs(history - np.median(history)).max())
        assert np.abs(out[row].double().numpy() - expected).max() <= 1e-3 * spread, row
        seasonal += seasonality_test(history, series.season_length)
    if series.season_length > 1:
        assert 0 < seasonal < len(histories)  # both paths were exercised


def test_theta_is_exact_in_any_batch_and_equivariant() -> None:
    """Guards against padding or another row reaching a series' Theta forecast (the moving
    average, the autocorrelations and the smoothing all run over padded rows) and against
    a forecast that does not follow a shift and positive scale of the history."""
    module = theta(horizon=7, season_length=4, lookback=30)
    values, lengths = random_batch(count=9, min_length=1, max_length=40, seed=21)
    values = values + 3.0 * torch.sin(torch.arange(40.0) * np.pi / 2)  # a season of 4
    with torch.inference_mode():
        batched = module(values, lengths)  # (9, 7)
        alone = torch.cat(
            [module(values[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(9)]
        )
        moved = module(values * 0.01 - 250.0, lengths)
    scale = history_scale(values, lengths)
    assert relative_error(batched, alone, scale) <= 1e-5
    assert relative_error(moved, batched * 0.01 - 250.0, scale * 0.01) <= 1e-4


def test_theta_of_a_constant_history_is_that_constant() -> None:
    module = theta(horizon=5, season_length=12)
    with torch.inference_mode():
        out = module(torch.full((1, 40), -3.5), torch.tensor([40]))
    assert torch.allclose(out, torch.full((1, 5), -3.5))


def ensemble(theta_weight: float) -> EnsembleForecaster:
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        config = ModelConfig(horizon=4, hidden=8, quantiles=(0.1, 0.5, 0.9), season_length=4)
        member = StackedLSTMForecaster(config).eval()
        with torch.no_grad():
            member.head[-1].bias.normal_(std=5.0)  # wide, uneven quantile spreads
        members.append(member)
    return EnsembleForecaster(members, "median", theta_weight, 4, 256).eval()


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_the_theta_share_moves_the_median_and_keeps_the_spread(weight: float) -> None:
    """Guards against combining Theta with the wrong quantile (the point forecast is the
    median), moving quantiles by different amounts (they could cross) or changing the
    ensemble when the share is 0: the median must be (1 - w) * LSTMs + w * Theta and every
    quantile must keep its distance from it."""
    lstm, combined = ensemble(0.0), torch.jit.script(ensemble(weight))
    values, lengths = random_batch(count=12, min_length=1, max_length=30, seed=22)
    with torch.inference_mode():
        alone = lstm(values, lengths)  # (12, 4, 3)
        out = combined(values, lengths)  # (12, 4, 3)
        points = lstm.theta(values, lengths)  # (12, 4)
    expected = (1 - weight) * alone[:, :, 1] + weight * points
    assert torch.allclose(out[:, :, 1], expected, rtol=1e-5, atol=1e-4)
    assert torch.allclose(out - out[:, :, 1:2], alone - alone[:, :, 1:2], atol=1e-4)
    assert (out[:, :, 1:] >= out[:, :, :-1]).all()
    if weight == 0.0:
        assert torch.equal(out, alone)


def test_theta_settings_round_trip_and_are_checked() -> None:
    config = EnsembleConfig(
        members=[ModelConfig(horizon=5)], theta_weight=0.5, theta_season_length=12
    )
    assert EnsembleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"theta_weight must be in \[0, 1\], got 1.5"):
        EnsembleConfig(theta_weight=1.5)

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
from training.theta import (
    ALPHAS,
    DYNAMIC_FIRST_ERROR,
    SEASONAL_RAMP,
    SOFT_MINIMUM,
    TREND_WEIGHTS,
    ThetaForecaster,
)
from training.windows import pad_right


def theta(
    horizon: int, season_length: int, lookback: int = 256, dynamic: tuple[int, int] = (0, 0)
) -> torch.jit.ScriptModule:
    module = ThetaForecaster(
        horizon, season_length, lookback, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR, *dynamic
    )
    return torch.jit.script(module)


def soft_minimum(forecasts: list[np.ndarray], errors: list[float]) -> np.ndarray:
    """The candidates' forecasts weighted by the module's soft minimum of their errors."""
    errors_array = np.array(errors)
    best = errors_array.min()
    weights = np.exp(-(errors_array - best) / (SOFT_MINIMUM * best + 1e-300))
    weights /= weights.sum()
    return (weights[:, None] * np.array(forecasts)).sum(axis=0)


def seasonal_indices(x: np.ndarray, m: int) -> np.ndarray:
    """The additive indices (m,) Theta takes out, zeros where the history is not seasonal."""
    n = len(x)
    indices = np.zeros(m)
    indices = np.zeros(m)
    if m > 1 and seasonality_test(x, m):
        deviation = x - centred_moving_average(x, m)  # NaN where the window overhangs
        figure = np.array([np.nanmean(deviation[p::m]) for p in range(m)])
        centred = x - x.mean()
        acf = [centred[k:] @ centred[:-k] / (centred @ centred) for k in range(1, m + 1)]
        limit = 1.645 * np.sqrt((1 + 2 * sum(r * r for r in acf[:-1])) / n)
        strength = min(1.0, (abs(acf[-1]) / limit - 1) / SEASONAL_RAMP)  # > 0: the test passed
        indices = strength * (figure - figure.mean())
    return indices


def reference(x: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Theta written out plainly in float64, one series at a time, loops and all."""
    n = len(x)
    indices = seasonal_indices(x, m)
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
    combined = soft_minimum(forecasts, errors)
    return combined + indices[(n - 1 + np.arange(1, horizon + 1)) % m]


def dynamic_reference(x: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """The dynamic optimised Theta model as statsforecast's state recursion (level, mean,
    A_n, B_n updated one step at a time), float64, over the module's grid. It runs on the
    history measured from its last value, as in the module: the model's A_n (1-a)^t term
    does not follow a shift of the history, so the origin has to be fixed."""
    n = len(x)
    indices = seasonal_indices(x, m)
    y = x - x[-1] - indices[np.arange(n) % m]
    forecasts, errors = [], []
    for alpha in ALPHAS:
        for w in TREND_WEIGHTS:
            level, mean, a_n, b_n, sse = y[0], y[0], y[0], 0.0, 0.0
            path = []
            for i in range(1, n + horizon):
                mu = level + w * (
                    a_n * (1 - alpha) ** i + b_n * (1 - (1 - alpha) ** (i + 1)) / alpha
                )
                if i < n:
                    sse += (y[i] - mu) ** 2 if i >= DYNAMIC_FIRST_ERROR else 0.0
                    value = y[i]
                else:
                    path.append(mu)
                    value = mu
                level = alpha * value + (1 - alpha) * level
                b_n = ((i - 1) * b_n + 6 * (value - mean) / (i + 1)) / (i + 2)
                mean = (i * mean + value) / (i + 1)
                a_n = mean - b_n * (i + 2) / 2
            forecasts.append(np.array(path))
            errors.append(sse)
    combined = soft_minimum(forecasts, errors)
    return x[-1] + combined + indices[(n - 1 + np.arange(1, horizon + 1)) % m]


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


@pytest.mark.parametrize("data_set", ["m3-quarterly", "m3-yearly"])
def test_dynamic_theta_is_the_models_recursion_on_m3_series(data_set: str) -> None:
    """Guards against a dynamic model that is not Fiorucci et al.'s: a wrong closed form
    for the running least-squares line, an off-by-one in the step powers, forecasts that do
    not feed themselves forward, errors counted from the wrong step. Twenty M3 series in one
    padded batch, the dynamic share 1 from one point on, against the plain recursion."""
    series = load_m3(data_set)
    histories = series.train[5::31][:20]
    values, lengths = pad_right(histories)
    module = theta(series.horizon, series.season_length, dynamic=(0, 1))
    with torch.inference_mode():
        out = module(torch.from_numpy(values), torch.from_numpy(lengths))  # (20, H)
    for row, history in enumerate(histories):
        expected = dynamic_reference(
            history.astype(np.float64), series.horizon, series.season_length
        )
        spread = float(np.abs(history - np.median(history)).max())
        assert np.abs(out[row].double().numpy() - expected).max() <= 1e-3 * spread, row


def test_the_dynamic_share_rises_from_0_to_1_over_the_history_lengths_given() -> None:
    """Guards against the blend of the two Theta forecasts reading the wrong length or
    ramp: below FROM points the standard method alone, from FULL on the dynamic model
    alone, linear between."""
    values, lengths = random_batch(count=6, min_length=2, max_length=24, seed=23)
    lengths = torch.tensor([2, 4, 6, 8, 12, 24])
    with torch.inference_mode():
        standard = theta(5, 1)(values, lengths)  # (6, 5)
        dynamic = theta(5, 1, dynamic=(0, 1))(values, lengths)  # (6, 5)
        blended = theta(5, 1, dynamic=(4, 12))(values, lengths)  # (6, 5)
    share = torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0, 1.0]).unsqueeze(1)  # (6, 1)
    expected = standard + share * (dynamic - standard)
    assert torch.allclose(blended, expected, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(standard[3:], dynamic[3:], atol=1e-2)  # the two differ
    # One pass gives both forecasts, as the standard method and the blend each give them.
    both = torch.jit.script(theta(5, 1, dynamic=(4, 12))).standard_and_blended(values, lengths)
    assert torch.equal(both[0], standard) and torch.equal(both[1], blended)


@pytest.mark.parametrize("dynamic", [(0, 0), (4, 12)])
def test_theta_is_exact_in_any_batch_and_equivariant(dynamic: tuple[int, int]) -> None:
    """Guards against padding or another row reaching a series' Theta forecast (the moving
    average, the autocorrelations, the smoothing and the running trend lines all run over
    padded rows) and against a forecast that does not follow a shift and positive scale of
    the history."""
    module = theta(horizon=7, season_length=4, lookback=30, dynamic=dynamic)
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


@pytest.mark.parametrize("dynamic", [(0, 0), (4, 12)])
def test_theta_of_a_constant_history_is_that_constant(dynamic: tuple[int, int]) -> None:
    module = theta(horizon=5, season_length=12, dynamic=dynamic)
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
        members=[ModelConfig(horizon=5)],
        theta_weight=0.5,
        theta_season_length=12,
        theta_dynamic_from=4,
        theta_dynamic_full=12,
    )
    assert EnsembleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"theta_weight must be in \[0, 1\], got 1.5"):
        EnsembleConfig(theta_weight=1.5)
    with pytest.raises(ValueError, match=r"needs 0 <= FROM < FULL .* got FROM 12 and FULL 4"):
        ThetaForecaster(5, 1, 256, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR, 12, 4)


def test_the_interval_scale_multiplies_each_quantiles_distance_from_the_point() -> None:
    """Guards against an interval scale applied before the Theta move, around anything but
    the point forecast, or to the point forecast itself."""
    plain = ensemble(0.5)
    scaled = ensemble(0.5)
    scaled.interval_scale = 0.8
    values, lengths = random_batch(count=10, min_length=1, max_length=30, seed=24)
    with torch.inference_mode():
        before = plain(values, lengths)  # (10, 4, 3)
        after = torch.jit.script(scaled)(values, lengths)  # (10, 4, 3)
    point = before[:, :, 1:2]
    assert torch.allclose(after, point + 0.8 * (before - point), rtol=1e-5, atol=1e-4)
    assert torch.equal(after[:, :, 1], before[:, :, 1])

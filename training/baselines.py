"""Benchmark forecasts, as the M4 competition's reference code computes them.

Follows `Benchmarks and Evaluation.R` in Mcompetitions/M4-methods (the statistical
benchmarks; `ML_benchmarks.py` there differs in two documented ways, an unsquared ACF1
in the seasonality test and a moving average keyed on the series' length instead of the
window, and is not followed):

- `seasonality_test` is its `SeasonalityTest`: 90% test on the lag-m autocorrelation.
- `seasonal_indices` is R's `decompose(type = "multiplicative")`: centred moving average
  (2 x m for even m), ratios, mean per position, normalised to mean 1. Positions count
  from the first observation of the history, as in `decompose`.
- `naive2` is its Naive2: naive forecast of the deseasonalised series, reseasonalised
  with the indices of the positions that follow the history.
- `seasonal_naive` is its `naive_seasonal`.

One departure, where the reference would output NaN or infinities: a history whose
multiplicative indices are not finite and positive (it holds zeros or negative values,
where a multiplicative decomposition has no meaning) is treated as not seasonal.
"""

from __future__ import annotations

import numpy as np

from training.data import SeriesSet

BASELINES = ("naive", "seasonal_naive", "naive2")

# One-sided 90% critical value of the standard normal, as in the M4 reference code.
SEASONALITY_CRITICAL_VALUE = 1.645


def _check(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    x = np.asarray(history, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] < 1:
        raise ValueError(f"history must be a non-empty 1-D array, got shape {x.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if season_length < 1:
        raise ValueError(f"season_length must be >= 1, got {season_length}")
    return x


def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value, repeated: [horizon]."""
    x = _check(history, horizon, 1)
    return np.full(horizon, x[-1])


def seasonal_naive(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    """The last full season, repeated: [horizon].

    Naive when season_length is 1 or the history is shorter than one season (the
    reference code would then repeat a partial season out of phase).
    """
    x = _check(history, horizon, season_length)
    m = season_length
    if m == 1 or x.shape[0] < m:
        return np.full(horizon, x[-1])
    last_season = x[-m:]  # (m,)
    return last_season[np.arange(horizon) % m]  # (horizon,)


def acf(history: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..max_lag (as R's `acf`): [max_lag].

    NaN for a constant history, whose autocorrelation is undefined.
    """
    x = np.asarray(history, dtype=np.float64)
    centred = x - x.mean()
    denominator = float(centred @ centred)
    if denominator == 0.0:
        return np.full(max_lag, np.nan)
    return np.array([centred[k:] @ centred[:-k] for k in range(1, max_lag + 1)]) / denominator


def seasonality_test(history: np.ndarray, season_length: int) -> bool:
    """Whether the history is seasonal at lag m, by the M3/M4 90% autocorrelation test.

    Seasonal iff |acf_m| > 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2) / n). False for
    m = 1, for n < 3m (too little data to judge) and for a constant history.
    """
    x = np.asarray(history, dtype=np.float64)
    m, n = season_length, x.shape[0]
    if m <= 1 or n < 3 * m:
        return False
    r = acf(x, m)  # r[k-1] is the autocorrelation at lag k
    if np.isnan(r).any():
        return False
    limit = SEASONALITY_CRITICAL_VALUE * np.sqrt((1.0 + 2.0 * np.sum(r[: m - 1] ** 2)) / n)
    return bool(abs(r[m - 1]) > limit)


def centred_moving_average(history: np.ndarray, season_length: int) -> np.ndarray:
    """Centred moving average of order m (2 x m for even m), NaN where the window overhangs."""
    x = np.asarray(history, dtype=np.float64)
    m = season_length
    if m % 2 == 0:
        # An even window has no middle point; averaging two adjacent m-averages centres it.
        weights = np.concatenate([[0.5], np.ones(m - 1), [0.5]]) / m  # (m+1,)
    else:
        weights = np.ones(m) / m  # (m,)
    half = (weights.shape[0] - 1) // 2
    trend = np.full(x.shape[0], np.nan)
    if x.shape[0] >= weights.shape[0]:
        # The weights are symmetric, so convolution equals the centred weighted mean.
        trend[half : x.shape[0] - half] = np.convolve(x, weights, mode="valid")
    return trend


def seasonal_indices(history: np.ndarray, season_length: int) -> np.ndarray:
    """Multiplicative seasonal indices by classical decomposition: [m], mean 1.

    Index i belongs to the positions t with t % m == i, counting from the first point of
    the history. Needs at least two full seasons, as R's `decompose` does.
    """
    x = np.asarray(history, dtype=np.float64)
    m = season_length
    if m == 1:
        return np.ones(1)
    if x.shape[0] < 2 * m:
        raise ValueError(
            f"seasonal_indices needs at least 2 seasons (2 * {m} = {2 * m} points), "
            f"got {x.shape[0]}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = x / centred_moving_average(x, m)  # (n,), NaN at both ends
    padded = np.full(-(-x.shape[0] // m) * m, np.nan)
    padded[: x.shape[0]] = ratios
    figure: np.ndarray = np.nanmean(padded.reshape(-1, m), axis=0)  # (m,)
    indices: np.ndarray = figure / figure.mean()
    return indices


def _usable_indices(x: np.ndarray, season_length: int) -> np.ndarray | None:
    """Seasonal indices for Naive2, or None when the series is to be left as it is."""
    if not seasonality_test(x, season_length):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        indices = seasonal_indices(x, season_length)
    if not (np.isfinite(indices).all() and (indices > 0).all()):
        return None
    return indices


def naive2(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    """Naive forecast of the seasonally adjusted history, reseasonalised: [horizon].

    Equal to the naive forecast when the seasonality test says not seasonal.
    """
    x = _check(history, horizon, season_length)
    m, n = season_length, x.shape[0]
    indices = _usable_indices(x, m) if m > 1 else None
    if indices is None:
        return np.full(horizon, x[-1])
    adjusted_last = float(x[-1] / indices[(n - 1) % m])
    # Forecast step h (0-based) falls on position n + h of the same season cycle.
    forecast: np.ndarray = adjusted_last * indices[(n + np.arange(horizon)) % m]  # (horizon,)
    return forecast


def forecast_baseline(name: str, series_set: SeriesSet) -> np.ndarray:
    """One baseline's forecasts for every series of a set: [N, horizon]."""
    h, m = series_set.horizon, series_set.season_length
    if name == "naive":
        rows = [naive(x, h) for x in series_set.train]
    elif name == "seasonal_naive":
        rows = [seasonal_naive(x, h, m) for x in series_set.train]
    elif name == "naive2":
        rows = [naive2(x, h, m) for x in series_set.train]
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return np.stack(rows) if rows else np.empty((0, h))

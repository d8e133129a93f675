"""Forecast accuracy as the M3/M4 competitions measured it: sMAPE, MASE and interval coverage.

Every function takes either a list of per-series 1-D arrays (lengths may differ) or a
2-D array [N, H]. Aggregates follow the M4 reference code (`Benchmarks and
Evaluation.R`): sMAPE and coverage are means over all points of all series; MASE scales
each series by its own in-sample seasonal-naive error, so it is a mean of per-series
figures.

Two cases the reference code leaves undefined are defined here:

- sMAPE of a point where actual and forecast are both 0 is 0 (a perfect forecast), not
  NaN.
- MASE of a series whose in-sample scale is 0 (every in-sample seasonal difference is 0,
  e.g. a constant history) is undefined: `mase_per_series` returns NaN for it and `mase`
  leaves it out of the mean (NaN only if every series is like that). An epsilon would
  instead give such a series an arbitrary, huge weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Series = Sequence[np.ndarray] | np.ndarray

# The central intervals a report scores wherever a method gives both bounds: level in
# percent -> the (lower, upper) quantiles that bound it.
INTERVALS = {80: (0.1, 0.9), 95: (0.025, 0.975)}


def coverage_key(level: int) -> str:
    """The figure's name in an evaluation: `coverage_80` for the 80% interval."""
    return f"coverage_{level}"


def _as_list(series: Series, what: str) -> list[np.ndarray]:
    """Per-series float64 1-D arrays from a list of arrays or a 2-D array."""
    if isinstance(series, np.ndarray):
        if series.ndim == 1:
            raise ValueError(f"{what} must be a list of 1-D arrays or a 2-D array, got 1-D")
        if series.ndim != 2:
            raise ValueError(f"{what} must be a 2-D array [N, H], got shape {series.shape}")
    out = [np.asarray(s, dtype=np.float64) for s in series]
    for i, s in enumerate(out):
        if s.ndim != 1:
            raise ValueError(f"{what}[{i}] must be 1-D, got shape {s.shape}")
    return out


def _paired(a: Series, b: Series, names: tuple[str, str]) -> tuple[list[np.ndarray], ...]:
    """Both arguments as lists, checked to hold the same number and lengths of series."""
    left, right = _as_list(a, names[0]), _as_list(b, names[1])
    if len(left) != len(right):
        raise ValueError(
            f"{names[0]} and {names[1]} must hold the same number of series, "
            f"got {len(left)} and {len(right)}"
        )
    for i, (x, y) in enumerate(zip(left, right, strict=True)):
        if x.shape != y.shape:
            raise ValueError(
                f"series {i}: {names[0]} and {names[1]} must have the same length, "
                f"got {x.shape[0]} and {y.shape[0]}"
            )
    return left, right


def _smape_points(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """200*|y-f|/(|y|+|f|) per point, 0 where y = f = 0."""
    numerator = 200.0 * np.abs(actual - forecast)
    denominator = np.abs(actual) + np.abs(forecast)
    # The denominator is 0 only where both are 0, and then so is the numerator.
    points: np.ndarray = np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0
    )
    return points


def smape_per_series(actual: Series, forecast: Series) -> np.ndarray:
    """sMAPE (in percent, 0..200) of each series: [N]."""
    ys, fs = _paired(actual, forecast, ("actual", "forecast"))
    return np.array([_smape_points(y, f).mean() for y, f in zip(ys, fs, strict=True)])


def smape(actual: Series, forecast: Series) -> float:
    """mean(200*|y-f|/(|y|+|f|)) over all points of all series, in percent."""
    ys, fs = _paired(actual, forecast, ("actual", "forecast"))
    if not ys:
        raise ValueError("smape needs at least one series")
    return float(np.concatenate([_smape_points(y, f) for y, f in zip(ys, fs, strict=True)]).mean())


def mase_scale(insample: np.ndarray, season_length: int) -> float:
    """mean|x_t - x_{t-m}| over the in-sample part (the seasonal naive's in-sample MAE).

    Falls back to m = 1 when the history is too short for one seasonal difference, and
    is NaN for a history of one point (no difference at all).
    """
    x = np.asarray(insample, dtype=np.float64)
    m = season_length if x.shape[0] > season_length else 1
    if x.shape[0] <= m:
        return float("nan")
    return float(np.abs(x[m:] - x[:-m]).mean())


def mase_per_series(
    actual: Series, forecast: Series, insample: Series, season_length: int
) -> np.ndarray:
    """MASE of each series: [N]; NaN where the in-sample scale is 0 (see module docstring)."""
    if season_length < 1:
        raise ValueError(f"season_length must be >= 1, got {season_length}")
    ys, fs = _paired(actual, forecast, ("actual", "forecast"))
    histories = _as_list(insample, "insample")
    if len(histories) != len(ys):
        raise ValueError(
            f"insample must hold one history per series, got {len(histories)} for {len(ys)}"
        )
    out = np.empty(len(ys))
    for i, (y, f, x) in enumerate(zip(ys, fs, histories, strict=True)):
        scale = mase_scale(x, season_length)
        out[i] = np.abs(y - f).mean() / scale if scale > 0 else np.nan
    return out


def mase(actual: Series, forecast: Series, insample: Series, season_length: int) -> float:
    """Mean over series of mean|y-f| / in-sample seasonal-naive MAE; undefined series skipped."""
    per_series = mase_per_series(actual, forecast, insample, season_length)
    defined = per_series[~np.isnan(per_series)]
    return float(defined.mean()) if defined.size else float("nan")


def coverage_per_series(actual: Series, lower: Series, upper: Series) -> np.ndarray:
    """Fraction of each series' points inside [lower, upper]: [N]."""
    ys, lo = _paired(actual, lower, ("actual", "lower"))
    _, hi = _paired(actual, upper, ("actual", "upper"))
    return np.array(
        [((lo_i <= y) & (y <= hi_i)).mean() for y, lo_i, hi_i in zip(ys, lo, hi, strict=True)]
    )


def coverage(actual: Series, lower: Series, upper: Series) -> float:
    """Fraction of all points inside [lower, upper] (bounds included)."""
    ys, lo = _paired(actual, lower, ("actual", "lower"))
    _, hi = _paired(actual, upper, ("actual", "upper"))
    if not ys:
        raise ValueError("coverage needs at least one series")
    inside = [(lo_i <= y) & (y <= hi_i) for y, lo_i, hi_i in zip(ys, lo, hi, strict=True)]
    return float(np.concatenate(inside).mean())

"""The statistical peers a user would pick instead: statsforecast's AutoETS and AutoTheta.

Each peer is fitted per series on exactly the history the LSTM sees and forecasts the
same horizon, with its own intervals at every level the report scores (`level=[80,
95]`), so the report scores all methods with the same metric code. The CPU time of fit
plus forecast is measured per series (process time, one thread), after one untimed call
that lets numba compile.

statsforecast refuses histories too short for the model's parameters (AutoETS and
AutoTheta raise "tiny datasets" at 6 points or fewer). Such a series gets
statsforecast's `Naive` forecast and interval instead, so a report over short series
still completes; `PeerForecasts.fallbacks` counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import SeriesSet
from training.metrics import INTERVALS

PEERS = ("AutoETS", "AutoTheta")
LEVELS = list(INTERVALS)


@dataclass(frozen=True)
class PeerForecasts:
    """One peer's forecasts for a list of histories."""

    name: str
    point: np.ndarray  # (N, H) the peer's mean forecast
    intervals: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (N, H) lower, upper bounds
    cpu_ms_per_series: float
    fallbacks: int = 0  # series too short for the peer, forecast by Naive instead


def _model_factory(name: str, season_length: int) -> Callable[[], Any]:
    # Imported late: statsforecast pulls in numba and pandas, slow to import.
    from statsforecast.models import AutoETS, AutoTheta, Naive

    if name == "Naive":
        return Naive
    classes = {"AutoETS": AutoETS, "AutoTheta": AutoTheta}
    if name not in classes:
        raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    return lambda: classes[name](season_length=season_length)


def forecast_one(
    name: str, history: np.ndarray, horizon: int, season_length: int
) -> dict[str, np.ndarray]:
    """statsforecast's own answer for one series: {'mean', 'lo-80', 'hi-80', ...} arrays
    (H,), a lower and an upper bound for each of LEVELS."""
    model = _model_factory(name, season_length)()
    out: dict[str, np.ndarray] = model.forecast(
        y=np.asarray(history, dtype=np.float64), h=horizon, level=LEVELS
    )
    return out


def forecast_or_naive(
    name: str, history: np.ndarray, horizon: int, season_length: int
) -> tuple[dict[str, np.ndarray], bool]:
    """`forecast_one`, or Naive's answer for a history too short for the peer; and whether
    it fell back. A constant history is every peer's own constant forecast with a
    zero-width interval, which Naive gives too; statsforecast's AutoETS raises
    IndexError on short constant histories instead of giving it."""
    if np.ptp(history) == 0:
        return forecast_one("Naive", history, horizon, season_length), False
    try:
        return forecast_one(name, history, horizon, season_length), False
    except NotImplementedError:  # statsforecast's "tiny datasets"
        return forecast_one("Naive", history, horizon, season_length), True


def forecast_peer(
    name: str, histories: Sequence[np.ndarray], horizon: int, season_length: int
) -> PeerForecasts:
    """Fit `name` on every history and forecast `horizon` steps with its intervals."""
    if not histories:
        raise ValueError("forecast_peer needs at least one history")
    longest = max(histories, key=len)
    forecast_or_naive(name, longest, horizon, season_length)  # numba compiles here, untimed
    answers = []
    fallbacks = 0
    started = time.process_time()
    for history in histories:
        out, fell_back = forecast_or_naive(name, history, horizon, season_length)
        fallbacks += fell_back
        answers.append(out)
    cpu_ms = 1000.0 * (time.process_time() - started) / len(histories)

    def stacked(key: str) -> np.ndarray:  # (N, H)
        return np.stack([out[key] for out in answers]).astype(np.float64)

    intervals = {level: (stacked(f"lo-{level}"), stacked(f"hi-{level}")) for level in LEVELS}
    return PeerForecasts(name, stacked("mean"), intervals, cpu_ms, fallbacks)


def run_peers(series: SeriesSet) -> list[PeerForecasts]:
    """Every peer fitted on each series' in-sample part, forecasting its horizon."""
    h, m = series.horizon, series.season_length
    return [forecast_peer(name, series.train, h, m) for name in PEERS]

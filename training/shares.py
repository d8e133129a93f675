"""How an ensemble's parts are combined, scored and chosen on a validation split: the
Theta method's share of the forecast and the interval's width.

Neither needs training: the same members and Theta part are combined with each share of
a grid (`EnsembleForecaster.theta_weight`) and every combination is scored on the
validation targets. `fit --theta-weight auto` keeps the share with the lowest MASE;
`theta-grid` prints the whole grid for a model written by `fit --validate-only`. Then
`fit --interval-scale auto` scales every quantile's distance from the point forecast
(`EnsembleForecaster.interval_scale`) by the factor of a grid whose 80% interval covers
the validation targets nearest 80%, and `fit --tail-ratio auto` sets the 95% interval's
bounds the ratio of a grid times as far out (`EnsembleForecaster.tail_ratio`) whose 95%
interval covers them nearest 95%.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from training.data import SeriesSet
from training.metrics import coverage_key
from training.model import EnsembleForecaster
from training.report import evaluate
from training.train import forecast

# The shares `fit --theta-weight auto` tries: 0 (the LSTM members alone) to 1 (Theta alone).
SHARE_GRID = tuple(round(0.1 * k, 1) for k in range(11))
# The interval scales `fit --interval-scale auto` tries: half to twice the members' widths.
SCALE_GRID = tuple(round(0.05 * k, 2) for k in range(10, 41))
# The tail ratios `fit --tail-ratio auto` tries: the 95% interval 1 to 3 times as wide as
# the 80% one (a normal distribution's is 1.53 times).
TAIL_GRID = tuple(round(0.05 * k, 2) for k in range(20, 61))
GRID_FIGURES = ("smape", "mase", "coverage_80", "coverage_95")
FIGURE_NAMES = {"mase": "MASE", "smape": "sMAPE"}


def score_shares(
    model: EnsembleForecaster,
    validation: SeriesSet,
    shares: tuple[float, ...] | list[float],
    max_history: int,
    quantiles: list[float],
) -> list[dict[str, float]]:
    """sMAPE, MASE and interval coverage of `validation` for each share, in the order given;
    the model keeps the share it came with."""
    return score_grid(model, "theta_weight", shares, validation, max_history, quantiles)


def score_grid(
    model: EnsembleForecaster,
    setting: str,
    values: tuple[float, ...] | list[float],
    validation: SeriesSet,
    max_history: int,
    quantiles: list[float],
) -> list[dict[str, float]]:
    """The validation figures with the model's `setting` at each value, in the order given."""
    rows: list[dict[str, Any]] = []
    for value in values:
        with setting_set(model, setting, value):
            result = evaluate(validation, forecast(model, validation.train, max_history), quantiles)
        rows.append({setting: value, **{k: result[k] for k in GRID_FIGURES}})
    return rows


def share_set(model: Any, share: float) -> AbstractContextManager[None]:
    """`model` (an ensemble, eager or scripted) with this Theta share inside the block."""
    return setting_set(model, "theta_weight", share)


@contextmanager
def setting_set(model: Any, setting: str, value: float) -> Iterator[None]:
    """`model` with its attribute `setting` at `value` inside the block and its own value
    again after it, however the block ends."""
    own = getattr(model, setting)
    setattr(model, setting, value)
    try:
        yield
    finally:
        setattr(model, setting, own)


def best_share(rows: list[dict[str, float]]) -> tuple[float, str]:
    """The share with the lowest validation MASE, the smaller share of a tie; and the
    figure it was chosen by. sMAPE stands in where no series has a MASE (every history
    constant, so no in-sample scale)."""
    figure = "mase" if any(math.isfinite(row["mase"]) for row in rows) else "smape"
    scored = [row for row in rows if math.isfinite(row[figure])] or rows
    best = min(scored, key=lambda row: (row[figure], row["theta_weight"]))
    return best["theta_weight"], FIGURE_NAMES[figure]


def best_interval_scale(rows: list[dict[str, float]]) -> float | None:
    """The scale whose 80% coverage is nearest 80%, the one nearer 1 of a tie; None where
    the model has no 80% interval (its quantiles lack 0.1 or 0.9)."""
    return nearest_coverage(rows, "interval_scale", 80)


def best_tail_ratio(rows: list[dict[str, float]]) -> float | None:
    """The tail ratio whose 95% coverage is nearest 95%, the smaller (nearer 1) of a tie."""
    return nearest_coverage(rows, "tail_ratio", 95)


def nearest_coverage(rows: list[dict[str, float]], setting: str, level: int) -> float | None:
    """The value of `setting` whose `level`% interval covers the targets nearest `level`%,
    the one nearer 1 of a tie; None where no row has that interval."""
    key = coverage_key(level)
    scored = [row for row in rows if row[key] is not None]
    if not scored:
        return None
    best = min(scored, key=lambda row: (abs(row[key] - level / 100), abs(row[setting] - 1)))
    return best[setting]

"""The Theta method's share of an ensemble's forecast, scored and chosen on a validation split.

The share needs no training: the same members and Theta part are combined with each share
of a grid (`EnsembleForecaster.theta_weight`) and every combination is scored on the
validation targets. `fit --theta-weight auto` keeps the share with the lowest MASE;
`theta-grid` prints the whole grid for a model written by `fit --validate-only`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from training.data import SeriesSet
from training.model import EnsembleForecaster
from training.report import evaluate
from training.train import forecast

# The shares `fit --theta-weight auto` tries: 0 (the LSTM members alone) to 1 (Theta alone).
SHARE_GRID = tuple(round(0.1 * k, 1) for k in range(11))
GRID_FIGURES = ("smape", "mase", "coverage_80")
FIGURE_NAMES = {"mase": "MASE", "smape": "sMAPE"}


def score_shares(
    model: EnsembleForecaster,
    validation: SeriesSet,
    shares: tuple[float, ...] | list[float],
    max_history: int,
    quantiles: list[float],
) -> list[dict[str, float]]:
    """sMAPE, MASE and 80% coverage of `validation` for each share, in the order given;
    the model keeps the share it came with."""
    rows: list[dict[str, Any]] = []
    for share in shares:
        with share_set(model, share):
            result = evaluate(validation, forecast(model, validation.train, max_history), quantiles)
        rows.append({"theta_weight": share, **{k: result[k] for k in GRID_FIGURES}})
    return rows


@contextmanager
def share_set(model: Any, share: float) -> Iterator[None]:
    """`model` (an ensemble, eager or scripted) with this Theta share inside the block and
    its own share again after it, however the block ends."""
    own = model.theta_weight
    model.theta_weight = share
    try:
        yield
    finally:
        model.theta_weight = own


def best_share(rows: list[dict[str, float]]) -> tuple[float, str]:
    """The share with the lowest validation MASE, the smaller share of a tie; and the
    figure it was chosen by. sMAPE stands in where no series has a MASE (every history
    constant, so no in-sample scale)."""
    figure = "mase" if any(math.isfinite(row["mase"]) for row in rows) else "smape"
    scored = [row for row in rows if math.isfinite(row[figure])] or rows
    best = min(scored, key=lambda row: (row[figure], row["theta_weight"]))
    return best["theta_weight"], FIGURE_NAMES[figure]

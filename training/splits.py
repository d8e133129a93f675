"""Earlier forecast origins cut from a data set: the validation split and backtest windows.

`origin_split(series, k)` moves every series' forecast origin `k` horizons back: the
last `k * horizon` points of the in-sample part are dropped, the next `horizon` become
the target, and the history ends before them. k = 0 is the official split; k = 1 is
the validation split, on which every setting is chosen (each series' last `horizon`
training points). Series whose history would fall below `min_history` are left out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from training.data import SeriesSet


def origin_split(series: SeriesSet, k: int, min_history: int = 1) -> SeriesSet:
    """The set with every origin `k` horizons earlier (k = 0: the set itself)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return series
    h = series.horizon
    ids: list[str] = []
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for sid, history, future in zip(series.ids, series.train, series.test, strict=True):
        whole = np.concatenate([history, future])
        end = whole.shape[0] - (k + 1) * h  # first target index of this origin
        if end < min_history:
            continue
        ids.append(sid)
        train.append(whole[:end])
        test.append(whole[end : end + h])
    if not ids:
        raise ValueError(
            f"{series.name}: no series has a history of {min_history} points "
            f"{k} horizon(s) of {h} before its end"
        )
    return replace(series, ids=ids, train=train, test=test)


def validation_split(series: SeriesSet, min_history: int = 1) -> SeriesSet:
    """Each series' last `horizon` training points as target: where settings are chosen."""
    return origin_split(series, 1, min_history)

"""Packing many variable-length series into few forward passes, and handing rows back.

Pure functions over numpy arrays: no web framework here. The flow for one dispatch
(the series of several concurrent requests, already merged by BentoML's batcher) is

    flatten(requests) -> plan(lengths) -> collate(each sub-batch) -> model -> scatter

`plan` sorts by length and cuts the sorted run into sub-batches whose padded cost
`rows * longest` stays within a budget, so one long history does not pad a whole
batch of short ones. `scatter` puts every output row back at its request and position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (values [B, T] float32, lengths [B] int64) -> forecasts [B, H, Q] float32
ModelFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SubBatch:
    """One forward pass: which flat rows go in, and how much of it is padding."""

    rows: np.ndarray  # (B,) int64 indices into the flat list of series, shortest first
    max_len: int  # T of the padded matrix

    @property
    def cost(self) -> int:
        return len(self.rows) * self.max_len


def plan(lengths: np.ndarray, max_padded_cost: int, max_rows: int | None = None) -> list[SubBatch]:
    """Split series into sub-batches by ascending length under a padded-cost budget.

    Rows are visited shortest first (stable, so equal lengths keep their order). A row
    joins the current sub-batch when `(rows + 1) * its length <= max_padded_cost`
    (its length is the new maximum, since the run is sorted) and `max_rows` allows;
    otherwise it opens a new one. A single row always fits, whatever its length.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    order = np.argsort(lengths, kind="stable")  # (N,)
    batches: list[SubBatch] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order):
            batches.append(SubBatch(order[start:end], int(lengths[order[end - 1]])))
            break
        rows_if_added = end - start + 1
        too_costly = rows_if_added * int(lengths[order[end]]) > max_padded_cost
        too_many = max_rows is not None and rows_if_added > max_rows
        if too_costly or too_many:
            batches.append(SubBatch(order[start:end], int(lengths[order[end - 1]])))
            start = end
    return batches


def collate(series: Sequence[np.ndarray], pad_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad 1-D float arrays into `(values [B, T] float32, lengths [B] int64)`.

    One concatenate and one masked assignment: row-major boolean indexing fills each
    row's first `lengths[i]` cells with that series, in order.
    """
    lengths = np.fromiter((len(s) for s in series), dtype=np.int64, count=len(series))  # (B,)
    width = int(lengths.max()) if len(series) else 0
    values = np.full((len(series), width), pad_value, dtype=np.float32)  # (B, T)
    if len(series):
        mask = np.arange(width)[None, :] < lengths[:, None]  # (B, T)
        values[mask] = np.concatenate(series).astype(np.float32, copy=False)
    return values, lengths


def padding_ratio(batch: SubBatch, lengths: np.ndarray) -> float:
    """Share of the padded matrix that is padding: 1 - observed / (rows * max_len)."""
    if batch.cost == 0:
        return 0.0
    return 1.0 - float(np.asarray(lengths)[batch.rows].sum()) / batch.cost


def flatten(requests: Sequence[Sequence[np.ndarray]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Concatenate the requests' series into one list; `bounds[i]:bounds[i+1]` is request i's."""
    flat = [s for request in requests for s in request]
    bounds = np.zeros(len(requests) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in requests], out=bounds[1:])
    return flat, bounds


def scatter(
    outputs: Sequence[tuple[SubBatch, np.ndarray]], bounds: np.ndarray
) -> list[list[np.ndarray]]:
    """Put every sub-batch row back at its flat position, then cut per request.

    outputs: each sub-batch with its model output `(B, H, Q)`, rows in sub-batch order.
    Returns, per request, its series' `(H, Q)` forecasts in the request's own order.
    """
    total = int(bounds[-1])
    if total == 0:
        return [[] for _ in range(len(bounds) - 1)]
    first = outputs[0][1]
    merged = np.empty((total, *first.shape[1:]), dtype=first.dtype)  # (N, H, Q)
    filled = np.zeros(total, dtype=bool)
    for batch, out in outputs:
        merged[batch.rows] = out
        filled[batch.rows] = True
    # Every row must come back exactly once, or some request would get another's answer.
    assert filled.all(), "scatter: some rows were not produced by any sub-batch"
    return [list(merged[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]


def run_packed(
    requests: Sequence[Sequence[np.ndarray]],
    model: ModelFn,
    max_padded_cost: int,
    max_rows: int | None = None,
    on_pass: Callable[[SubBatch, float, float], None] | None = None,
) -> list[list[np.ndarray]]:
    """Forecast every series of every request in few padded passes; answers per request.

    `on_pass(sub_batch, padding_ratio, seconds)` is called after each forward pass
    (for metrics). The model function must treat rows independently.
    """
    flat, bounds = flatten(requests)
    lengths = np.fromiter((len(s) for s in flat), dtype=np.int64, count=len(flat))
    outputs: list[tuple[SubBatch, np.ndarray]] = []
    for batch in plan(lengths, max_padded_cost, max_rows):
        values, lens = collate([flat[i] for i in batch.rows])  # (B, T), (B,)
        started = time.perf_counter()
        out = model(values, lens)  # (B, H, Q)
        elapsed = time.perf_counter() - started
        if out.shape[0] != len(batch.rows):
            raise RuntimeError(f"model returned {out.shape[0]} rows for {len(batch.rows)} series")
        outputs.append((batch, out))
        if on_pass is not None:
            on_pass(batch, padding_ratio(batch, lengths), elapsed)
    return scatter(outputs, bounds)

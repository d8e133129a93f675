"""Training and validation examples: variable-length histories cut from each series.

Every example is (history, next `horizon` points). Histories have random lengths,
so batches are ragged and the model's packing is exercised in training as well as
in serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    values: Tensor  # (B, T) float32, right-padded with zeros
    lengths: Tensor  # (B,) int64
    targets: Tensor  # (B, H) float32

    def to(self, device: torch.device) -> Batch:
        # lengths stay on the CPU: pack_padded_sequence wants them there.
        return Batch(self.values.to(device), self.lengths, self.targets.to(device))


def pad_right(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack 1-D histories into a zero-padded (B, T) float32 matrix and their lengths (B,)."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    values = np.zeros((len(histories), int(lengths.max())), dtype=np.float32)  # (B, T)
    # Boolean-mask assignment fills each row's first lengths[i] cells in row-major order.
    mask = np.arange(values.shape[1])[None, :] < lengths[:, None]  # (B, T)
    values[mask] = np.concatenate(histories)
    return values, lengths


def make_batch(histories: list[np.ndarray], targets: list[np.ndarray]) -> Batch:
    values, lengths = pad_right(histories)
    return Batch(
        values=torch.from_numpy(values),
        lengths=torch.from_numpy(lengths),
        targets=torch.from_numpy(np.stack(targets).astype(np.float32)),  # (B, H)
    )


def trainable(series: list[np.ndarray], horizon: int, min_history: int) -> list[np.ndarray]:
    """Series long enough for at least one example (min_history points, then horizon more)."""
    return [s for s in series if len(s) >= min_history + horizon]


def draw_origin(low: int, high: int, recency: float, rng: np.random.Generator) -> int:
    """A forecast origin in [low, high]: uniform for recency 1, else weight recency**(high - t)."""
    if recency >= 1.0 or high == low:
        return int(rng.integers(low, high + 1))
    # Truncated geometric distance from the end, drawn by inverting its distribution.
    span = high - low + 1
    u = rng.random()
    back = int(np.floor(np.log1p(-u * (1.0 - recency**span)) / np.log(recency)))
    return high - min(back, span - 1)


def sample_batch(
    series: list[np.ndarray],
    batch_size: int,
    horizon: int,
    min_history: int,
    max_history: int,
    rng: np.random.Generator,
    recency: float = 1.0,
) -> Batch:
    """Draw `batch_size` examples: a random series, a random forecast origin, a random length.

    Origins are uniform over the series (recency 1) or favour its end (see draw_origin).
    Half the examples use all the history available at the origin (up to max_history),
    as at test time; the other half a uniformly random shorter length, so the model
    learns to forecast from short histories too.
    """
    histories, targets = [], []
    for index in rng.integers(0, len(series), size=batch_size):
        s = series[index]
        origin = draw_origin(min_history, len(s) - horizon, recency, rng)  # first target index
        longest = min(origin, max_history)
        length = longest if rng.random() < 0.5 else int(rng.integers(min_history, longest + 1))
        histories.append(s[origin - length : origin])
        targets.append(s[origin : origin + horizon])
    return make_batch(histories, targets)


def last_window_batches(
    series: list[np.ndarray], horizon: int, max_history: int, batch_size: int
) -> list[Batch]:
    """One example per series: its last `horizon` points as target, the rest as history."""
    histories = [s[:-horizon][-max_history:] for s in series]
    targets = [s[-horizon:] for s in series]
    return [
        make_batch(histories[i : i + batch_size], targets[i : i + batch_size])
        for i in range(0, len(series), batch_size)
    ]


def concat_batches(batches: list[Batch]) -> Batch:
    """One batch made of several, rows in order; shorter ones are zero-padded to the longest."""
    if len(batches) == 1:
        return batches[0]
    steps = max(b.values.shape[1] for b in batches)
    values = [torch.nn.functional.pad(b.values, (0, steps - b.values.shape[1])) for b in batches]
    return Batch(
        values=torch.cat(values),  # (sum B, T)
        lengths=torch.cat([b.lengths for b in batches]),  # (sum B,)
        targets=torch.cat([b.targets for b in batches]),  # (sum B, H)
    )

"""Statistics of right-padded histories that read each row's observed points only.

Plain functions over `values: (B, T)` and `lengths: (B,)`, compiled into the exported
module wherever a module calls them (TorchScript scripts called functions too).
"""

from __future__ import annotations

import torch
from torch import Tensor


def observed_mask(values: Tensor, lengths: Tensor) -> Tensor:
    """(B, T) bool: True on each row's first lengths[b] cells."""
    steps = torch.arange(values.shape[1], device=values.device)  # (T,)
    return steps.unsqueeze(0) < lengths.to(values.device).unsqueeze(1)  # (B, T)


def last_points(values: Tensor, lengths: Tensor, lookback: int) -> tuple[Tensor, Tensor]:
    """Each history's last `lookback` points, left-aligned: (B, W) values, (B,) lengths;
    unchanged when `lookback` is 0 or the batch is no wider."""
    if lookback <= 0 or values.shape[1] <= lookback:
        return values, lengths
    lengths = lengths.to(values.device)
    kept = lengths.clamp(max=lookback)  # (B,)
    steps = torch.arange(lookback, device=values.device)  # (W,)
    index = (lengths - kept).unsqueeze(1) + steps.unsqueeze(0)  # (B, W), first kept point on
    # Past a short series' end the index would leave the row: those cells are padding.
    index = index.clamp(max=values.shape[1] - 1)  # (B, W)
    return values.gather(1, index), kept  # (B, W), (B,)


def normalise(
    values: Tensor, lengths: Tensor, relative_floor: float, absolute_floor: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(values - location) / scale on observed points, 0 on padding: (B, T) normalised,
    (B, T) observed mask, (B,) location and (B,) scale (see location_scale)."""
    location, scale = location_scale(values, lengths, relative_floor, absolute_floor)
    observed = observed_mask(values, lengths)  # (B, T)
    # Padding is zeroed so that no garbage in the padded tail can leak through.
    normalised = torch.where(
        observed,
        (values - location.unsqueeze(1)) / scale.unsqueeze(1),
        torch.zeros_like(values),
    )  # (B, T)
    return normalised, observed, location, scale


def location_scale(
    values: Tensor, lengths: Tensor, relative_floor: float, absolute_floor: float
) -> tuple[Tensor, Tensor]:
    """Last observed value and standard deviation of the observed points, each (B,).

    Padding never enters either; the scale is floored at `relative_floor` of the last
    value's size (and at `absolute_floor`) so a constant history divides by a tiny number
    instead of by zero.
    """
    lengths = lengths.to(values.device)
    observed = observed_mask(values, lengths)  # (B, T)
    count = lengths.to(values.dtype)  # (B,)
    masked = torch.where(observed, values, torch.zeros_like(values))  # (B, T)
    mean = masked.sum(dim=1) / count  # (B,)
    deviation = torch.where(
        observed, values - mean.unsqueeze(1), torch.zeros_like(values)
    )  # (B, T)
    # Divided by the largest deviation first, so squaring neither overflows (1e20)
    # nor underflows (1e-25) in float32.
    largest = deviation.abs().amax(dim=1).clamp(min=absolute_floor)  # (B,)
    unit = deviation / largest.unsqueeze(1)  # (B, T), within [-1, 1]
    spread = largest * torch.sqrt((unit * unit).sum(dim=1) / count)  # (B,)
    last = values.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
    floor = (relative_floor * last.abs()).clamp(min=absolute_floor)  # (B,)
    return last, torch.maximum(spread, floor)


def least_squares_slope(values: Tensor, first: Tensor, lengths: Tensor) -> Tensor:
    """Least-squares slope per step through each row's points first..lengths-1, (B,);
    0 where that is a single point."""
    lengths = lengths.to(values.device)
    steps = torch.arange(values.shape[1], device=values.device)  # (T,)
    inside = (steps.unsqueeze(0) >= first.unsqueeze(1)) & (
        steps.unsqueeze(0) < lengths.unsqueeze(1)
    )  # (B, T)
    zeros = torch.zeros_like(values)  # (B, T)
    count = inside.sum(dim=1).to(values.dtype)  # (B,)
    time = steps.to(values.dtype).unsqueeze(0)  # (1, T)
    time_mean = torch.where(inside, time, zeros).sum(dim=1) / count  # (B,)
    value_mean = torch.where(inside, values, zeros).sum(dim=1) / count  # (B,)
    time_dev = torch.where(inside, time - time_mean.unsqueeze(1), zeros)  # (B, T)
    value_dev = torch.where(inside, values - value_mean.unsqueeze(1), zeros)  # (B, T)
    spread = (time_dev * time_dev).sum(dim=1)  # (B,), 0 for a single point
    return (time_dev * value_dev).sum(dim=1) / spread.clamp(min=1e-12)  # (B,)

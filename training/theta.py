"""The Theta method as a TorchScript module, for combination with the LSTM ensemble.

The standard Theta forecast (Assimakopoulos & Nikolopoulos 2000, in the form of
Hyndman & Billah 2003), computed for a whole right-padded batch at once:

1. seasonal adjustment: where the history holds three seasons and passes the M3
   competition's 90% autocorrelation test at lag m (`baselines.seasonality_test`),
   additive seasonal indices by classical decomposition are taken out (faded in over
   the first 10% above the test's limit, see SEASONAL_RAMP);
2. simple exponential smoothing of the adjusted history, for every smoothing weight of a
   grid; each weight's one-step in-sample squared error picks how much it counts (a
   narrow soft minimum, so two near-equal weights share instead of flipping);
3. the theta-2 line's trend: half the least-squares slope of the adjusted history;
4. forecast = smoothed level + slope / 2 * (h - 1 + 1/alpha - (1 - alpha)^n / alpha),
   seasonal index added back.

Every step is linear in the history or invariant to its shift and positive scale, and
the history is normalised (masked.location_scale) before and restored after, so the
forecast of `a * x + b` is `a * forecast(x) + b` as it is for the LSTM members.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.baselines import SEASONALITY_CRITICAL_VALUE
from training.masked import last_points, least_squares_slope, normalise, observed_mask

# Smoothing weights tried for every series.
ALPHAS = tuple(round(0.05 * k, 2) for k in range(1, 21))
# Weights whose in-sample error is within about this fraction of the best one share.
SOFT_MINIMUM = 0.01
# The seasonal adjustment fades in as |acf at lag m| goes from the test's limit to this
# fraction above it: a history on the edge of the test, rounded differently after a shift
# or a scaling, must not be forecast two ways.
SEASONAL_RAMP = 0.1


class ThetaForecaster(nn.Module):
    """Theta point forecasts: forward(values (B, T), lengths (B,)) -> (B, horizon)."""

    def __init__(
        self,
        horizon: int,
        season_length: int,
        lookback: int,
        relative_floor: float,
        absolute_floor: float,
    ) -> None:
        super().__init__()
        if lookback < 1:
            raise ValueError(f"theta lookback must be >= 1, got {lookback}")
        self.horizon = horizon
        self.season_length = season_length
        # Reads each history's last `lookback` points: smoothing costs grow with its square.
        self.lookback = lookback
        self.alphas = list(ALPHAS)
        self.relative_floor = relative_floor
        self.absolute_floor = absolute_floor
        self.critical = SEASONALITY_CRITICAL_VALUE
        self.soft_minimum = SOFT_MINIMUM
        self.seasonal_ramp = SEASONAL_RAMP

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        values, lengths = last_points(values, lengths.to(values.device), self.lookback)
        x, observed, location, scale = normalise(
            values, lengths, self.relative_floor, self.absolute_floor
        )  # (B, W), (B, W), (B,), (B,)
        indices = self.seasonal_indices(x, lengths)  # (B, m), zeros where not seasonal
        m = self.season_length
        phase = torch.arange(x.shape[1], device=x.device) % m  # (W,)
        seasonal = indices.index_select(1, phase)  # (B, W)
        adjusted = torch.where(observed, x - seasonal, torch.zeros_like(x))  # (B, W)

        alphas = torch.tensor(self.alphas, dtype=x.dtype, device=x.device)  # (A,)
        level, weight = self.smooth(adjusted, lengths, alphas)  # (B, A), (B, A)
        first = torch.zeros_like(lengths)  # (B,)
        slope = least_squares_slope(adjusted, first, lengths)  # (B,)
        n = lengths.to(x.dtype).unsqueeze(1).unsqueeze(2)  # (B, 1, 1)
        steps = torch.arange(1, self.horizon + 1, device=x.device)  # (H,)
        h = steps.to(x.dtype).view(1, 1, -1)  # (1, 1, H)
        a = alphas.view(1, -1, 1)  # (1, A, 1)
        damping = h - 1.0 + 1.0 / a - torch.pow(1.0 - a, n) / a  # (B, A, H)
        per_alpha = level.unsqueeze(2) + 0.5 * slope.view(-1, 1, 1) * damping  # (B, A, H)
        adjusted_forecast = (weight.unsqueeze(2) * per_alpha).sum(dim=1)  # (B, H)
        future_phase = (lengths.unsqueeze(1) - 1 + steps.unsqueeze(0)) % m  # (B, H)
        forecast = adjusted_forecast + indices.gather(1, future_phase)  # (B, H)
        return location.unsqueeze(1) + forecast * scale.unsqueeze(1)  # (B, H)

    def seasonal_indices(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Additive indices by classical decomposition, mean 0, (B, m): index p for the
        positions t with t % m == p; zeros unless the history holds three seasons and is
        seasonal by the 90% autocorrelation test."""
        m = self.season_length
        batch, width = x.shape[0], x.shape[1]
        if m == 1 or width < 3 * m:
            return torch.zeros(batch, m, dtype=x.dtype, device=x.device)
        # Centred moving average of order m (2 x m for even m): taps (K,), K odd.
        if m % 2 == 0:
            taps = torch.ones(m + 1, dtype=x.dtype, device=x.device)
            taps[0] = 0.5
            taps[m] = 0.5
        else:
            taps = torch.ones(m, dtype=x.dtype, device=x.device)
        taps = taps / float(m)
        half = (taps.shape[0] - 1) // 2
        trend = nn.functional.conv1d(x.unsqueeze(1), taps.view(1, 1, -1)).squeeze(1)  # (B, W-2h)
        centre = torch.arange(half, width - half, device=x.device)  # (W-2h,)
        # A window must lie inside the row's observed points, padding excluded.
        inside = centre.unsqueeze(0) <= (lengths - 1 - half).unsqueeze(1)  # (B, W-2h)
        deviation = torch.where(inside, x[:, half : width - half] - trend, torch.zeros_like(trend))
        phases = nn.functional.one_hot(centre % m, m).to(x.dtype)  # (W-2h, m)
        sums = deviation @ phases  # (B, m)
        counts = inside.to(x.dtype) @ phases  # (B, m)
        figure = sums / counts.clamp(min=1.0)  # (B, m)
        indices = figure - figure.mean(dim=1, keepdim=True)  # (B, m)
        strength = self.seasonality(x, lengths) * (lengths >= 3 * m).to(x.dtype)  # (B,)
        return indices * strength.unsqueeze(1)  # (B, m)

    def seasonality(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B,) in [0, 1]: 0 unless |acf at lag m| > 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2)
        / n), the M3 test; then rising to 1 at SEASONAL_RAMP above that limit."""
        m = self.season_length
        observed = observed_mask(x, lengths)  # (B, W)
        count = lengths.to(x.dtype)  # (B,)
        mean = x.sum(dim=1) / count  # (B,), padding is 0
        centred = torch.where(observed, x - mean.unsqueeze(1), torch.zeros_like(x))  # (B, W)
        variance = (centred * centred).sum(dim=1)  # (B,)
        below = torch.zeros_like(variance)  # (B,), sum of acf_k^2 for k < m
        at_m = torch.zeros_like(variance)  # (B,)
        for k in range(1, m + 1):
            acf = (centred[:, k:] * centred[:, :-k]).sum(dim=1) / variance.clamp(min=1e-30)
            if k < m:
                below = below + acf * acf
            else:
                at_m = acf
        limit = self.critical * torch.sqrt((1.0 + 2.0 * below) / count)  # (B,)
        strength = ((at_m.abs() / limit - 1.0) / self.seasonal_ramp).clamp(min=0.0, max=1.0)
        return torch.where(variance > 0, strength, torch.zeros_like(strength))  # (B,)

    def smooth(self, y: Tensor, lengths: Tensor, alphas: Tensor) -> tuple[Tensor, Tensor]:
        """Final smoothed level per weight (B, A) and each weight's share (B, A).

        The level after step t is (1-a)^t y_0 + sum_{1<=j<=t} a (1-a)^(t-j) y_j: a causal
        convolution, so padding after a row's end never reaches the levels read before it.
        """
        width = y.shape[1]
        lags = torch.arange(width, dtype=y.dtype, device=y.device)  # (W,)
        powers = torch.pow(1.0 - alphas.unsqueeze(1), lags.unsqueeze(0))  # (A, W), (1-a)^k
        kernel = (alphas.unsqueeze(1) * powers).flip(1).unsqueeze(1)  # (A, 1, W), oldest first
        later = torch.cat([torch.zeros_like(y[:, :1]), y[:, 1:]], dim=1)  # (B, W), y_0 out
        padded = nn.functional.pad(later.unsqueeze(1), [width - 1, 0])  # (B, 1, 2W-1)
        start = powers.unsqueeze(0) * y[:, :1].unsqueeze(2)  # (B, A, W), (1-a)^t y_0
        levels = nn.functional.conv1d(padded, kernel) + start  # (B, A, W), level after step t
        # One-step errors y_t - level_{t-1} for t = 1 .. n-1.
        errors = y[:, 1:].unsqueeze(1) - levels[:, :, :-1]  # (B, A, W-1)
        steps = torch.arange(1, width, device=y.device)  # (W-1,)
        live = (steps.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)  # (B, 1, W-1)
        sse = torch.where(live, errors * errors, torch.zeros_like(errors)).sum(dim=2)  # (B, A)
        best = sse.amin(dim=1, keepdim=True)  # (B, 1)
        weight = torch.softmax(-(sse - best) / (self.soft_minimum * best + 1e-30), dim=1)  # (B, A)
        end = (lengths - 1).view(-1, 1, 1).expand(-1, levels.shape[1], 1)  # (B, A, 1)
        return levels.gather(2, end).squeeze(2), weight

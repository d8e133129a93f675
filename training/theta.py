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

With `dynamic_from < dynamic_full`, the dynamic optimised Theta model (Fiorucci et al.
2016, statsforecast's DOTM) is blended in as histories lengthen: its trend line is
refitted by least squares at every step, its theta and smoothing weight are chosen per
series by the one-step in-sample error over a grid (the same soft minimum), and its
forecast feeds itself forward. Its share of a history of n points rises from 0 at
`dynamic_from` points to 1 at `dynamic_full`: on short histories its two fitted
parameters overfit and the standard method forecasts better. The model's A_n (1-a)^t
term does not follow a shift of the history, so it runs, like the rest, on the history
measured from its last value: the forecast stays equivariant.

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
# The dynamic model's trend-line weights w = 1 - 1/theta tried for every series: theta
# from 1 (no trend) to 20.
TREND_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(20))
# The dynamic model's in-sample errors count from this step on: its first steps forecast
# from a trend line through one to three points (statsforecast's choice too).
DYNAMIC_FIRST_ERROR = 3
# Weights whose in-sample error is within about this fraction of the best one share.
SOFT_MINIMUM = 0.01
# The seasonal adjustment fades in as |acf at lag m| goes from the test's limit to this
# fraction above it: a history on the edge of the test, rounded differently after a shift
# or a scaling, must not be forecast two ways.
SEASONAL_RAMP = 0.1


def check_dynamic_span(dynamic_from: int, dynamic_full: int) -> None:
    """The dynamic model's share rises from 0 at `dynamic_from` points to 1 at
    `dynamic_full`: it needs 0 <= dynamic_from < dynamic_full, or both 0 (off)."""
    if (dynamic_from, dynamic_full) != (0, 0) and not 0 <= dynamic_from < dynamic_full:
        raise ValueError(
            "the dynamic Theta model's share needs 0 <= FROM < FULL (or both 0: the "
            f"standard method alone), got FROM {dynamic_from} and FULL {dynamic_full}"
        )


class ThetaForecaster(nn.Module):
    """Theta point forecasts: forward(values (B, T), lengths (B,)) -> (B, horizon)."""

    def __init__(
        self,
        horizon: int,
        season_length: int,
        lookback: int,
        relative_floor: float,
        absolute_floor: float,
        dynamic_from: int = 0,
        dynamic_full: int = 0,
    ) -> None:
        super().__init__()
        if lookback < 1:
            raise ValueError(f"theta lookback must be >= 1, got {lookback}")
        check_dynamic_span(dynamic_from, dynamic_full)
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
        self.trend_weights = list(TREND_WEIGHTS)
        self.first_error = DYNAMIC_FIRST_ERROR
        # History lengths where the dynamic model's share starts to rise and reaches 1.
        self.dynamic_from = dynamic_from
        self.dynamic_full = dynamic_full

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        return self.standard_and_blended(values, lengths)[1]

    def standard_and_blended(self, values: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The standard method's forecast and this forecaster's own (the standard one moved
        towards the dynamic model's by the history's length; the standard one again without
        a dynamic part), each (B, horizon): one pass serves a caller that needs both."""
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
        levels = self.levels(adjusted, alphas)  # (B, A, W)
        standard = self.standard(adjusted, lengths, alphas, levels)  # (B, H)
        steps = torch.arange(1, self.horizon + 1, device=x.device)  # (H,)
        future_phase = (lengths.unsqueeze(1) - 1 + steps.unsqueeze(0)) % m  # (B, H)
        future_seasonal = indices.gather(1, future_phase)  # (B, H)
        # Back to the original scale.
        location, scale = location.unsqueeze(1), scale.unsqueeze(1)  # (B, 1) each
        standard_points = location + (standard + future_seasonal) * scale  # (B, H)
        if self.dynamic_full == 0:
            return standard_points, standard_points
        dynamic = self.dynamic(adjusted, lengths, alphas, levels)  # (B, H)
        span = float(self.dynamic_full - self.dynamic_from)
        share = ((lengths.to(x.dtype) - self.dynamic_from) / span).clamp(0.0, 1.0)  # (B,)
        blended = standard + share.unsqueeze(1) * (dynamic - standard)  # (B, H)
        return standard_points, location + (blended + future_seasonal) * scale  # (B, H) each

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

    def levels(self, y: Tensor, alphas: Tensor) -> Tensor:
        """Smoothed level after each step for every weight, (B, A, W), starting at y_0.

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
        return nn.functional.conv1d(padded, kernel) + start  # (B, A, W)

    def standard(self, y: Tensor, lengths: Tensor, alphas: Tensor, levels: Tensor) -> Tensor:
        """The standard method's forecast of the adjusted history y (B, W), (B, H): each
        weight's smoothed level plus half the least-squares drift, the weights shared by
        their one-step in-sample errors."""
        # One-step errors y_t - level_{t-1} for t = 1 .. n-1.
        errors = y[:, 1:].unsqueeze(1) - levels[:, :, :-1]  # (B, A, W-1)
        live = live_steps(errors.shape[2], lengths, 1).unsqueeze(1)  # (B, 1, W-1)
        sse = torch.where(live, errors * errors, torch.zeros_like(errors)).sum(dim=2)  # (B, A)
        weight = self.soft_minimum_weights(sse)  # (B, A)
        end = (lengths - 1).view(-1, 1, 1).expand(-1, levels.shape[1], 1)  # (B, A, 1)
        level = levels.gather(2, end).squeeze(2)  # (B, A)
        first = torch.zeros_like(lengths)  # (B,)
        slope = least_squares_slope(y, first, lengths)  # (B,)
        n = lengths.to(y.dtype).unsqueeze(1).unsqueeze(2)  # (B, 1, 1)
        h = torch.arange(1, self.horizon + 1, device=y.device).to(y.dtype).view(1, 1, -1)
        a = alphas.view(1, -1, 1)  # (1, A, 1)
        damping = h - 1.0 + 1.0 / a - torch.pow(1.0 - a, n) / a  # (B, A, H)
        per_alpha = level.unsqueeze(2) + 0.5 * slope.view(-1, 1, 1) * damping  # (B, A, H)
        return (weight.unsqueeze(2) * per_alpha).sum(dim=1)  # (B, H)

    def dynamic(self, y: Tensor, lengths: Tensor, alphas: Tensor, levels: Tensor) -> Tensor:
        """The dynamic optimised Theta model's forecast of y (B, W), (B, H).

        At step t the model predicts y_t as level_{t-1} + w * (A_{t-1} (1-a)^t +
        B_{t-1} (1 - (1-a)^(t+1)) / a), with A_t, B_t the least-squares line through
        y_0..y_t (time counted from 1), w = 1 - 1/theta. Beyond the history each forecast
        is taken as the next observation, as statsforecast's recursion does.
        """
        batch, width = y.shape[0], y.shape[1]
        time = torch.arange(width, dtype=y.dtype, device=y.device)  # (W,), t
        count = time + 1.0  # (W,), points in y_0..y_t
        sums = torch.cumsum(y, dim=1)  # (B, W)
        mean = sums / count  # (B, W)
        # Least-squares slope through (1, y_0) .. (t+1, y_t): the model's recursion for
        # B_t, in closed form. 0 for a single point.
        moments = torch.cumsum(y * count, dim=1) - 0.5 * (count + 1.0) * sums  # (B, W)
        spread = count * (count * count - 1.0) / 12.0  # (W,)
        slope = moments / spread.clamp(min=1.0)  # (B, W)
        intercept = mean - 0.5 * slope * (time + 2.0)  # (B, W)

        a = alphas.view(1, -1, 1)  # (1, A, 1)
        t = time[1:].view(1, 1, -1)  # (1, 1, W-1), the step predicted
        line = (
            intercept[:, :-1].unsqueeze(1) * torch.pow(1.0 - a, t)
            + slope[:, :-1].unsqueeze(1) * (1.0 - torch.pow(1.0 - a, t + 1.0)) / a
        )  # (B, A, W-1)
        # The error of pair (a, w) at step t is residual - w * line: its sum of squares over
        # the live steps expands into three sums per weight, so the (B, A, K, W) errors
        # are never formed. Summed in float64: the expansion cancels where a pair fits well.
        residual = y[:, 1:].unsqueeze(1) - levels[:, :, :-1]  # (B, A, W-1)
        live = live_steps(residual.shape[2], lengths, self.first_error).unsqueeze(1)
        residual = torch.where(live, residual, torch.zeros_like(residual)).double()
        line = torch.where(live, line, torch.zeros_like(line)).double()  # (B, A, W-1)
        w = torch.tensor(self.trend_weights, dtype=torch.float64, device=y.device)  # (K,)
        sse = (
            (residual * residual).sum(dim=2).unsqueeze(2)
            - 2.0 * w * (residual * line).sum(dim=2).unsqueeze(2)
            + w * w * (line * line).sum(dim=2).unsqueeze(2)
        ).clamp(min=0.0)  # (B, A, K)
        weight = self.soft_minimum_weights(sse.flatten(1)).to(y.dtype)  # (B, A*K)

        # Carry each (weight, trend weight) pair's state forward from the row's last point.
        last = (lengths - 1).view(-1, 1)  # (B, 1)
        grid = (batch, alphas.shape[0], len(self.trend_weights))
        level = levels.gather(2, last.unsqueeze(1).expand(-1, grid[1], 1))  # (B, A, 1)
        level = level.expand(grid)  # (B, A, K)
        mean_n = mean.gather(1, last).view(-1, 1, 1).expand(grid)  # (B, A, K)
        slope_n = slope.gather(1, last).view(-1, 1, 1).expand(grid)  # (B, A, K)
        intercept_n = intercept.gather(1, last).view(-1, 1, 1).expand(grid)  # (B, A, K)
        w = w.to(y.dtype).view(1, 1, -1)  # (1, 1, K)
        step = lengths.to(y.dtype).view(-1, 1, 1)  # (B, 1, 1), the next step's t
        forecasts: list[Tensor] = []
        for _ in range(self.horizon):
            decay = torch.pow(1.0 - a, step)  # (B, A, 1)
            ahead = level + w * (
                intercept_n * decay + slope_n * (1.0 - decay * (1.0 - a)) / a
            )  # (B, A, K)
            forecasts.append(ahead)
            level = a * ahead + (1.0 - a) * level
            slope_n = ((step - 1.0) * slope_n + 6.0 * (ahead - mean_n) / (step + 1.0)) / (
                step + 2.0
            )
            mean_n = (step * mean_n + ahead) / (step + 1.0)
            intercept_n = mean_n - 0.5 * slope_n * (step + 2.0)
            step = step + 1.0
        paths = torch.stack(forecasts, dim=3).flatten(1, 2)  # (B, A*K, H)
        return (weight.unsqueeze(2) * paths).sum(dim=1)  # (B, H)

    def soft_minimum_weights(self, sse: Tensor) -> Tensor:
        """Each candidate's share (B, C) from its in-sample sum of squared one-step errors
        (B, C): a narrow soft minimum, so two near-equal candidates share instead of
        flipping."""
        best = sse.amin(dim=1, keepdim=True)  # (B, 1)
        return torch.softmax(-(sse - best) / (self.soft_minimum * best + 1e-30), dim=1)


def live_steps(steps: int, lengths: Tensor, first: int) -> Tensor:
    """(B, steps) bool: True where step j + 1 (column j) lies in first .. lengths - 1, the
    steps a one-step in-sample error is counted at."""
    step = torch.arange(1, steps + 1, device=lengths.device)  # (steps,)
    return (step.unsqueeze(0) >= first) & (step.unsqueeze(0) < lengths.unsqueeze(1))

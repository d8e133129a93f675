"""The stacked LSTM forecaster: config, normalisation, packing and quantile head in one module.

`StackedLSTMForecaster.forward(values, lengths)` is the whole contract with the
service: it takes raw, right-padded histories and returns quantile forecasts in
the original scale. Everything model-specific (normalisation, packing, the encoder,
non-crossing quantiles) happens inside, so the exported TorchScript file needs
nothing else from this repository. `EnsembleForecaster` combines several members
behind the same `forward`, so an ensemble is exported and served like one model.

Normalisation is by a location (the last observed value) and a positive scale (the
standard deviation of the observed points), both taken from observed points only, and
undone on the output. The forecast of `a * x + b` (a > 0) is therefore
`a * forecast(x) + b`: negative, zero-crossing, tiny and huge series are all seen by
the network as the same shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from training.masked import last_points, least_squares_slope, location_scale, normalise
from training.metrics import INTERVALS
from training.theta import ThetaForecaster

# A spread below this fraction of the level is rounding noise of a constant series: the
# scale is floored there, so a constant history is forecast as that constant.
RELATIVE_SCALE_FLOOR = 1e-6
# The floor for an all-zero history, far below any float32 series yet a normal number.
ABSOLUTE_SCALE_FLOOR = 1e-30
COMBINE_RULES = ("median", "mean")
# The most history the Theta part reads: its smoothing cost grows with its square.
DEFAULT_THETA_LOOKBACK = 256
# The members' interval the ensemble widens into its 95% interval (`tail_ratio`), and the
# quantiles that bound the wider one.
TAIL_BASE = INTERVALS[80]
TAIL_QUANTILES = INTERVALS[95]
# The tails go outside every member quantile, so only members of these three have them.
TAILED_MEMBER_QUANTILES = (TAIL_BASE[0], 0.5, TAIL_BASE[1])


def is_tail_ratio(value: float) -> bool:
    """0 (no 95% interval) or at least 1: bounds inside the 80% interval's would cross it."""
    return value == 0.0 or value >= 1.0


@dataclass
class ModelConfig:
    """Everything needed to rebuild the module from its metadata alone."""

    horizon: int = 18
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    bidirectional: bool = False
    learned_init: bool = False
    # The member reads only each history's last `lookback` points (0: all of it).
    lookback: int = 0
    # Above 1, the forecast starts from a blend of naive and seasonal naive (period
    # `season_length`), weighted per step by a gate the network sets for each series.
    season_length: int = 1
    # The seasonal base averages the pattern of this many whole seasons back (each season's
    # offsets from its own last point), where the history holds them: 1 is seasonal naive,
    # more is a steadier pattern for noisy series.
    seasonal_cycles: int = 1
    # The LSTM also reads each step's change since one season earlier (0 in the first
    # season), so a season's pattern reaches it as an input, not only through its memory.
    seasonal_input: bool = False
    # The forecast also starts from a share of the drift (the mean change per step over
    # whole seasons of the history) times the steps ahead, the share set per step by a
    # second gate: trends reach the head as a base to correct, not a pattern to learn.
    trend_base: bool = False
    # The drift is the least-squares slope through those whole seasons' points instead of
    # the change between their two ends, so one noisy end point does not set it.
    trend_fit: bool = False
    # The forecast starts from a blend, set per step by a third gate, of the bases above
    # and the Theta method's forecast (training.theta, over the whole history given), so
    # the network corrects a fitted statistical forecast where it knows better.
    theta_base: bool = False

    def __post_init__(self) -> None:
        self.quantiles = tuple(float(q) for q in self.quantiles)
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if not self.quantiles or list(self.quantiles) != sorted(set(self.quantiles)):
            raise ValueError(f"quantiles must be distinct and increasing, got {self.quantiles}")
        if not all(0.0 < q < 1.0 for q in self.quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {self.quantiles}")
        if 0.5 not in self.quantiles:
            raise ValueError(
                f"quantiles must include 0.5 (the point forecast), got {self.quantiles}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.season_length < 1:
            raise ValueError(f"season_length must be >= 1, got {self.season_length}")
        if self.seasonal_cycles < 1:
            raise ValueError(f"seasonal_cycles must be >= 1, got {self.seasonal_cycles}")
        if self.lookback < 0:
            raise ValueError(f"lookback must be >= 0 (0: the whole history), got {self.lookback}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class StackedLSTMForecaster(nn.Module):
    """Multi-layer LSTM encoder over packed, normalised histories, quantile head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.horizon = config.horizon
        self.n_quantiles = len(config.quantiles)
        self.point_index = list(config.quantiles).index(0.5)
        self.hidden = config.hidden
        self.layers = config.layers
        self.directions = 2 if config.bidirectional else 1
        self.lookback = config.lookback
        # Attributes, not globals: TorchScript compiles attributes into the module.
        self.relative_floor = RELATIVE_SCALE_FLOOR
        self.absolute_floor = ABSOLUTE_SCALE_FLOOR
        self.learned_init = config.learned_init
        self.season_length = config.season_length
        self.seasonal_input = config.seasonal_input and config.season_length > 1
        # Inputs per step: normalised value, its change since the previous step and, with
        # the seasonal input, its change since one season earlier.
        self.lstm = nn.LSTM(
            input_size=3 if self.seasonal_input else 2,
            hidden_size=config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            bidirectional=config.bidirectional,
            batch_first=True,
        )
        states = config.layers * self.directions
        # Zero when learned_init is off; then they stay out of the optimiser.
        self.h0 = nn.Parameter(
            torch.zeros(states, 1, config.hidden), requires_grad=config.learned_init
        )
        self.c0 = nn.Parameter(
            torch.zeros(states, 1, config.hidden), requires_grad=config.learned_init
        )
        self.seasonal_cycles = config.seasonal_cycles
        summary = config.hidden * self.directions
        self.trend_base = config.trend_base
        self.trend_fit = config.trend_fit
        # Per step: Q quantile offsets, then the seasonal gate (with a season), then the
        # Theta gate (with the Theta base), then the trend gate (with the trend base), so
        # the trend gate is always the last output.
        self.outputs = (
            self.n_quantiles
            + (1 if config.season_length > 1 else 0)
            + (1 if config.theta_base else 0)
            + (1 if config.trend_base else 0)
        )
        self.theta_base = config.theta_base
        self.theta_gate = self.n_quantiles + (1 if config.season_length > 1 else 0)
        # The standard Theta method, over as much of each history as an ensemble's Theta
        # part reads by default.
        self.theta = ThetaForecaster(
            config.horizon,
            config.season_length,
            DEFAULT_THETA_LOOKBACK,
            RELATIVE_SCALE_FLOOR,
            ABSOLUTE_SCALE_FLOOR,
        )
        self.head = nn.Sequential(
            nn.Linear(summary, summary),
            nn.GELU(),
            nn.Linear(summary, config.horizon * self.outputs),
        )

    def recent(self, values: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Each history's last `lookback` points, left-aligned: (B, W) values, (B,) lengths."""
        return last_points(values, lengths, self.lookback)

    def location_scale(self, values: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Last observed value and floored standard deviation, each (B,) (masked.location_scale)."""
        return location_scale(values, lengths, self.relative_floor, self.absolute_floor)

    def encode(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Packed stacked LSTM over (B, T, 2) inputs -> the last layer's final state (B, H*dirs)."""
        batch = inputs.shape[0]
        h0 = self.h0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        c0 = self.c0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        if self.training or self.directions == 2 or inputs.is_cuda:
            h_n = self.packed_states(inputs, lengths, h0, c0)  # (layers*dirs, B, H)
        else:
            h_n = self.shared_steps_first(inputs, lengths, h0, c0)  # (layers, B, H)
        if self.directions == 2:
            # Last layer's forward and backward final states; packing makes the backward
            # direction start at each series' own last point, not on padding.
            return torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2H)
        last_layer: Tensor = h_n[-1]  # (B, H)
        return last_layer

    def packed_states(self, inputs: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor) -> Tensor:
        """The LSTM's final states over the packed batch, (layers*dirs, B, H), in input order."""
        # pack_padded_sequence wants CPU int64 lengths; enforce_sorted=False sorts and unsorts.
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed, (h0, c0))
        states: Tensor = h_n
        return states

    def shared_steps_first(self, inputs: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor) -> Tensor:
        """`packed_states` for a forward-only LSTM on CPU, in two calls: the steps every
        history observes as one batch of equal lengths, then the packed rest of the longer
        ones from the states reached. The same steps, none on padding; the first call is
        the CPU's fused LSTM (oneDNN), which a packed batch of unequal lengths cannot use and
        which is several times faster per step, so a batch of histories mostly cut to the
        member's lookback runs mostly there. (layers, B, H)."""
        shortest = int(lengths.min())
        _, (h, c) = self.lstm(inputs[:, :shortest], (h0, c0))  # (layers, B, H) each
        states: Tensor = h
        longer = (lengths > shortest).nonzero().squeeze(1)  # (R,), rows with steps left
        if longer.numel() == 0:
            return states
        rest = inputs.index_select(0, longer)[:, shortest:]  # (R, T - shortest, F)
        left = (lengths.index_select(0, longer) - shortest).cpu()  # (R,)
        packed = pack_padded_sequence(rest, left, batch_first=True, enforce_sorted=False)
        reached = (h.index_select(1, longer).contiguous(), c.index_select(1, longer).contiguous())
        _, (h_rest, _) = self.lstm(packed, reached)  # (layers, R, H)
        return states.index_copy(1, longer, h_rest)  # (layers, B, H)

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        """Forecast quantiles.

        values: (B, T) float32, right-padded raw histories; lengths: (B,) int64, each in [1, T].
        Returns (B, horizon, Q), in the original scale, non-decreasing along Q.
        """
        return self.forecast(values, lengths, self.theta_points(values, lengths))

    def theta_points(self, values: Tensor, lengths: Tensor) -> Tensor:
        """What the Theta base starts from: the Theta forecast of the whole histories given,
        (B, horizon) in the original scale; (B, 0) without the Theta base."""
        if self.theta_base:
            points: Tensor = self.theta(values, lengths)  # (B, horizon)
            return points
        return values.new_zeros(values.shape[0], 0)

    def forecast(self, values: Tensor, lengths: Tensor, theta: Tensor) -> Tensor:
        """`forward` with the Theta base's points given (`theta_points`), so that members of
        an ensemble share one Theta forecast."""
        batch = values.shape[0]
        values, lengths = self.recent(values, lengths)  # (B, W), (B,)
        normalised, observed, location, scale = normalise(
            values, lengths, self.relative_floor, self.absolute_floor
        )  # (B, W), (B, W), (B,), (B,)
        change = torch.cat(
            [torch.zeros_like(normalised[:, :1]), normalised[:, 1:] - normalised[:, :-1]], dim=1
        )  # (B, W)
        features = [normalised, change]
        if self.seasonal_input:
            m = self.season_length
            lagged = torch.cat(
                [normalised[:, :m], normalised[:, :-m]], dim=1
            )  # (B, W), the point one season earlier (itself in the first season)
            seasonal_change = torch.where(observed, normalised - lagged, torch.zeros_like(lagged))
            features.append(seasonal_change)  # (B, W)
        inputs = torch.stack(features, dim=2)  # (B, W, 2 or 3)
        summary = self.encode(inputs, lengths)  # (B, H * directions)

        raw = self.head(summary).view(batch, self.horizon, self.outputs)  # (B, horizon, Q[+1])
        q = self.n_quantiles
        # Lowest quantile free, the rest as positive increments: quantiles cannot cross.
        increments = nn.functional.softplus(raw[:, :, 1:q])  # (B, horizon, Q-1)
        normalised_q = torch.cumsum(
            torch.cat([raw[:, :, :1], increments], dim=2), dim=2
        )  # (B, horizon, Q)
        raw_point = normalised_q[:, :, self.point_index]  # (B, horizon), before any base
        if self.season_length > 1:
            gate = torch.sigmoid(raw[:, :, q])  # (B, horizon), 0: naive, 1: seasonal naive
            base = gate * self.seasonal_naive(normalised, lengths)  # (B, horizon)
            normalised_q = normalised_q + base.unsqueeze(2)  # (B, horizon, Q)
        if self.trend_base:
            gate = torch.sigmoid(raw[:, :, -1])  # (B, horizon), 1: all the drift
            base = gate * self.drift(normalised, lengths)  # (B, horizon)
            normalised_q = normalised_q + base.unsqueeze(2)  # (B, horizon, Q)
        if self.theta_base:
            theta = (theta - location.unsqueeze(1)) / scale.unsqueeze(1)  # (B, horizon)
            gate = torch.sigmoid(raw[:, :, self.theta_gate])  # (B, horizon), 1: all Theta
            bases = normalised_q[:, :, self.point_index] - raw_point  # (B, horizon)
            move = gate * (theta - bases)  # (B, horizon)
            normalised_q = normalised_q + move.unsqueeze(2)  # (B, horizon, Q)
        # Offsets from the last observed value, in units of the scale.
        return location.view(batch, 1, 1) + normalised_q * scale.view(batch, 1, 1)

    def seasonal_naive(self, normalised: Tensor, lengths: Tensor) -> Tensor:
        """The seasonal pattern carried forward, (B, horizon), in normalised units (the last
        value is 0 there): 0 for a history shorter than one season (the naive forecast).

        Season k back offers, for a step of phase p, its point at phase p minus its own last
        point (for k = 1 the last value): the seasonal naive offsets as they would have
        been k - 1 seasons earlier. The base is the mean of these offsets over the last
        `seasonal_cycles` whole seasons the history holds, so 1 is exactly seasonal naive
        and more averages the noise of single points away.
        """
        m = self.season_length
        lengths = lengths.to(normalised.device)
        batch = normalised.shape[0]
        phase = (torch.arange(self.horizon, device=normalised.device) % m).unsqueeze(0)  # (1, H)
        total = torch.zeros(batch, self.horizon, dtype=normalised.dtype, device=normalised.device)
        count = torch.zeros(batch, 1, dtype=normalised.dtype, device=normalised.device)
        for k in range(1, self.seasonal_cycles + 1):
            start = (lengths - k * m).unsqueeze(1)  # (B, 1), season k back starts here
            points = normalised.gather(1, (start + phase).clamp(min=0))  # (B, H)
            end = normalised.gather(1, (start + m - 1).clamp(min=0))  # (B, 1), its last point
            held = start >= 0  # (B, 1), the history holds season k back
            total = total + torch.where(held, points - end, torch.zeros_like(points))  # (B, H)
            count = count + held.to(normalised.dtype)  # (B, 1)
        return total / count.clamp(min=1.0)  # (B, H), 0 where no whole season is held

    def drift(self, normalised: Tensor, lengths: Tensor) -> Tensor:
        """The random walk's drift carried forward, (B, horizon), in normalised units: the
        mean change per step from the earliest point a whole number of seasons before the
        last one (so a season's pattern cancels), or with `trend_fit` the least-squares
        slope through those points, times the steps ahead; 0 for a history shorter than
        one season plus one point."""
        m = self.season_length
        lengths = lengths.to(normalised.device)
        span = torch.div(lengths - 1, m, rounding_mode="floor") * m  # (B,), whole seasons
        first_index = lengths - 1 - span  # (B,)
        if self.trend_fit:
            slope = least_squares_slope(normalised, first_index, lengths)  # (B,)
        else:
            first = normalised.gather(1, first_index.unsqueeze(1)).squeeze(1)  # (B,)
            last = normalised.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,), 0
            slope = (last - first) / span.clamp(min=1).to(normalised.dtype)  # (B,)
        steps = torch.arange(1, self.horizon + 1, device=normalised.device)  # (horizon,)
        return slope.unsqueeze(1) * steps.to(normalised.dtype).unsqueeze(0)  # (B, horizon)


@dataclass
class EnsembleConfig:
    """The members' configs and how their quantiles are combined; rebuilds the ensemble."""

    members: list[ModelConfig] = field(default_factory=lambda: [ModelConfig()])
    combine: str = "median"
    # The Theta method's share of the point forecast (training.theta): every quantile of
    # the members' combination moves by theta_weight * (Theta - their median); 0: LSTMs only.
    theta_weight: float = 0.0
    # Theta's season length and the most history it reads.
    theta_season_length: int = 1
    theta_lookback: int = DEFAULT_THETA_LOOKBACK
    # History lengths over which the dynamic Theta model's share of the Theta part rises
    # from 0 to 1 (training.theta); both 0: the standard Theta method alone.
    theta_dynamic_from: int = 0
    theta_dynamic_full: int = 0
    # Every quantile's distance from the point forecast is multiplied by this, after the
    # Theta move: a width calibrated on validation for a combination whose point forecast
    # errs less than the members' own, whose widths it keeps. 1: the members' widths.
    interval_scale: float = 1.0
    # The 95% interval's bounds (quantiles 0.025 and 0.975) lie this many times as far from
    # the point forecast as the 80% interval's, on each side: tails the members do not
    # learn, calibrated on validation instead. 0: no 95% interval; else at least 1.
    tail_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.theta_weight <= 1.0:
            raise ValueError(f"theta_weight must be in [0, 1], got {self.theta_weight}")
        if not self.interval_scale > 0.0:
            raise ValueError(f"interval_scale must be > 0, got {self.interval_scale}")
        if not is_tail_ratio(self.tail_ratio):
            raise ValueError(f"tail_ratio must be 0 (off) or >= 1, got {self.tail_ratio}")
        self.members = [
            m if isinstance(m, ModelConfig) else ModelConfig.from_dict(m) for m in self.members
        ]
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        first = self.members[0]
        for i, member in enumerate(self.members):
            if (member.horizon, member.quantiles) != (first.horizon, first.quantiles):
                raise ValueError(
                    f"member {i} forecasts horizon {member.horizon} quantiles "
                    f"{member.quantiles}, member 0 horizon {first.horizon} quantiles "
                    f"{first.quantiles}: members must agree"
                )
        if self.combine not in COMBINE_RULES:
            raise ValueError(
                f"combine must be one of {', '.join(COMBINE_RULES)}, got {self.combine!r}"
            )
        if self.tail_ratio and not self.can_have_tails:
            quantiles = ", ".join(f"{q:g}" for q in TAILED_MEMBER_QUANTILES)
            raise ValueError(
                f"tail_ratio widens members of quantiles {quantiles}; these have {first.quantiles}"
            )

    @property
    def horizon(self) -> int:
        return self.members[0].horizon

    @property
    def member_quantiles(self) -> tuple[float, ...]:
        return self.members[0].quantiles

    @property
    def can_have_tails(self) -> bool:
        """Whether the members' quantiles are those a 95% interval can widen."""
        return self.member_quantiles == TAILED_MEMBER_QUANTILES

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The ensemble's outputs: the members' quantiles, and the tails when it has them."""
        if not self.tail_ratio:
            return self.member_quantiles
        return (TAIL_QUANTILES[0], *self.member_quantiles, TAIL_QUANTILES[1])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "members": list(data["members"])})


class EnsembleForecaster(nn.Module):
    """Several forecasters behind one `forward`: each quantile is the members' median or mean,
    moved, with a Theta share, towards the Theta method's point forecast.

    Both rules are monotone in every member's output, the Theta move shifts every quantile
    of a step alike and a positive interval scale keeps their order, so quantiles that do
    not cross in any member do not cross in the ensemble; tails at least as far out as
    the 80% bounds keep it so. Equivariance to shift and positive scale carries over from
    the members and from Theta, and each step after them is affine in the quantiles.
    """

    def __init__(
        self,
        members: list[StackedLSTMForecaster],
        combine: str = "median",
        theta_weight: float = 0.0,
        theta_season_length: int = 1,
        theta_lookback: int = DEFAULT_THETA_LOOKBACK,
        theta_dynamic_from: int = 0,
        theta_dynamic_full: int = 0,
        interval_scale: float = 1.0,
        tail_ratio: float = 0.0,
        tail_base: tuple[int, int] = (0, 0),
    ) -> None:
        """`tail_base`: the columns of the members' 0.1 and 0.9 quantiles, which `tail_ratio`
        widens into the 95% interval's bounds (EnsembleConfig)."""
        super().__init__()
        if combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {', '.join(COMBINE_RULES)}, got {combine!r}")
        self.members = nn.ModuleList(members)
        self.use_median = combine == "median"
        self.theta_weight = theta_weight
        self.interval_scale = interval_scale
        self.tail_ratio = tail_ratio
        self.tail_base = list(tail_base)
        self.point_index = members[0].point_index
        first = members[0]
        for i, member in enumerate(members):
            if (member.theta_base, member.season_length) != (first.theta_base, first.season_length):
                raise ValueError(
                    f"member {i} has theta_base {member.theta_base} and season length "
                    f"{member.season_length}, member 0 {first.theta_base} and "
                    f"{first.season_length}: members read one Theta base, so they must agree"
                )
        # Where the Theta share's method reads the histories as the members' base does, its
        # standard forecast is their base, so one pass of it gives both.
        self.share_reads_base = first.theta_base and (theta_season_length, theta_lookback) == (
            first.season_length,
            DEFAULT_THETA_LOOKBACK,
        )
        self.theta = ThetaForecaster(
            members[0].horizon,
            theta_season_length,
            theta_lookback,
            RELATIVE_SCALE_FLOOR,
            ABSOLUTE_SCALE_FLOOR,
            theta_dynamic_from,
            theta_dynamic_full,
        )

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        """values: (B, T), lengths: (B,) -> (B, horizon, Q), as each member."""
        # The members agree on their Theta base, so one computation serves them all;
        # (B, horizon), or (B, 0) without it.
        if self.share_reads_base and self.theta_weight > 0.0:
            base, theta = self.theta.standard_and_blended(values, lengths)  # (B, horizon) each
        else:
            # A ModuleList's items are plain Modules to mypy; each is a StackedLSTMForecaster.
            base = self.members[0].theta_points(values, lengths)  # type: ignore[operator]
            theta = self.theta(values, lengths) if self.theta_weight > 0.0 else base
        forecasts = [
            member.forecast(values, lengths, base)  # type: ignore[operator]
            for member in self.members
        ]  # K x (B, horizon, Q)
        stacked = torch.stack(forecasts, dim=0)  # (K, B, horizon, Q)
        if self.use_median:
            # The middle value, or the mean of the middle two for an even K.
            combined = torch.quantile(stacked, 0.5, dim=0)  # (B, horizon, Q)
        else:
            combined = stacked.mean(dim=0)  # (B, horizon, Q)
        if self.theta_weight > 0.0:
            move = self.theta_weight * (theta - combined[:, :, self.point_index])  # (B, horizon)
            combined = combined + move.unsqueeze(2)  # (B, horizon, Q)
        point = combined[:, :, self.point_index : self.point_index + 1]  # (B, horizon, 1)
        if self.interval_scale != 1.0:
            combined = point + self.interval_scale * (combined - point)  # (B, horizon, Q)
        if self.tail_ratio > 0.0:
            low, high = self.tail_base[0], self.tail_base[1]
            lower = point + self.tail_ratio * (combined[:, :, low : low + 1] - point)
            upper = point + self.tail_ratio * (combined[:, :, high : high + 1] - point)
            combined = torch.cat([lower, combined, upper], dim=2)  # (B, horizon, Q + 2)
        return combined


def pinball_loss(forecast: Tensor, target: Tensor, quantiles: Tensor, scale: Tensor) -> Tensor:
    """Mean quantile (pinball) loss, each series divided by its scale so all series weigh alike.

    forecast: (B, H, Q); target: (B, H); quantiles: (Q,); scale: (B,).
    """
    error = (target.unsqueeze(2) - forecast) / scale.view(-1, 1, 1)  # (B, H, Q)
    q = quantiles.view(1, 1, -1)  # (1, 1, Q)
    return torch.maximum(q * error, (q - 1.0) * error).mean()


def rebuild(
    model_config: dict[str, Any], member: type[StackedLSTMForecaster] = StackedLSTMForecaster
) -> nn.Module:
    """An untrained module of the shape metadata.json's `model_config` describes: an
    ensemble (`members`) or a single forecaster; `member` may be a subclass of the
    forecaster. Load the exported file's state_dict into it for its weights."""
    config = config_from_dict(model_config)
    if isinstance(config, ModelConfig):
        return member(config)
    return ensemble_of([member(m) for m in config.members], config)


def config_from_dict(model_config: dict[str, Any]) -> ModelConfig | EnsembleConfig:
    """The config metadata.json's `model_config` holds: an ensemble's (it has `members`)
    or a single forecaster's."""
    if "members" in model_config:
        return EnsembleConfig.from_dict(model_config)
    return ModelConfig.from_dict(model_config)


def ensemble_of(members: list[StackedLSTMForecaster], config: EnsembleConfig) -> EnsembleForecaster:
    """The ensemble `config` describes, around these members (trained or not)."""
    return EnsembleForecaster(
        members,
        config.combine,
        config.theta_weight,
        config.theta_season_length,
        config.theta_lookback,
        config.theta_dynamic_from,
        config.theta_dynamic_full,
        config.interval_scale,
        config.tail_ratio,
        tail_base(config.member_quantiles),
    )


def tail_base(quantiles: tuple[float, ...]) -> tuple[int, int]:
    """The columns of TAIL_BASE among the members' quantiles; (0, 0) where they lack it
    (an ensemble without tails never reads them)."""
    if not set(TAIL_BASE) <= set(quantiles):
        return (0, 0)
    return (quantiles.index(TAIL_BASE[0]), quantiles.index(TAIL_BASE[1]))

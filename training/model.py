"""The stacked LSTM forecaster: config, scaling, packing and quantile head in one module.

`StackedLSTMForecaster.forward(values, lengths)` is the whole contract with the
service: it takes raw, right-padded histories and returns quantile forecasts in
the original scale. Everything model-specific (scaling, packing, the encoder,
non-crossing quantiles) happens inside, so the exported TorchScript file needs
nothing else from this repository.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


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
    # Mean |value| over the last `scale_window` observed points is the series scale.
    scale_window: int = 12

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class StackedLSTMForecaster(nn.Module):
    """Multi-layer LSTM encoder over packed, per-series-scaled histories, quantile head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.horizon = config.horizon
        self.n_quantiles = len(config.quantiles)
        self.hidden = config.hidden
        self.layers = config.layers
        self.directions = 2 if config.bidirectional else 1
        self.scale_window = config.scale_window
        self.learned_init = config.learned_init
        # Inputs per step: scaled value and its change since the previous step.
        self.lstm = nn.LSTM(
            input_size=2,
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
        summary = config.hidden * self.directions
        self.head = nn.Sequential(
            nn.Linear(summary, summary),
            nn.GELU(),
            nn.Linear(summary, config.horizon * self.n_quantiles),
        )

    def series_scale(self, values: Tensor, lengths: Tensor) -> Tensor:
        """Mean |value| over each series' last `scale_window` observed points; 1 where that is 0."""
        steps = torch.arange(values.shape[1], device=values.device)  # (T,)
        ends = lengths.to(values.device).unsqueeze(1)  # (B, 1)
        recent = (steps.unsqueeze(0) < ends) & (
            steps.unsqueeze(0) >= ends - self.scale_window
        )  # (B, T)
        count = recent.sum(dim=1).clamp(min=1).to(values.dtype)  # (B,)
        scale = (values.abs() * recent.to(values.dtype)).sum(dim=1) / count  # (B,)
        # All-zero (or all-tiny) recent history: leave values as they are rather than divide by 0.
        return torch.where(scale > 1e-8, scale, torch.ones_like(scale))  # (B,)

    def encode(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Packed stacked LSTM over (B, T, 2) inputs -> the last layer's final state (B, H*dirs)."""
        batch = inputs.shape[0]
        # pack_padded_sequence wants CPU int64 lengths; enforce_sorted=False sorts and unsorts.
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h0 = self.h0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        c0 = self.c0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        _, (h_n, _) = self.lstm(packed, (h0, c0))  # h_n: (layers*dirs, B, H), in input order
        if self.directions == 2:
            # Last layer's forward and backward final states; packing makes the backward
            # direction start at each series' own last point, not on padding.
            return torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2H)
        return h_n[-1]  # (B, H)

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        """Forecast quantiles.

        values: (B, T) float32, right-padded raw histories; lengths: (B,) int64, each in [1, T].
        Returns (B, horizon, Q), in the original scale, non-decreasing along Q.
        """
        batch = values.shape[0]
        scale = self.series_scale(values, lengths)  # (B,)
        steps = torch.arange(values.shape[1], device=values.device)  # (T,)
        observed = (steps.unsqueeze(0) < lengths.to(values.device).unsqueeze(1)).to(
            values.dtype
        )  # (B, T)
        # Padding is zeroed so that no garbage in the padded tail can leak through scaling.
        scaled = values * observed / scale.unsqueeze(1)  # (B, T)
        change = torch.cat(
            [torch.zeros_like(scaled[:, :1]), scaled[:, 1:] - scaled[:, :-1]], dim=1
        )  # (B, T)
        inputs = torch.stack([scaled, change], dim=2)  # (B, T, 2)
        summary = self.encode(inputs, lengths)  # (B, H * directions)

        raw = self.head(summary).view(batch, self.horizon, self.n_quantiles)  # (B, horizon, Q)
        # Lowest quantile free, the rest as positive increments: quantiles cannot cross.
        increments = nn.functional.softplus(raw[:, :, 1:])  # (B, horizon, Q-1)
        scaled_q = torch.cumsum(
            torch.cat([raw[:, :, :1], increments], dim=2), dim=2
        )  # (B, horizon, Q)
        last = scaled.gather(1, (lengths.to(values.device) - 1).unsqueeze(1))  # (B, 1)
        # The head predicts offsets from the last observed (scaled) value.
        return (scaled_q + last.unsqueeze(2)) * scale.view(batch, 1, 1)  # (B, horizon, Q)


def pinball_loss(forecast: Tensor, target: Tensor, quantiles: Tensor, scale: Tensor) -> Tensor:
    """Mean quantile (pinball) loss, each series divided by its scale so all series weigh alike.

    forecast: (B, H, Q); target: (B, H); quantiles: (Q,); scale: (B,).
    """
    error = (target.unsqueeze(2) - forecast) / scale.view(-1, 1, 1)  # (B, H, Q)
    q = quantiles.view(1, 1, -1)  # (1, 1, Q)
    return torch.maximum(q * error, (q - 1.0) * error).mean()

"""The model's promises: exact under packing, scripted == eager, scale-equivariant, no crossing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.export import history_scale, random_batch, relative_error
from training.model import (
    ABSOLUTE_SCALE_FLOOR,
    DEFAULT_THETA_LOOKBACK,
    RELATIVE_SCALE_FLOOR,
    ModelConfig,
    StackedLSTMForecaster,
    pinball_loss,
)
from training.theta import ThetaForecaster


def make_model(**overrides: object) -> StackedLSTMForecaster:
    torch.manual_seed(0)
    config = ModelConfig(horizon=5, hidden=16, layers=2, dropout=0.2, **overrides)  # type: ignore[arg-type]
    model = StackedLSTMForecaster(config).eval()
    # Non-zero initial states, so a learned-init model is tested with states that matter.
    with torch.no_grad():
        model.h0.normal_()
        model.c0.normal_()
    return model


def forecast_alone(
    model: torch.nn.Module, values: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    rows = [model(values[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(len(lengths))]
    return torch.cat(rows)  # (B, H, Q)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("learned_init", [False, True])
def test_forecast_alone_equals_forecast_in_any_batch(
    bidirectional: bool, learned_init: bool
) -> None:
    """Guards against padding leaking into a series' forecast (wrong mask, output[:, -1],
    backward direction starting on padding) and against rows being mixed up when the
    batch is reordered."""
    model = make_model(bidirectional=bidirectional, learned_init=learned_init)
    values, lengths = random_batch(count=9, min_length=1, max_length=40, seed=3)
    with torch.inference_mode():
        alone = forecast_alone(model, values, lengths)
        batched = model(values, lengths)
        order = torch.tensor([4, 0, 8, 2, 7, 1, 5, 3, 6])
        shuffled = model(values[order], lengths[order])[torch.argsort(order)]
    scale = history_scale(values, lengths)
    assert relative_error(batched, alone, scale) <= 1e-5
    assert relative_error(shuffled, alone, scale) <= 1e-5


def test_backward_direction_needs_packing() -> None:
    """Guards against dropping pack_padded_sequence: run on the padded tensor, the backward
    direction starts on padding and the summary of a short series changes. If this ever
    passes without packing, the invariance test above is not testing packing."""
    model = make_model(bidirectional=True)
    values, lengths = random_batch(count=4, min_length=3, max_length=30, seed=1)
    lengths[0] = 5  # a short row, certainly padded
    inputs = values.unsqueeze(2).expand(-1, -1, 2).contiguous()  # (B, T, 2)
    with torch.inference_mode():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            inputs, lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_packed, _) = model.lstm(packed)
        _, (h_padded, _) = model.lstm(inputs)
        _, (h_alone, _) = model.lstm(inputs[:1, :5])
    backward = -1  # last layer, backward direction
    assert torch.allclose(h_packed[backward, 0], h_alone[backward, 0], atol=1e-6)
    assert not torch.allclose(h_padded[backward, 0], h_alone[backward, 0], atol=1e-3)


@pytest.mark.parametrize("learned_init", [False, True])
def test_shared_steps_first_gives_the_packed_states(learned_init: bool) -> None:
    """Guards the CPU inference path: the steps every row observes run as one batch of
    equal lengths, the rest packed, and the final states must be the packed LSTM's on a
    ragged batch with junk padding (reading it changes a short row's state), on a batch of
    equal lengths and on a single row."""
    model = make_model(learned_init=learned_init)
    for count, shortest, longest, seed in ((9, 1, 40, 3), (5, 30, 30, 4), (1, 7, 7, 5)):
        values, lengths = random_batch(count, shortest, longest, seed)
        scaled = values / 100.0  # (B, T), about 1, the padding 100
        inputs = torch.stack([scaled, scaled.roll(1, dims=1)], dim=2)  # (B, T, 2)
        h0 = model.h0.expand(-1, count, -1).contiguous()  # (layers, B, H)
        c0 = model.c0.expand(-1, count, -1).contiguous()  # (layers, B, H)
        with torch.inference_mode():
            packed = model.packed_states(inputs, lengths, h0, c0)  # (layers, B, H)
            shared = model.shared_steps_first(inputs, lengths, h0, c0)  # (layers, B, H)
            _, (padded, _) = model.lstm(inputs, (h0, c0))  # every row over all T steps
        assert torch.allclose(shared, packed, atol=1e-5)
        if count == 9:
            assert not torch.allclose(padded, packed, atol=1e-3)  # the padding matters


@pytest.mark.parametrize("bidirectional", [False, True])
def test_scripted_equals_eager(bidirectional: bool) -> None:
    """Guards against TorchScript compiling a different computation (or a trace baking in
    one batch's shapes): the scripted module must match on a new ragged batch."""
    model = make_model(bidirectional=bidirectional)
    scripted = torch.jit.script(model)
    values, lengths = random_batch(count=6, min_length=2, max_length=25, seed=7)
    with torch.inference_mode():
        scale = history_scale(values, lengths)
        assert relative_error(scripted(values, lengths), model(values, lengths), scale) <= 1e-6
        other_values, other_lengths = random_batch(count=3, min_length=30, max_length=60, seed=8)
        expected = model(other_values, other_lengths)
        other_scale = history_scale(other_values, other_lengths)
        assert relative_error(scripted(other_values, other_lengths), expected, other_scale) <= 1e-6


def test_forecast_shifts_and_scales_with_the_series() -> None:
    """Guards against scaling outside the module, or a scale without a location: the
    forecast of 1000 * x - 5e4 (values far below zero) must be 1000 * forecast(x) - 5e4."""
    model = make_model()
    values, lengths = random_batch(count=5, min_length=4, max_length=20, seed=2)
    with torch.inference_mode():
        base = model(values, lengths)
        moved = model(values * 1000.0 - 5e4, lengths)
    assert (
        relative_error(moved, base * 1000.0 - 5e4, history_scale(values, lengths) * 1000.0) <= 1e-5
    )


def test_zero_and_constant_series_are_forecast_as_themselves() -> None:
    """Guards against dividing by a zero spread (an all-zero or constant history), and
    against a constant history forecast as anything but that constant."""
    model = make_model()
    values = torch.tensor(
        [[0.0] * 8, [7.0] * 8, [-3.5] * 8, [0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0]]
    )
    lengths = torch.tensor([8, 8, 8, 4])
    with torch.inference_mode():
        out = model(values, lengths)  # (4, 5, 3)
        location, scale = model.location_scale(values, lengths)
    assert out.shape == (4, 5, 3)
    assert torch.isfinite(out).all()
    for row, constant in enumerate([0.0, 7.0, -3.5]):
        assert (out[row] - constant).abs().max().item() <= 1e-4 * max(abs(constant), 1e-20)
    assert torch.equal(location, torch.tensor([0.0, 7.0, -3.5, 5.0]))
    # Spreads: floored for the constants, the population std of [0, 0, 0, 5] for the last.
    assert torch.allclose(scale, torch.tensor([1e-30, 7e-6, 3.5e-6, 2.1650635]))


def test_lookback_reads_only_the_last_points() -> None:
    """Guards against a member with a lookback reading points before its window (or
    padding after a short series' end): its forecast of a long history must equal its
    forecast of that history's last `lookback` points."""
    model = make_model(lookback=6)
    values, lengths = random_batch(count=5, min_length=2, max_length=20, seed=5)
    with torch.inference_mode():
        batched = model(values, lengths)
        cut = torch.cat(
            [
                model(
                    values[i : i + 1, max(0, int(n) - 6) : int(n)], lengths[i : i + 1].clamp(max=6)
                )
                for i, n in enumerate(lengths)
            ]
        )
    assert relative_error(batched, cut, history_scale(values, lengths)) <= 1e-5


def test_quantiles_never_cross() -> None:
    """Guards against a head whose 0.1 quantile can exceed its 0.9 one."""
    model = make_model(quantiles=(0.05, 0.1, 0.5, 0.9, 0.95))
    with torch.no_grad():
        model.head[-1].bias.normal_(std=10.0)
    values, lengths = random_batch(count=16, min_length=1, max_length=30, seed=4)
    with torch.inference_mode():
        out = model(values, lengths)  # (B, H, Q)
    assert (out[:, :, 1:] >= out[:, :, :-1]).all()


def test_pinball_loss_matches_hand_computed_value() -> None:
    """Guards against a sign error in the pinball loss (under- and over-forecasts swapped)."""
    forecast = torch.tensor([[[1.0, 2.0]]])  # (B=1, H=1, Q=2)
    target = torch.tensor([[3.0]])
    quantiles = torch.tensor([0.1, 0.9])
    # errors 2 and 1, both under-forecasts: 0.1*2 = 0.2, 0.9*1 = 0.9; mean 0.55; scale 2.
    loss = pinball_loss(forecast, target, quantiles, torch.tensor([2.0]))
    assert loss.item() == pytest.approx(0.55 / 2.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quantiles", (0.1, 0.9), "must include 0.5"),
        ("quantiles", (0.5, 0.1), "distinct and increasing"),
        ("quantiles", (0.0, 0.5), "in (0, 1)"),
        ("horizon", 0, "horizon must be >= 1"),
        ("dropout", 1.0, "dropout must be in [0, 1)"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        ModelConfig(**{field: value})  # type: ignore[arg-type]


def test_config_round_trips_through_dict() -> None:
    config = ModelConfig(horizon=7, quantiles=(0.25, 0.5, 0.75), bidirectional=True)
    assert ModelConfig.from_dict(config.to_dict()) == config


def open_seasonal_gate(model: StackedLSTMForecaster) -> None:
    """Zero offsets, no quantile spread and the seasonal gate open (horizon 5, Q 3): the
    lowest quantile is then exactly the seasonal base."""
    with torch.no_grad():
        last = model.head[-1]
        last.weight.zero_()
        bias = last.bias.view(5, 4)  # (horizon, Q + gate)
        bias[:, 0] = 0.0  # lowest quantile: no offset
        bias[:, 1:3] = -40.0  # increments softplus(-40) ~ 0
        bias[:, 3] = 40.0  # gate sigmoid(40) = 1: the seasonal base


def test_seasonal_base_is_the_seasonal_naive_forecast_when_the_gate_is_open() -> None:
    """Guards against a seasonal base read from the wrong positions (padding, another
    row, a season out of phase): with the gate forced open and zero offsets, the lowest
    quantile must be exactly the last full season repeated, and a history shorter than
    one season must fall back to its last value."""
    model = make_model(season_length=4)
    open_seasonal_gate(model)
    values = torch.tensor(
        [[1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 7.0, 8.0, 99.0], [3.0, 6.0, 0, 0, 0, 0, 0, 0, 0]]
    )
    lengths = torch.tensor([8, 2])
    with torch.inference_mode():
        out = model(values, lengths)  # (2, 5, 3)
        scripted = torch.jit.script(model)(values, lengths)
    assert torch.allclose(out[0, :, 0], torch.tensor([5.0, 9.0, 7.0, 8.0, 5.0]), atol=1e-5)
    assert torch.allclose(out[1, :, 0], torch.full((5,), 6.0), atol=1e-5)
    assert torch.equal(scripted, out)


def test_seasonal_base_averages_the_pattern_of_the_seasons_the_history_holds() -> None:
    """Guards against an averaged seasonal base that reads a season the history does not
    hold (padding, index clamped to 0), counts it in the mean, or measures a season's
    offsets from the wrong point: with the gate open and zero offsets, a two-season history
    gets the mean of both seasons' offsets from their own last points, a one-season history
    its seasonal naive forecast, and a shorter one its last value."""
    model = make_model(season_length=4, seasonal_cycles=3)
    open_seasonal_gate(model)
    values = torch.tensor(
        [
            # seasons back: [5, 9, 7, 8] (offsets -3, 1, -1, 0) and [1, 2, 3, 4] (-3, -2, -1, 0)
            [1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 7.0, 8.0, 99.0],
            [6.0, 2.0, 4.0, 3.0, 0, 0, 0, 0, 0],
            [3.0, 6.0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    lengths = torch.tensor([8, 4, 2])
    with torch.inference_mode():
        out = model(values, lengths)  # (3, 5, 3)
        scripted = torch.jit.script(model)(values, lengths)
    assert torch.allclose(out[0, :, 0], torch.tensor([5.0, 7.5, 7.0, 8.0, 5.0]), atol=1e-4)
    assert torch.allclose(out[1, :, 0], torch.tensor([6.0, 2.0, 4.0, 3.0, 6.0]), atol=1e-4)
    assert torch.allclose(out[2, :, 0], torch.full((5,), 6.0), atol=1e-5)
    assert torch.equal(scripted, out)


@pytest.mark.parametrize(
    "bases",
    [
        {"season_length": 3},
        {"season_length": 3, "seasonal_cycles": 3},
        {"season_length": 3, "seasonal_input": True},
        {"trend_base": True},
        {"season_length": 3, "seasonal_cycles": 2, "trend_base": True, "trend_fit": True},
        {"theta_base": True},
        {"season_length": 3, "trend_base": True, "theta_base": True},
    ],
)
def test_bases_keep_batch_invariance_and_equivariance(bases: dict[str, object]) -> None:
    """Guards against the seasonal or trend base, or the seasonal input, breaking exactness
    (reading padding or another row) or shift/scale equivariance."""
    model = make_model(**bases)
    values, lengths = random_batch(count=9, min_length=1, max_length=30, seed=9)
    with torch.inference_mode():
        alone = forecast_alone(model, values, lengths)
        batched = model(values, lengths)
        moved = model(values * 0.01 + 250.0, lengths)
    scale = history_scale(values, lengths)
    assert relative_error(batched, alone, scale) <= 1e-5
    assert relative_error(moved, batched * 0.01 + 250.0, scale * 0.01) <= 1e-4


def test_trend_base_is_the_drift_carried_forward_when_the_gate_is_open() -> None:
    """Guards against a drift read from the wrong points (padding, another row, a span
    that is not whole seasons): with the trend gate forced open, the seasonal gate shut
    and zero offsets, the lowest quantile must be the last value plus the mean change per
    step over whole seasons, times the steps ahead; a history no longer than one season
    must fall back to its last value."""
    model = make_model(season_length=4, trend_base=True)
    with torch.no_grad():
        last = model.head[-1]
        last.weight.zero_()
        bias = last.bias.view(5, 5)  # (horizon, Q + seasonal gate + trend gate)
        bias[:, 0] = 0.0  # lowest quantile: no offset
        bias[:, 1:3] = -40.0  # increments softplus(-40) ~ 0
        bias[:, 3] = -40.0  # seasonal gate shut: naive
        bias[:, 4] = 40.0  # trend gate open: all the drift
    values = torch.tensor(
        [
            # 10 points: the drift spans 8 steps (two seasons) back from the last, 5.0 to 13.0
            [7.0, 5.0, 6.0, 2.0, 9.0, 4.0, 7.0, 8.0, 9.0, 13.0, 99.0],
            [3.0, 6.0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    lengths = torch.tensor([10, 2])
    with torch.inference_mode():
        out = model(values, lengths)  # (2, 5, 3)
        scripted = torch.jit.script(model)(values, lengths)
    steps = torch.arange(1.0, 6.0)
    assert torch.allclose(out[0, :, 0], 13.0 + steps * (13.0 - 5.0) / 8, atol=1e-4)
    assert torch.allclose(out[1, :, 0], torch.full((5,), 6.0), atol=1e-5)
    assert torch.equal(scripted, out)


def test_theta_base_is_the_theta_forecast_when_its_gate_is_open() -> None:
    """Guards against a Theta base read from the member's lookback or another row, or
    added to the other bases instead of replacing them: with the Theta gate open, the
    seasonal and trend gates open too and zero offsets, the lowest quantile must be the
    Theta method's forecast of the whole history, whatever the member's lookback; with the
    Theta gate shut, the seasonal and trend bases as before."""
    model = make_model(season_length=4, trend_base=True, theta_base=True, lookback=6)
    with torch.no_grad():
        last = model.head[-1]
        last.weight.zero_()
        bias = last.bias.view(5, 6)  # (horizon, Q + seasonal gate + Theta gate + trend gate)
        bias[:, 0] = 0.0  # lowest quantile: no offset
        bias[:, 1:3] = -40.0  # increments softplus(-40) ~ 0
        bias[:, 3] = 40.0  # seasonal gate open
        bias[:, 4] = 40.0  # Theta gate open
        bias[:, 5] = 40.0  # trend gate open
    values, lengths = random_batch(count=5, min_length=1, max_length=30, seed=4)
    theta = ThetaForecaster(
        5, 4, DEFAULT_THETA_LOOKBACK, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR
    )
    with torch.inference_mode():
        out = model(values, lengths)  # (5, 5, 3)
        scripted = torch.jit.script(model)(values, lengths)
        expected = theta(values, lengths)  # (5, 5)
        model.head[-1].bias.view(5, 6)[:, 4] = -40.0  # Theta gate shut
        without = model(values, lengths)
        model.theta_base = False
        bases_alone = model(values, lengths)
    scale = history_scale(values, lengths)
    assert relative_error(out[:, :, 0], expected, scale) <= 1e-5
    assert torch.equal(scripted, out)
    assert relative_error(without, bases_alone, scale) <= 1e-5


def test_fitted_trend_base_is_the_least_squares_slope_over_whole_seasons() -> None:
    """Guards against a fitted drift that reads padding, points before the whole seasons
    or another row: with the trend gate open, the seasonal gate shut and zero offsets, the
    lowest quantile must be the last value plus the least-squares slope through the last
    whole seasons' points (and one more) times the steps ahead."""
    model = make_model(season_length=4, trend_base=True, trend_fit=True)
    with torch.no_grad():
        last = model.head[-1]
        last.weight.zero_()
        bias = last.bias.view(5, 5)  # (horizon, Q + seasonal gate + trend gate)
        bias[:, 0] = 0.0
        bias[:, 1:3] = -40.0
        bias[:, 3] = -40.0  # seasonal gate shut
        bias[:, 4] = 40.0  # trend gate open
    history = [7.0, 5.0, 6.0, 2.0, 9.0, 4.0, 7.0, 8.0, 9.0, 13.0]
    values = torch.tensor([[*history, 99.0], [3.0, 6.0] + [0.0] * 9])
    lengths = torch.tensor([10, 2])
    with torch.inference_mode():
        out = model(values, lengths)  # (2, 5, 3)
        scripted = torch.jit.script(model)(values, lengths)
    slope = float(np.polyfit(np.arange(9.0), history[1:], 1)[0])  # two seasons plus one point
    steps = torch.arange(1.0, 6.0)
    assert torch.allclose(out[0, :, 0], 13.0 + steps * slope, atol=1e-4)
    assert torch.allclose(out[1, :, 0], torch.full((5,), 6.0), atol=1e-5)
    assert torch.equal(scripted, out)

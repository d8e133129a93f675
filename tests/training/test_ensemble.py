"""The ensemble behind one forward: members combined per quantile, never crossing, exact."""

from __future__ import annotations

import pytest
import torch

from training.export import history_scale, random_batch, relative_error
from training.model import (
    EnsembleConfig,
    EnsembleForecaster,
    ModelConfig,
    StackedLSTMForecaster,
)

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def members(count: int, bias_std: float = 0.0) -> list[StackedLSTMForecaster]:
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        config = ModelConfig(horizon=4, hidden=8, quantiles=QUANTILES, lookback=(0, 7)[seed % 2])
        member = StackedLSTMForecaster(config).eval()
        if bias_std:
            with torch.no_grad():
                member.head[-1].bias.normal_(std=bias_std)
        out.append(member)
    return out


@pytest.mark.parametrize("combine", ["median", "mean"])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_ensemble_quantiles_never_cross(combine: str, count: int) -> None:
    """Guards against a combination rule that lets the ensemble's 0.1 quantile exceed its
    0.5 one (e.g. combining sorted and unsorted members, or a per-quantile pick of
    different members), with members whose quantile spreads differ wildly."""
    ensemble = torch.jit.script(EnsembleForecaster(members(count, bias_std=10.0), combine))
    values, lengths = random_batch(count=32, min_length=1, max_length=30, seed=11)
    with torch.inference_mode():
        out = ensemble(values, lengths)  # (32, 4, 5)
    assert out.shape == (32, 4, len(QUANTILES))
    assert (out[:, :, 1:] >= out[:, :, :-1]).all()


def test_one_member_alone_equals_the_members_own_module() -> None:
    """Guards against the ensemble wrapper changing a member's forecast (a lost lookback,
    a median over the wrong axis)."""
    (member,) = members(1)
    alone = torch.jit.script(member)
    ensemble = torch.jit.script(EnsembleForecaster([member]))
    values, lengths = random_batch(count=9, min_length=1, max_length=25, seed=12)
    with torch.inference_mode():
        assert torch.equal(ensemble(values, lengths), alone(values, lengths))


@pytest.mark.parametrize("combine", ["median", "mean"])
def test_ensemble_is_the_members_median_or_mean(combine: str) -> None:
    """Guards against combining over the batch or quantile axis instead of the members."""
    parts = members(3)
    ensemble = EnsembleForecaster(parts, combine)
    values, lengths = random_batch(count=6, min_length=2, max_length=20, seed=13)
    with torch.inference_mode():
        each = torch.stack([m(values, lengths) for m in parts])  # (3, 6, 4, 5)
        expected = each.median(dim=0).values if combine == "median" else each.mean(dim=0)
        assert torch.allclose(ensemble(values, lengths), expected, rtol=1e-6, atol=1e-6)


def test_ensemble_is_exact_alone_and_in_a_batch() -> None:
    """Guards against a member's lookback window reading another row's points or padding."""
    ensemble = torch.jit.script(EnsembleForecaster(members(3)))
    values, lengths = random_batch(count=10, min_length=1, max_length=30, seed=14)
    with torch.inference_mode():
        batched = ensemble(values, lengths)
        alone = torch.cat(
            [ensemble(values[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(10)]
        )
    assert relative_error(batched, alone, history_scale(values, lengths)) <= 1e-5


def test_ensemble_config_round_trips_and_rejects_disagreeing_members() -> None:
    config = EnsembleConfig(
        members=[ModelConfig(horizon=5, lookback=12), ModelConfig(horizon=5, hidden=16)],
        combine="mean",
    )
    assert EnsembleConfig.from_dict(config.to_dict()) == config
    assert config.horizon == 5 and config.quantiles == (0.1, 0.5, 0.9)
    with pytest.raises(ValueError, match="members must agree"):
        EnsembleConfig(members=[ModelConfig(horizon=5), ModelConfig(horizon=6)])
    with pytest.raises(ValueError, match="combine must be one of median, mean, got 'max'"):
        EnsembleConfig(combine="max")

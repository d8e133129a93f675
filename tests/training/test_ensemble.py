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
    ensemble_of,
)

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def members(
    count: int, bias_std: float = 0.0, theta_base: bool = False
) -> list[StackedLSTMForecaster]:
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        config = ModelConfig(
            horizon=4,
            hidden=8,
            quantiles=QUANTILES,
            lookback=(0, 7)[seed % 2],
            season_length=3 if theta_base else 1,
            theta_base=theta_base,
        )
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


@pytest.mark.parametrize("theta_base", [False, True])
def test_one_member_alone_equals_the_members_own_module(theta_base: bool) -> None:
    """Guards against the ensemble wrapper changing a member's forecast (a lost lookback,
    a median over the wrong axis, a shared Theta base that is not the member's own)."""
    (member,) = members(1, theta_base=theta_base)
    alone = torch.jit.script(member)
    ensemble = torch.jit.script(EnsembleForecaster([member]))
    values, lengths = random_batch(count=9, min_length=1, max_length=25, seed=12)
    with torch.inference_mode():
        assert torch.equal(ensemble(values, lengths), alone(values, lengths))


@pytest.mark.parametrize("theta_base", [False, True])
@pytest.mark.parametrize("combine", ["median", "mean"])
def test_ensemble_is_the_members_median_or_mean(combine: str, theta_base: bool) -> None:
    """Guards against combining over the batch or quantile axis instead of the members,
    and against members fed another Theta base than their own."""
    parts = members(3, theta_base=theta_base)
    ensemble = EnsembleForecaster(parts, combine)
    values, lengths = random_batch(count=6, min_length=2, max_length=20, seed=13)
    with torch.inference_mode():
        each = torch.stack([m(values, lengths) for m in parts])  # (3, 6, 4, 5)
        expected = each.median(dim=0).values if combine == "median" else each.mean(dim=0)
        assert torch.allclose(ensemble(values, lengths), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("theta_base", [False, True])
def test_ensemble_is_exact_alone_and_in_a_batch(theta_base: bool) -> None:
    """Guards against a member's lookback window, or the shared Theta base, reading another
    row's points or padding."""
    ensemble = torch.jit.script(EnsembleForecaster(members(3, theta_base=theta_base)))
    values, lengths = random_batch(count=10, min_length=1, max_length=30, seed=14)
    with torch.inference_mode():
        batched = ensemble(values, lengths)
        alone = torch.cat(
            [ensemble(values[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(10)]
        )
    assert relative_error(batched, alone, history_scale(values, lengths)) <= 1e-5


@pytest.mark.parametrize(
    ("dynamic", "season", "shared"),
    [((0, 0), 3, True), ((4, 12), 3, True), ((0, 0), 1, False), ((4, 12), 1, False)],
)
def test_theta_share_reads_the_members_theta_base_only_where_it_is_the_same(
    dynamic: tuple[int, int], season: int, shared: bool
) -> None:
    """Guards against the members' Theta base taken from a Theta share that reads the
    histories otherwise (another season), or the share's forecast taken for the base where
    the dynamic model is blended in: the ensemble must equal the members' median (each
    member on its own base) moved towards its own Theta."""
    parts = members(3, theta_base=True)
    ensemble = EnsembleForecaster(
        parts,
        theta_weight=0.4,
        theta_season_length=season,
        theta_dynamic_from=dynamic[0],
        theta_dynamic_full=dynamic[1],
    )
    assert ensemble.share_reads_base == shared
    values, lengths = random_batch(count=8, min_length=1, max_length=30, seed=15)
    with torch.inference_mode():
        median = torch.stack([m(values, lengths) for m in parts]).median(dim=0).values
        theta = ensemble.theta(values, lengths)  # (8, 4)
        expected = median + (0.4 * (theta - median[:, :, 2])).unsqueeze(2)
        out = torch.jit.script(ensemble)(values, lengths)
    assert relative_error(out, expected, history_scale(values, lengths)) <= 1e-5


def test_members_of_another_theta_base_are_refused() -> None:
    """Guards against an ensemble feeding one Theta base to members built without it, or
    for another season, whose outputs would then be read at the wrong columns."""
    with pytest.raises(ValueError, match="members read one Theta base"):
        EnsembleForecaster([*members(1, theta_base=True), *members(1)])


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


def three_quantile_ensemble(tail_ratio: float, theta_weight: float = 0.0) -> EnsembleForecaster:
    """Two members of quantiles 0.1, 0.5, 0.9 and wildly different spreads, as fit builds
    them, with the 95% interval `tail_ratio` 80% intervals wide."""
    member_config = ModelConfig(horizon=4, hidden=8)
    parts = []
    for seed in range(2):
        torch.manual_seed(seed)
        member = StackedLSTMForecaster(member_config).eval()
        with torch.no_grad():
            member.head[-1].bias.normal_(std=10.0)
        parts.append(member)
    config = EnsembleConfig(
        members=[member_config, member_config],
        theta_weight=theta_weight,
        theta_season_length=1,
        interval_scale=0.9,
        tail_ratio=tail_ratio,
    )
    return ensemble_of(parts, config).eval()


@pytest.mark.parametrize("ratio", [1.0, 1.7, 3.0])
def test_tails_widen_the_80_interval_by_the_ratio_and_never_cross(ratio: float) -> None:
    """Guards against tails taken from the wrong quantiles, widened from another centre
    than the point forecast, or inside the 80% bounds; the rest must stay as it was."""
    with_tails = torch.jit.script(three_quantile_ensemble(ratio, theta_weight=0.5))
    without = torch.jit.script(three_quantile_ensemble(0.0, theta_weight=0.5))
    values, lengths = random_batch(count=32, min_length=1, max_length=30, seed=15)
    with torch.inference_mode():
        out = with_tails(values, lengths)  # (32, 4, 5)
        plain = without(values, lengths)  # (32, 4, 3)
    assert out.shape == (32, 4, 5)
    assert torch.equal(out[:, :, 1:4], plain)
    point = plain[:, :, 1]
    torch.testing.assert_close(out[:, :, 0], point + ratio * (plain[:, :, 0] - point))
    torch.testing.assert_close(out[:, :, 4], point + ratio * (plain[:, :, 2] - point))
    assert (out[:, :, 1:] >= out[:, :, :-1]).all()


def test_tails_keep_the_forecast_equivariant() -> None:
    """Guards against tails that do not follow a shift and a positive scale of the
    history, as every other quantile does."""
    ensemble = three_quantile_ensemble(1.8, theta_weight=0.5)
    values, lengths = random_batch(count=8, min_length=3, max_length=30, seed=16)
    shift, scale = -250.0, 40.0
    with torch.inference_mode():
        base = ensemble(values, lengths)
        moved = ensemble(values * scale + shift, lengths)
    spread = scale * history_scale(values, lengths)
    assert relative_error(moved, base * scale + shift, spread) <= 1e-5


def test_tail_config_lists_the_tails_and_rejects_what_it_cannot_widen() -> None:
    config = EnsembleConfig(members=[ModelConfig(horizon=5)], tail_ratio=1.5)
    assert config.quantiles == (0.025, 0.1, 0.5, 0.9, 0.975)
    assert config.member_quantiles == (0.1, 0.5, 0.9)
    assert EnsembleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"tail_ratio must be 0 \(off\) or >= 1, got 0\.5"):
        EnsembleConfig(members=[ModelConfig()], tail_ratio=0.5)
    with pytest.raises(
        ValueError, match=r"tail_ratio widens members of quantiles 0\.1, 0\.5, 0\.9"
    ):
        EnsembleConfig(members=[ModelConfig(quantiles=QUANTILES)], tail_ratio=1.5)

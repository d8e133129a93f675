"""Rolling-origin windows: each ends where it should and never shows a forecaster its targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch import Tensor, nn

from training.cli import main
from training.data import SeriesSet
from training.export import ModelFacts, export_model
from training.metrics import smape
from training.model import ModelConfig
from training.splits import origin_split, validation_split

HORIZON = 3


class LastValue(nn.Module):
    """Forecasts each history's last value for every step and quantile."""

    def __init__(self) -> None:
        super().__init__()
        self.horizon = HORIZON

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        last = values.gather(1, (lengths - 1).unsqueeze(1))  # (B, 1)
        return last.unsqueeze(2).expand(-1, self.horizon, 3).contiguous()  # (B, H, 3)


def ramp_set() -> SeriesSet:
    """Series whose value is its time index (+ an offset), so a window is known by its values."""
    wholes = [np.arange(20.0) + 100 * k for k in range(3)] + [np.arange(11.0) + 500]
    return SeriesSet(
        "ramps",
        "custom",
        HORIZON,
        1,
        [f"s{k}" for k in range(len(wholes))],
        [w[:-HORIZON] for w in wholes],
        [w[-HORIZON:] for w in wholes],
    )


def test_origin_split_moves_every_origin_back_by_whole_horizons() -> None:
    """Guards against a window whose history runs into its own targets, or targets cut
    from the wrong place: window k's targets are the k-th horizon before the test part,
    and its history is everything before them."""
    ramps = ramp_set()
    assert origin_split(ramps, 0) is ramps
    for k in (1, 2):
        window = origin_split(ramps, k, min_history=4)
        for sid, history, target in zip(window.ids, window.train, window.test, strict=True):
            end = len(ramps.train[ramps.ids.index(sid)]) + HORIZON - (k + 1) * HORIZON
            assert np.array_equal(history, np.arange(end) + history[0])
            assert np.array_equal(target, history[-1] + 1 + np.arange(HORIZON))
            assert history.max() < target.min()  # never its own targets
    # The short series (11 points) has 11 - 3 * 3 = 2 points before window 2: left out.
    assert origin_split(ramps, 2, min_history=4).ids == ["s0", "s1", "s2"]
    assert validation_split(ramps).ids == ramps.ids
    with pytest.raises(ValueError, match="no series has a history of 30 points 1 horizon"):
        origin_split(ramps, 1, min_history=30)


@pytest.mark.slow
def test_backtest_scores_each_window_on_history_before_its_targets(tmp_path: Path) -> None:
    """Guards against a backtest that forecasts from the full series (its targets
    included): with ramps and a last-value model, window k's sMAPE is exactly that of
    forecasting the value just before its targets."""
    ramps = ramp_set()
    lines = ["series_id,timestamp,value"]
    for sid, history, future in zip(ramps.ids, ramps.train, ramps.test, strict=True):
        lines += [f"{sid},{t},{v}" for t, v in enumerate(np.concatenate([history, future]))]
    csv = tmp_path / "ramps.csv"
    csv.write_text("\n".join(lines) + "\n")
    facts = ModelFacts("last", 1, "custom", 2, 30, {}, {})
    export_model(
        LastValue(), ModelConfig(horizon=HORIZON), tmp_path / "last", facts, register=False
    )
    out = tmp_path / "backtest.json"
    args = ["backtest", "--model", str(tmp_path / "last"), "--csv", str(csv), "--windows", "3"]
    assert main([*args, "--out", str(out), "--no-peers"]) == 0
    result = json.loads(out.read_text())
    assert [w["window"] for w in result["windows"]] == [0, 1, 2]
    for k, window in enumerate(result["windows"]):
        split = origin_split(ramps, k, min_history=2)
        expected = smape(split.test, np.stack([np.full(HORIZON, h[-1]) for h in split.train]))
        assert window["smape"] == pytest.approx(expected, rel=1e-9)
        assert window["n_series"] == len(split)
    means = result["mean"]["model"]
    assert means["smape"] == pytest.approx(np.mean([w["smape"] for w in result["windows"]]))

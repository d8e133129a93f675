"""The peer rows of the report are statsforecast's own forecasts, scored like the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoTheta

from training import metrics
from training.data import SeriesSet, load_m3
from training.peers import PEERS, forecast_peer, run_peers
from training.report import evaluate

HANDFUL = 5


@pytest.fixture(scope="module")
def handful() -> SeriesSet:
    monthly = load_m3("m3-monthly")
    return replace(
        monthly,
        ids=monthly.ids[:HANDFUL],
        train=monthly.train[:HANDFUL],
        test=monthly.test[:HANDFUL],
    )


@pytest.fixture(scope="module")
def direct(handful: SeriesSet) -> pd.DataFrame:
    """statsforecast's documented entry point, on the same histories."""
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(handful.ids, [len(x) for x in handful.train]),
            "ds": np.concatenate([np.arange(len(x)) for x in handful.train]),
            "y": np.concatenate(handful.train),
        }
    )
    sf = StatsForecast(models=[AutoETS(season_length=12), AutoTheta(season_length=12)], freq=1)
    out = sf.forecast(df=frame, h=handful.horizon, level=[80, 95])
    # Rows grouped by series in the order of `ids`, steps in order within each.
    order = {sid: i for i, sid in enumerate(handful.ids)}
    return out.sort_values(
        ["unique_id", "ds"], key=lambda c: c.map(order) if c.name == "unique_id" else c
    )


@pytest.mark.slow
def test_peer_rows_match_statsforecast_called_directly(
    handful: SeriesSet, direct: pd.DataFrame
) -> None:
    """Guards against a peer fitted on other data than the model (the test part, a cut
    history), on the wrong season length, or scored with different metric code: its
    sMAPE, MASE and 80% and 95% coverage in the report must equal those of StatsForecast's
    own forecasts of the same histories."""
    h = handful.horizon
    peers = run_peers(handful)
    assert [p.name for p in peers] == list(PEERS)
    model_forecasts = np.repeat(np.stack(handful.test)[:, :, None], 3, axis=2)  # (N, H, 3)
    result = evaluate(handful, model_forecasts, [0.1, 0.5, 0.9], peers)
    for peer in peers:
        point = direct[peer.name].to_numpy().reshape(HANDFUL, h)
        np.testing.assert_allclose(peer.point, point, rtol=1e-6)
        row = result["peers"][peer.name]
        assert row["smape"] == pytest.approx(metrics.smape(handful.test, point), rel=1e-6)
        assert row["mase"] == pytest.approx(
            metrics.mase(handful.test, point, handful.train, 12), rel=1e-6
        )
        for level in (80, 95):
            lower = direct[f"{peer.name}-lo-{level}"].to_numpy().reshape(HANDFUL, h)
            upper = direct[f"{peer.name}-hi-{level}"].to_numpy().reshape(HANDFUL, h)
            assert row[f"coverage_{level}"] == pytest.approx(
                metrics.coverage(handful.test, lower, upper), abs=1e-9
            )
        assert row["cpu_ms_per_series"] > 0


def test_forecast_peer_refuses_an_unknown_peer() -> None:
    with pytest.raises(
        ValueError, match="unknown peer 'Prophet'; choose one of AutoETS, AutoTheta"
    ):
        forecast_peer("Prophet", [np.arange(30.0)], 3, 12)


@pytest.mark.parametrize("name", PEERS)
def test_a_history_too_short_for_the_peer_gets_the_naive_forecast(name: str) -> None:
    from statsforecast.models import Naive

    tiny = np.array([3.0, 5.0, 4.0])  # AutoETS and AutoTheta refuse it ("tiny datasets")
    longer = np.sin(np.arange(40.0)) + np.arange(40.0)
    peer = forecast_peer(name, [tiny, longer], horizon=4, season_length=1)
    naive = Naive().forecast(y=tiny, h=4, level=[80])
    assert peer.fallbacks == 1
    np.testing.assert_allclose(peer.point[0], naive["mean"])
    np.testing.assert_allclose(peer.intervals[80][0][0], naive["lo-80"])
    np.testing.assert_allclose(peer.intervals[80][1][0], naive["hi-80"])
    assert not np.allclose(peer.point[1], longer[-1])  # the longer one: the peer itself


@pytest.mark.parametrize("name", ["AutoETS", "AutoTheta"])
@pytest.mark.parametrize("length", [2, 3, 7, 30])
def test_a_constant_history_is_forecast_as_that_constant(name: str, length: int) -> None:
    # AutoETS raised IndexError on the 2- and 3-point constants, ending the whole report.
    constant = np.full(length, 4400.0)
    peer = forecast_peer(name, [constant], horizon=6, season_length=1)
    assert peer.fallbacks == 0
    for row in (peer.point, *peer.intervals[80], *peer.intervals[95]):
        np.testing.assert_array_equal(row[0], np.full(6, 4400.0))

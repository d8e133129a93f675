"""`python -m training reexport`: an exported model rebuilt by this code, proved to
forecast as its file does, and exported again with its training record kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_cli import seasonal_series, write_csv
from training.cli import main
from training.export import ExportCheckError, ModelFacts, export_model, load_exported
from training.model import EnsembleConfig, ModelConfig, StackedLSTMForecaster, ensemble_of
from training.reexport import check_same_forecasts, rebuilt
from training.train import forecast

HORIZON = 6
TRAINING_RECORD = {"dataset": "shop", "train_seconds": 12.5, "threads": 2}


def untrained_ensemble(seed: int = 0) -> tuple[torch.nn.Module, EnsembleConfig]:
    """Two small members with seeded random weights, a Theta share and a narrowed width:
    every part of the ensemble's forward pass has something to get wrong."""
    torch.manual_seed(seed)
    members = [
        ModelConfig(horizon=HORIZON, hidden=8, season_length=12, lookback=k) for k in (24, 0)
    ]
    config = EnsembleConfig(
        members=members, theta_weight=0.4, theta_season_length=12, interval_scale=0.9
    )
    return ensemble_of([StackedLSTMForecaster(m) for m in members], config).eval(), config


def exported_ensemble(folder: Path) -> None:
    """An ensemble exported as `fit` exports one, with the training run's report files."""
    model, config = untrained_ensemble()

    def write_reports(staging: Path) -> None:
        (staging / "validation.json").write_text('{"smape": 1.0}')
        (staging / "learning_curve.png").write_bytes(b"not really a png")

    facts = ModelFacts("shop", 12, "custom", 12, 60, TRAINING_RECORD, {"smape": 99.0})
    export_model(model, config, folder, facts, register=False, write_reports=write_reports)


@pytest.mark.slow
def test_reexport_keeps_forecasts_and_training_record_and_measures_anew(tmp_path: Path) -> None:
    """Guards against a re-export that changes what is served or loses where the model
    came from: the new file forecasts as the old one, the training record and its
    report files are carried over, and the evaluation is the new file's own."""
    series = seasonal_series(10, 60)
    data = write_csv(tmp_path / "shop.csv", series)
    exported_ensemble(tmp_path / "old")
    old_file, old_metadata = load_exported(tmp_path / "old")
    args = ["reexport", "--model", str(tmp_path / "old"), "--csv", str(data)]
    assert main([*args, "--out", str(tmp_path / "new"), "--no-peers", "--no-register"]) == 0

    new_file, new_metadata = load_exported(tmp_path / "new")
    histories = [s[:-HORIZON] for s in series]
    np.testing.assert_allclose(
        forecast(new_file, histories, 60), forecast(old_file, histories, 60), rtol=1e-6
    )
    training = new_metadata["training"]
    assert {k: training[k] for k in TRAINING_RECORD} == TRAINING_RECORD
    assert training["trained_as"] == {
        key: old_metadata[key] for key in ("version", "source_commit", "torch_version")
    }
    assert training["reexport_check"]["from_version"] == old_metadata["version"]
    assert training["reexport_check"]["max_relative_difference"] <= 1e-5
    assert new_metadata["model_config"] == old_metadata["model_config"]
    for name in ("validation.json", "learning_curve.png"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes()
    evaluation = json.loads((tmp_path / "new" / "eval.json").read_text())
    assert evaluation["n_series"] == 10 and evaluation["smape"] != 99.0
    assert new_metadata["evaluation"]["smape"] == evaluation["smape"]
    assert new_metadata["evaluation"]["export_checks"]["scripted_vs_eager"] <= 1e-5

    # Re-exported again, it still names the version and code it was trained as.
    again = ["reexport", "--model", str(tmp_path / "new"), "--csv", str(data)]
    assert main([*again, "--out", str(tmp_path / "newer"), "--no-peers", "--no-register"]) == 0
    _, newer_metadata = load_exported(tmp_path / "newer")
    assert newer_metadata["training"]["trained_as"] == training["trained_as"]
    assert newer_metadata["training"]["reexport_check"]["from_version"] == new_metadata["version"]


def test_reexport_refuses_a_module_that_forecasts_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards against a re-export that silently ships a different model: metadata that
    rebuilds another forecaster (here a wider interval than the file's) is refused with
    exit 1, and the folder it would replace is left as it was."""
    data = write_csv(tmp_path / "shop.csv", seasonal_series(10, 60))
    exported_ensemble(tmp_path / "shop")
    metadata_file = tmp_path / "shop" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["model_config"]["interval_scale"] = 1.5
    metadata_file.write_text(json.dumps(metadata))
    before = {p.name: p.read_bytes() for p in (tmp_path / "shop").iterdir()}

    args = ["reexport", "--model", str(tmp_path / "shop"), "--csv", str(data), "--no-peers"]
    assert main([*args, "--no-register"]) == 1
    assert "forecasts the data set differently" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "shop").iterdir()} == before


@pytest.mark.slow
def test_reexport_adds_a_95_interval_and_keeps_every_quantile_the_model_had(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards against `--tail-ratio` moving a forecast the model made, losing the tails'
    record, or changing the tails of a model that has them."""
    series = seasonal_series(10, 60)
    data = write_csv(tmp_path / "shop.csv", series)
    exported_ensemble(tmp_path / "old")
    old_file, _ = load_exported(tmp_path / "old")
    args = ["reexport", "--model", str(tmp_path / "old"), "--csv", str(data), "--no-peers"]
    assert (
        main([*args, "--tail-ratio", "1.8", "--out", str(tmp_path / "new"), "--no-register"]) == 0
    )

    new_file, new_metadata = load_exported(tmp_path / "new")
    assert new_metadata["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975]
    assert new_metadata["point_quantile_index"] == 2
    assert new_metadata["model_config"]["tail_ratio"] == 1.8
    assert new_metadata["training"]["tail_ratio"] == {"tail_ratio": 1.8, "chosen_by": "given"}
    histories = [s[:-HORIZON] for s in series]
    old, new = forecast(old_file, histories, 60), forecast(new_file, histories, 60)
    np.testing.assert_allclose(new[:, :, 1:4], old, rtol=1e-6)
    np.testing.assert_allclose(new[:, :, 4], old[:, :, 1] + 1.8 * (old[:, :, 2] - old[:, :, 1]))
    assert new_metadata["evaluation"]["coverage_95"] is not None

    again = ["reexport", "--model", str(tmp_path / "new"), "--csv", str(data), "--no-peers"]
    assert main([*again, "--tail-ratio", "2", "--no-register"]) == 2  # refused as bad input
    assert "tail ratio 1.8 already" in capsys.readouterr().err


def test_rebuilt_refuses_weights_of_another_layout(tmp_path: Path) -> None:
    """Guards against loading weights into a module they do not fit (a layout change)
    without saying that the model needs retraining."""
    exported_ensemble(tmp_path / "shop")
    exported, metadata = load_exported(tmp_path / "shop")
    assert rebuilt(exported, metadata).state_dict().keys() == exported.state_dict().keys()
    metadata["model_config"]["members"][0]["hidden"] = 16
    with pytest.raises(ValueError, match=r"weights do not fit .*retrain it with fit"):
        rebuilt(exported, metadata)


def test_check_same_forecasts_measures_against_the_series_scale() -> None:
    """Guards against a check that passes a changed forecast or fails an equal one."""
    model, _ = untrained_ensemble()
    histories = seasonal_series(5, 48)
    assert check_same_forecasts(torch.jit.script(model), model, histories, 60) <= 1e-5
    other, _ = untrained_ensemble(seed=1)
    with pytest.raises(ExportCheckError, match="max relative difference"):
        check_same_forecasts(torch.jit.script(model), other, histories, 60)

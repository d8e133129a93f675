"""`python -m training`: a smoke run end to end, reproducibility, and bad-CSV exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training.cli import combined_parts, main
from training.data import load_m3
from training.export import load_exported
from training.metrics import smape
from training.model import ABSOLUTE_SCALE_FLOOR, RELATIVE_SCALE_FLOOR, ModelConfig
from training.shares import SCALE_GRID, share_set
from training.theta import ThetaForecaster
from training.train import TrainConfig, fit, forecast
from training.windows import pad_right

ROOT = Path(__file__).resolve().parents[2]
TINY_FIT = [
    "--horizon", "6", "--season-length", "12", "--hidden", "8", "--epochs", "2",
    "--steps-per-epoch", "3", "--batch-size", "16", "--quiet",
]  # fmt: skip


def seasonal_series(n_series: int, length: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        100 + 10 * k + 0.5 * t + 8 * np.sin(2 * np.pi * t / 12 + k) + rng.normal(0, 1, length)
        for k in range(n_series)
    ]


def tiny_run(**train_overrides: Any) -> tuple[list[np.ndarray], ModelConfig, TrainConfig]:
    """Six short seasonal series, a tiny model, and a few steps of training on them."""
    train = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8, "min_history": 6,
             "max_history": 40, **train_overrides}  # fmt: skip
    return seasonal_series(6, 50), ModelConfig(horizon=4, hidden=8), TrainConfig(**train)


def write_csv(path: Path, series: list[np.ndarray]) -> Path:
    lines = ["series_id,timestamp,value"]
    for k, values in enumerate(series):
        lines += [f"s{k},{t},{v:.4f}" for t, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.slow
def test_fit_exports_reloads_registers_and_evaluates(tmp_path: Path) -> None:
    """Guards against a pipeline whose pieces work alone but not together: fit must write a
    loadable model.ts, consistent metadata, the report files, and a BentoML store entry."""
    data = write_csv(tmp_path / "shop.csv", seasonal_series(12, 60))
    home = tmp_path / "bentoml"
    fitted = run_cli(
        "fit", "--csv", str(data), "--out", str(tmp_path / "models"), *TINY_FIT,
        env={"BENTOML_HOME": str(home)},
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    assert "naive2" in fitted.stdout and "exported" in fitted.stdout

    out = tmp_path / "models" / "shop"
    for name in ("model.ts", "metadata.json", "eval.json", "forecasts.png", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    metadata = json.loads((out / "metadata.json").read_text())
    assert (metadata["name"], metadata["horizon"], metadata["season_length"]) == ("shop", 6, 12)
    assert (metadata["min_history"], metadata["max_history"]) == (12, 54)

    scripted = torch.jit.load(str(out / "model.ts"))
    values = torch.tensor(seasonal_series(1, 40)[0], dtype=torch.float32).unsqueeze(0)
    with torch.inference_mode():
        result = scripted(values, torch.tensor([40]))
    # The members' three quantiles and the 95% interval fit widened them into.
    assert metadata["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975]
    assert metadata["training"]["tail_ratio"]["chosen_by"] == "95% coverage nearest 95%"
    assert metadata["model_config"]["tail_ratio"] >= 1.0
    assert result.shape == (1, 6, 5) and torch.isfinite(result).all()

    stored = home / "models" / "forecaster-shop" / metadata["version"]
    assert (stored / "model.ts").read_bytes() == (out / "model.ts").read_bytes()
    assert json.loads((stored / "metadata.json").read_text()) == metadata

    evaluated = run_cli("evaluate", "--model", str(out), "--csv", str(data), "--out", str(tmp_path))
    assert evaluated.returncode == 0, evaluated.stderr
    # The same figures from both commands; CPU times are measured anew by each.
    from_fit = json.loads((out / "eval.json").read_text())
    from_evaluate = json.loads((tmp_path / "eval.json").read_text())
    assert without_timings(from_evaluate) == without_timings(from_fit)
    assert set(from_fit["peers"]) == {"AutoETS", "AutoTheta"}
    for figures in (from_fit, *from_fit["peers"].values()):
        assert figures["cpu_ms_per_series"] > 0


def without_timings(evaluation: dict) -> dict:
    """An eval.json without its measured CPU times, at any depth."""
    return {
        key: without_timings(value) if isinstance(value, dict) else value
        for key, value in evaluation.items()
        if key != "cpu_ms_per_series"
    }


def test_same_seed_gives_the_same_model() -> None:
    """Guards against unseeded randomness (sampling, dropout, init) in training."""
    series, config, train = tiny_run()
    first = fit(series, config, train, progress=False)
    second = fit(series, config, train, progress=False)
    assert [r["val_loss"] for r in first.history] == [r["val_loss"] for r in second.history]
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    np.testing.assert_array_equal(
        forecast(first.model, series, 40), forecast(second.model, series, 40)
    )


def test_companions_train_but_are_never_validated_on() -> None:
    """Guards against companions being ignored, or entering the early-stopping split."""
    series, config, train = tiny_run()
    alone = fit(series, config, train, progress=False)
    companions = [-3.0 * s for s in seasonal_series(6, 50, seed=1)]
    joined = fit(series, config, train, progress=False, companions=companions)
    assert not torch.equal(
        alone.model.state_dict()["head.2.weight"], joined.model.state_dict()["head.2.weight"]
    )
    # At lr 0 the weights never move, so equal validation losses mean equal validation sets.
    frozen = replace(train, lr=0.0)
    assert [r["val_loss"] for r in fit(series, config, frozen, progress=False).history] == [
        r["val_loss"]
        for r in fit(series, config, frozen, progress=False, companions=companions).history
    ]


def test_refit_keeps_the_chosen_epochs_and_history_but_not_the_weights() -> None:
    """Guards against a refit that reports other epochs than were chosen, or that hands
    back the first run's model."""
    series, config, train = tiny_run(epochs=6, lr=0.05, patience=2)
    chosen = fit(series, config, train, progress=False)
    refitted = fit(series, config, replace(train, refit=True), progress=False)

    def losses(history: list[dict[str, float]]) -> list[tuple[float, float]]:
        return [(row["train_loss"], row["val_loss"]) for row in history]

    assert refitted.best_epoch == chosen.best_epoch
    assert losses(refitted.history) == losses(chosen.history)
    assert not torch.equal(
        chosen.model.state_dict()["head.2.weight"], refitted.model.state_dict()["head.2.weight"]
    )


def test_refit_data_are_the_held_out_runs_with_the_validation_targets_put_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards against a refit that leaves the validation targets out (or a first run that
    trains on them), or that runs a different number of epochs than were chosen."""
    import training.train

    calls: list[tuple[list[np.ndarray], bool, int]] = []
    real = training.train._run_epochs

    def spy(fitting, val_batches, epochs, *rest):  # type: ignore[no-untyped-def]
        calls.append((fitting, val_batches is not None, epochs))
        return real(fitting, val_batches, epochs, *rest)

    monkeypatch.setattr(training.train, "_run_epochs", spy)
    series = seasonal_series(3, 30)
    companion = [np.arange(40.0)]
    config = TrainConfig(epochs=3, steps_per_epoch=1, batch_size=4, min_history=6, refit=True)
    result = fit(
        series, ModelConfig(horizon=4, hidden=8), config, progress=False, companions=companion
    )
    (first, validated, epochs), (second, revalidated, refit_epochs) = calls
    assert (validated, epochs, revalidated, refit_epochs) == (True, 3, False, result.best_epoch)
    assert [len(s) for s in first] == [26, 26, 26, 40]
    assert [len(s) for s in second] == [30, 30, 30, 40]
    np.testing.assert_array_equal(second[0], series[0])


def test_validate_only_trains_and_stops_before_the_validation_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against choosing settings on validation figures that early stopping (or a
    refit) has already looked at."""
    import training.members

    given: list[list[int]] = []
    real = training.members.fit

    def spy(series, *args, **kwargs):  # type: ignore[no-untyped-def]
        given.append([len(s) for s in series])
        return real(series, *args, **kwargs)

    monkeypatch.setattr(training.members, "fit", spy)  # one member: trained in this process
    data = write_csv(tmp_path / "shop.csv", seasonal_series(4, 60))
    out = str(tmp_path / "models")
    fitting = ["fit", "--csv", str(data), "--out", out, "--no-peers", "--no-register", *TINY_FIT]
    assert main([*fitting, "--members", "1"]) == 0
    assert main([*fitting, "--members", "1", "--validate-only", "--refit"]) == 0
    assert main([*fitting, "--members", "1", "--validate-only", "--origin", "2"]) == 0
    # 60 points: test 6, then validation 6; two origins back, 12 more
    assert given == [[54] * 4, [48] * 4, [36] * 4]
    validation = json.loads((tmp_path / "models" / "shop" / "validation.json").read_text())
    assert validation["n_series"] == 4
    assert main([*fitting, "--members", "1", "--origin", "1"]) == 2  # not with a shipped fit


def test_companions_need_an_m3_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Guards against --companions silently doing nothing for a CSV file."""
    data = write_csv(tmp_path / "shop.csv", seasonal_series(4, 60))
    assert main(["fit", "--csv", str(data), "--companions", *TINY_FIT]) == 2
    assert f"error: {data}: --companions needs --dataset (M3 only)" in capsys.readouterr().err
    assert main(["fit", "--csv", str(data), "--aggregated-companions", *TINY_FIT]) == 2
    assert "--aggregated-companions needs --dataset (M3 only)" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_epoch() -> None:
    """Guards against returning the last epoch's weights instead of the best validation one."""
    series, config, train = tiny_run(epochs=6, lr=0.05, patience=2)
    result = fit(series, config, train, progress=False)
    losses = [row["val_loss"] for row in result.history]
    assert result.best_val_loss == min(losses)
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert len(losses) <= result.best_epoch + train.patience


def test_early_stopping_waits_for_min_epochs() -> None:
    """Guards against a run ended by patience before `min_epochs`, and against min_epochs
    keeping a later epoch than the best one."""
    series, config, train = tiny_run(epochs=8, lr=0.2, patience=1)
    impatient = fit(series, config, train, progress=False)
    assert len(impatient.history) < train.epochs  # patience 1 ends this run early
    waiting = fit(series, config, replace(train, min_epochs=8), progress=False)
    losses = [row["val_loss"] for row in waiting.history]
    assert len(losses) == train.epochs
    assert losses[: len(impatient.history)] == [row["val_loss"] for row in impatient.history]
    assert waiting.best_epoch == 1 + losses.index(min(losses))
    with pytest.raises(ValueError, match="min_epochs must be in"):
        TrainConfig(epochs=8, min_epochs=9)


@pytest.mark.parametrize(
    "command",
    [[], ["fit"], ["evaluate"], ["backtest"], ["theta-grid"], ["csv"], ["readme-table"]],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m training" in capsys.readouterr().out


BAD_CSVS = {
    "missing_column": ("series_id,value\na,1\n", "missing column"),
    "non_numeric": ("series_id,timestamp,value\na,1,1.0\na,2,abc\n", "line 3"),
    "nan": ("series_id,timestamp,value\na,1,1.0\na,2,nan\n", "line 3"),
    "duplicate": ("series_id,timestamp,value\na,1,1.0\na,1,2.0\n", "duplicate"),
    "too_short": ("series_id,timestamp,value\na,1,1.0\na,2,2.0\n", "series 'a'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_exits_2_with_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards against bad input ending in a traceback or a zero exit code."""
    text, expected = BAD_CSVS[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    assert main(["fit", "--csv", str(path), "--horizon", "2", "--season-length", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(path) in err and expected in err


def test_bad_csv_exit_code_from_the_real_command(tmp_path: Path) -> None:
    """Guards against `python -m training` dropping main()'s exit code."""
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSVS["nan"][0])
    done = run_cli("fit", "--csv", str(path), "--horizon", "2", "--season-length", "1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "line 3" in done.stderr and "series 'a'" in done.stderr


def test_csv_without_horizon_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "ok.csv", seasonal_series(2, 40))
    assert main(["fit", "--csv", str(path)]) == 2
    assert "--csv needs --horizon and --season-length" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("dataset", "horizon", "season"),
    [("m3-other", 8, 1), ("m1-quarterly", 8, 4), ("tourism-yearly", 4, 1)],
)
def test_csv_command_writes_a_set_so_that_load_csv_gives_the_official_split(
    dataset: str, horizon: int, season: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guards against a CSV that fit --csv would split differently from the competition's
    own split (a lost test part, reordered points, rounded values), and against a printed
    command with another horizon or season than the set's."""
    from training.data import load_bundled, load_csv

    out = tmp_path / f"{dataset}.csv"
    assert main(["csv", "--dataset", dataset, "--out", str(out)]) == 0
    official = load_bundled(dataset)
    assert (official.horizon, official.season_length) == (horizon, season)
    printed = f"fit --csv {out} --horizon {horizon} --season-length {season}"
    assert printed in capsys.readouterr().out
    loaded = load_csv(out, official.horizon, official.season_length, 1)
    assert loaded.ids == official.ids
    for mine, theirs in zip(
        loaded.train + loaded.test, official.train + official.test, strict=True
    ):
        assert np.array_equal(mine, theirs)


@pytest.mark.parametrize(
    ("dataset", "horizon", "season"), [("m3-quarterly", 8, 4), ("m3-yearly", 6, 1)]
)
def test_fit_csv_takes_every_series_that_fit_dataset_takes(
    dataset: str, horizon: int, season: int, tmp_path: Path
) -> None:
    """Guards against `fit --csv` refusing a file that `fit --dataset` trains on: it asked
    each series for a training horizon before the validation one, so M3 quarterly's
    24-point series stopped the whole file."""
    import argparse

    from training.cli import load_series
    from training.data import load_m3

    out = tmp_path / f"{dataset}.csv"
    assert main(["csv", "--dataset", dataset, "--out", str(out)]) == 0
    args = argparse.Namespace(dataset=None, csv=out, horizon=horizon, season_length=season)
    loaded, min_history = load_series(args, None, validation=True)
    assert (len(loaded), min_history) == (len(load_m3(dataset)), max(2, season))


def test_theta_grid_scores_the_validation_split_with_each_share(tmp_path: Path) -> None:
    """Guards against a Theta-share grid that scores anything but the validation split
    (the test targets must not move it), that does not keep the model's own weights (share
    0 must reproduce the fit's own validation figures) or that applies the share wrongly
    (share 1 must score as the Theta method alone)."""
    series = seasonal_series(8, 60)
    data = write_csv(tmp_path / "shop.csv", series)
    out = tmp_path / "models"
    args = ["--csv", str(data), *TINY_FIT]
    assert (
        main(["fit", *args, "--validate-only", "--no-peers", "--no-register", "--out", str(out)])
        == 0
    )
    model = out / "shop"
    grid = tmp_path / "grid.json"
    grid_command = ["theta-grid", "--model", str(model), *args[:6], "--weights", "0", "1"]
    assert main([*grid_command, "--out", str(grid)]) == 0
    rows = json.loads(grid.read_text())["rows"]
    own = json.loads((model / "validation.json").read_text())
    assert rows[0]["smape"] == pytest.approx(own["smape"], rel=1e-9)
    assert rows[0]["mase"] == pytest.approx(own["mase"], rel=1e-9)

    histories = [s[:-12] for s in series]  # test and validation horizons held out
    targets = np.stack([s[-12:-6] for s in series])
    values, lengths = pad_right(histories)
    theta = ThetaForecaster(6, 12, 256, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR)
    with torch.inference_mode():
        points = theta(torch.from_numpy(values), torch.from_numpy(lengths)).double().numpy()
    assert rows[1]["smape"] == pytest.approx(smape(targets, points), rel=1e-5)

    moved = [np.concatenate([s[:-6], s[-6:] * 100.0]) for s in series]  # new test targets
    write_csv(tmp_path / "shop.csv", moved)
    assert main([*grid_command, "--out", str(grid)]) == 0
    assert json.loads(grid.read_text())["rows"] == rows


def test_fit_chooses_the_theta_share_on_the_members_before_their_refit(tmp_path: Path) -> None:
    """Guards against an automatic Theta share chosen with refitted members (they have
    trained on the validation targets) or not by the lowest validation MASE: the grid of a
    refit run must equal that of the same run without a refit, whose members are the
    early-stopped ones, and the exported share must be the grid's best."""
    data = write_csv(tmp_path / "shop.csv", seasonal_series(8, 60))
    common = ["fit", "--csv", str(data), *TINY_FIT, "--no-peers", "--no-register"]
    facts = {}
    for refit in ("--refit", "--no-refit"):
        out = tmp_path / refit
        assert main([*common, refit, "--out", str(out)]) == 0  # --theta-weight auto: default
        facts[refit] = json.loads((out / "shop" / "metadata.json").read_text())
    choice = facts["--refit"]["training"]["theta_share"]
    assert choice["chosen_by"] == "lowest validation MASE"
    assert [row["theta_weight"] for row in choice["grid"]] == [k / 10 for k in range(11)]
    best = min(choice["grid"], key=lambda row: row["mase"])
    assert choice["theta_weight"] == best["theta_weight"]
    assert facts["--refit"]["model_config"]["theta_weight"] == best["theta_weight"]
    assert facts["--no-refit"]["training"]["theta_share"] == choice

    # The dynamic Theta ramp (--theta-dynamic auto, the default too): of the standard method
    # and the 4-12 blend, the one whose best share scores the lower validation MASE; the
    # share grid above is that ramp's.
    ramps = facts["--refit"]["training"]["theta_dynamic"]
    assert ramps["chosen_by"] == "lower validation MASE"
    assert [(c["from"], c["full"]) for c in ramps["candidates"]] == [(0, 0), (4, 12)]
    # The lower MASE wins, the standard method a tie (as when both best shares are 0).
    winner = min(ramps["candidates"], key=lambda c: (c["MASE"], c["from"] > 0))
    assert (ramps["from"], ramps["full"]) == (winner["from"], winner["full"])
    config = facts["--refit"]["model_config"]
    assert (config["theta_dynamic_from"], config["theta_dynamic_full"]) == (
        winner["from"],
        winner["full"],
    )
    assert winner["theta_weight"] == best["theta_weight"]
    assert winner["MASE"] == pytest.approx(best["mase"], rel=1e-12)
    assert facts["--no-refit"]["training"]["theta_dynamic"] == ramps

    # The interval scale (--interval-scale auto, the default too) the same way, at that
    # share: the grid's scale whose 80% coverage is nearest 80%, the one nearer 1 of a tie.
    widths = facts["--refit"]["training"]["interval_scale"]
    assert widths["chosen_by"] == "80% coverage nearest 80%"
    assert [row["interval_scale"] for row in widths["grid"]] == list(SCALE_GRID)
    nearest = min(
        widths["grid"],
        key=lambda row: (abs(row["coverage_80"] - 0.8), abs(row["interval_scale"] - 1)),
    )
    assert widths["interval_scale"] == nearest["interval_scale"]
    assert facts["--refit"]["model_config"]["interval_scale"] == nearest["interval_scale"]
    assert facts["--no-refit"]["training"]["interval_scale"] == widths
    coverages = {row["coverage_80"] for row in widths["grid"]}
    assert len(coverages) > 1  # the scales do move the interval

    # Without a refit the exported model is the one the grids scored.
    validation = json.loads((tmp_path / "--no-refit" / "shop" / "validation.json").read_text())
    assert validation["mase"] == pytest.approx(best["mase"], rel=1e-6)
    assert validation["coverage_80"] == pytest.approx(nearest["coverage_80"], rel=1e-9)


def test_a_given_theta_share_is_kept_and_validate_only_does_not_choose(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "shop.csv", seasonal_series(8, 60))
    common = ["fit", "--csv", str(data), *TINY_FIT, "--no-peers", "--no-register"]
    for extra, share, scale, chosen_by in (
        (["--theta-weight", "0.3", "--interval-scale", "0.7"], 0.3, 0.7, "given"),
        (["--validate-only"], 0.0, 1.0, "--validate-only: theta-grid scores"),
    ):
        out = tmp_path / extra[0]
        assert main([*common, *extra, "--out", str(out)]) == 0
        metadata = json.loads((out / "shop" / "metadata.json").read_text())
        assert metadata["training"]["theta_share"] == {
            "theta_weight": share,
            "chosen_by": chosen_by + (" shares" if chosen_by != "given" else ""),
        }
        assert metadata["training"]["interval_scale"] == {
            "interval_scale": scale,
            "chosen_by": chosen_by + (" scales" if chosen_by != "given" else ""),
        }
        assert metadata["model_config"]["theta_weight"] == share
        assert metadata["model_config"]["interval_scale"] == scale
        if "--validate-only" in extra:
            assert metadata["training"]["theta_dynamic"] == {
                "from": 0,
                "full": 0,
                "chosen_by": "--validate-only: theta-grid scores it",
            }
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(SystemExit):
            main([*common, "--theta-weight", bad, "--out", str(tmp_path / "bad")])
        with pytest.raises(SystemExit):
            main(["theta-grid", "--model", str(tmp_path / "bad"), *common[1:7], "--weights", bad])


def test_the_dynamic_theta_and_interval_scale_are_exported_and_theta_grid_can_vary_them(
    tmp_path: Path,
) -> None:
    """Guards against `--theta-dynamic`, `--interval-scale` or `--theta-base` lost between
    the command line and the exported module, against a theta-grid that ignores its
    overrides, and against bad values reaching a training run."""
    data = write_csv(tmp_path / "shop.csv", seasonal_series(8, 60))
    common = ["fit", "--csv", str(data), *TINY_FIT, "--no-peers", "--no-register"]
    given = ["--theta-weight", "1", "--theta-dynamic", "4", "12", "--interval-scale", "0.5"]
    out = tmp_path / "models"
    assert main([*common, "--validate-only", *given, "--theta-base", "--out", str(out)]) == 0
    config = json.loads((out / "shop" / "metadata.json").read_text())["model_config"]
    assert (config["theta_dynamic_from"], config["theta_dynamic_full"]) == (4, 12)
    assert config["interval_scale"] == 0.5
    assert [member["theta_base"] for member in config["members"]] == [True] * 4
    dynamic = json.loads((out / "shop" / "metadata.json").read_text())["training"]["theta_dynamic"]
    assert dynamic == {"from": 4, "full": 12, "chosen_by": "given"}

    # With the share given as 1 (Theta alone) the two ramps forecast differently, and
    # `auto` keeps the one with the lower validation MASE at that share.
    chosen = tmp_path / "chosen"
    assert main([*common, "--theta-weight", "1", "--no-refit", "--out", str(chosen)]) == 0
    metadata = json.loads((chosen / "shop" / "metadata.json").read_text())
    candidates = metadata["training"]["theta_dynamic"]["candidates"]
    assert [c["theta_weight"] for c in candidates] == [1.0, 1.0]
    assert candidates[0]["MASE"] != candidates[1]["MASE"]
    winner = min(candidates, key=lambda c: c["MASE"])
    config = metadata["model_config"]
    assert (config["theta_dynamic_from"], config["theta_dynamic_full"]) == (
        winner["from"],
        winner["full"],
    )
    validation = json.loads((chosen / "shop" / "validation.json").read_text())
    assert validation["mase"] == pytest.approx(winner["MASE"], rel=1e-6)

    grid = ["theta-grid", "--model", str(out / "shop"), *common[1:7], "--weights", "1"]

    def scored(*extra: str) -> dict[str, float]:
        assert main([*grid, *extra, "--out", str(tmp_path / "grid.json")]) == 0
        return json.loads((tmp_path / "grid.json").read_text())["rows"][0]

    own = scored()
    own_validation = json.loads((out / "shop" / "validation.json").read_text())
    assert own["mase"] == pytest.approx(own_validation["mase"], rel=1e-9)
    assert own["coverage_80"] == pytest.approx(own_validation["coverage_80"], rel=1e-9)
    wider = scored("--interval-scale", "2")
    assert wider["mase"] == own["mase"] and wider["coverage_80"] > own["coverage_80"]
    standard = scored("--theta-dynamic", "0", "0")
    assert standard["mase"] != own["mase"]

    refused = (
        ["--theta-dynamic", "12", "4"],
        ["--theta-dynamic", "4"],
        ["--theta-dynamic", "auto", "4"],
        ["--interval-scale", "0"],
        ["--interval-scale", "-1"],
        ["--interval-scale", "wide"],
    )
    for bad in refused:
        with pytest.raises(SystemExit):
            main([*common, *bad, "--out", str(tmp_path / "bad")])
        with pytest.raises(SystemExit):
            main([*grid, *bad])
    with pytest.raises(SystemExit):  # theta-grid scores one ramp, it does not choose
        main([*grid, "--theta-dynamic", "auto"])


def test_the_lstm_part_alone_keeps_the_members_widths_in_old_and_new_modules() -> None:
    """Guards against the report's "LSTM ensemble alone" row carrying the combination's
    interval scale, and against a module exported before the scale existed failing to
    report its parts."""
    histories = load_m3("m3-yearly").train[:20]
    model, metadata = load_exported(ROOT / "models" / "m3-yearly")
    scale = metadata["model_config"]["interval_scale"]
    assert scale != 1.0
    lstm = combined_parts(model, histories, metadata["max_history"])["LSTM ensemble"]
    with share_set(model, 0.0):
        narrowed = forecast(model, histories, metadata["max_history"])  # (20, H, Q)
    index = metadata["point_quantile_index"]
    point = narrowed[:, :, index : index + 1]
    np.testing.assert_allclose(lstm, point + (narrowed - point) / scale, rtol=1e-5, atol=1e-3)
    assert model.interval_scale == scale

    old = torch.jit.script(BeforeTheScale())
    assert not hasattr(old, "interval_scale")
    parts = combined_parts(old, histories, metadata["max_history"])
    last = np.array([h[-1] for h in histories])[:, None]  # (20, 1)
    np.testing.assert_allclose(parts["LSTM ensemble"][:, :, 1], np.repeat(last, 6, axis=1))
    assert old.theta_weight == 0.5  # given back after the part was scored


class BeforeTheScale(torch.nn.Module):
    """What `combined_parts` reads of an ensemble exported before the interval scale
    existed: a Theta share and a Theta part, no `interval_scale`. Its "members" forecast
    the last value, with a band of one either side."""

    def __init__(self) -> None:
        super().__init__()
        self.theta_weight = 0.5
        self.theta = ThetaForecaster(6, 1, 256, RELATIVE_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = values.gather(1, (lengths - 1).unsqueeze(1))  # (B, 1)
        point = last + self.theta_weight * (self.theta(values, lengths) - last)  # (B, H)
        return torch.stack([point - 1.0, point, point + 1.0], dim=2)  # (B, H, 3)

"""`python -m training fit|evaluate|backtest|reexport|csv`: train, evaluate, export models."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import distributed, model_table
from training.data import (
    BUNDLED_SETS,
    COMPANION_SOURCES,
    DATASETS,
    DataError,
    SeriesSet,
    load_bundled,
    load_companions,
    load_csv,
    load_m3,
)
from training.export import (
    METADATA_FILE,
    ExportCheckError,
    ModelFacts,
    export_model,
    load_exported,
)
from training.members import MemberTask, default_jobs, threads_per_job, train_members
from training.metrics import INTERVALS, coverage_key
from training.model import (
    COMBINE_RULES,
    EnsembleConfig,
    EnsembleForecaster,
    ModelConfig,
    config_from_dict,
    ensemble_of,
    is_tail_ratio,
)
from training.peers import run_peers
from training.reexport import (
    check_same_forecasts,
    output_quantiles,
    rebuilt,
    reexport_facts,
    with_tails,
)
from training.report import (
    backtest_summary,
    evaluate,
    format_backtest,
    format_table,
    plot_learning_curve,
    plot_samples,
    write_eval_json,
)
from training.shares import (
    SCALE_GRID,
    SHARE_GRID,
    TAIL_GRID,
    best_interval_scale,
    best_share,
    best_tail_ratio,
    score_grid,
    score_shares,
    setting_set,
    share_set,
)
from training.splits import origin_split, validation_split
from training.theta import check_dynamic_span
from training.train import (
    FORECAST_BATCH,
    LOSS_SCALES,
    TrainConfig,
    TrainResult,
    forecast,
)

DEFAULT_OUT = Path("models")
# Defaults chosen on the M3 validation splits (docs/EXPERIMENTS.md).
DEFAULT_MEMBERS = 4
DEFAULT_HIDDEN = 32
DEFAULT_LAYERS = 2
DEFAULT_LOSS_SCALES = ("level",)
DEFAULT_SEASONAL_BASE = True
DEFAULT_SEASONAL_CYCLES = 1
DEFAULT_TREND_BASE = False
DEFAULT_THETA_WEIGHT = "auto"
DEFAULT_COMPANIONS = True
DEFAULT_REFIT = True


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=DATASETS, help="an M3 subset, official split")
    source.add_argument("--csv", type=Path, help="long-format CSV: series_id,timestamp,value")
    parser.add_argument("--horizon", type=int, help="with --csv: points to forecast (required)")
    parser.add_argument(
        "--season-length", type=int, help="with --csv: season length, 1 if none (required)"
    )
    parser.add_argument(
        "--min-history",
        type=int,
        help="shortest history the model accepts (default: max(2, season length))",
    )


def theta_share(text: str) -> float:
    """A Theta share given on the command line: a number in [0, 1]."""
    share = float(text)
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return share


def theta_share_or_auto(text: str) -> float | str:
    """`--theta-weight`: "auto" or a share in [0, 1]."""
    return text if text == "auto" else theta_share(text)


class DynamicSpanAction(argparse.Action):
    """`--theta-dynamic FROM FULL` (or `auto` where allowed), refused at parsing unless
    0 <= FROM < FULL or both 0."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        allow_auto = self.const == "auto"
        if allow_auto and values == ["auto"]:
            setattr(namespace, self.dest, "auto")
            return
        wanted = f"two whole numbers FROM FULL{' or auto' if allow_auto else ''}"
        if len(values) != 2 or not all(value.isdigit() for value in values):
            parser.error(f"{option}: takes {wanted}, got {' '.join(values)}")
        span = (int(values[0]), int(values[1]))
        try:
            check_dynamic_span(*span)
        except ValueError as error:
            parser.error(f"{option}: {error}")
        setattr(namespace, self.dest, span)


def add_theta_dynamic_argument(
    parser: argparse.ArgumentParser, default: tuple[int, int] | str | None
) -> None:
    allow_auto = default == "auto"
    parser.add_argument(
        "--theta-dynamic",
        nargs="+",
        action=DynamicSpanAction,
        const="auto" if allow_auto else None,
        metavar="VALUE",
        default=default,
        help="FROM FULL: blend the dynamic optimised Theta model into the Theta part, its "
        "share rising from 0 at histories of FROM points to 1 at FULL points (0 0: the "
        "standard method alone"
        + (
            "), or auto: the one of 0 0 and "
            + " ".join(str(v) for v in DYNAMIC_CHOICES[1])
            + " whose best Theta share scores the lower validation MASE, the members "
            "before their refit (with --validate-only, auto is 0 0)"
            if allow_auto
            else "; default: the model's own)"
        ),
    )


def positive(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_or_auto(text: str) -> float | str:
    """`fit --interval-scale`: "auto" or a number above 0."""
    return text if text == "auto" else positive(text)


def tail_ratio(text: str) -> float:
    """A 95% interval's distance from the point forecast, in 80% intervals: 0 (none) or
    at least 1."""
    value = float(text)
    if not is_tail_ratio(value):
        raise argparse.ArgumentTypeError(f"must be 0 (no 95% interval) or >= 1, got {text}")
    return value


def tail_ratio_or_auto(text: str) -> float | str:
    """`fit --tail-ratio`: "auto" or a tail ratio."""
    return text if text == "auto" else tail_ratio(text)


def default_lookback(horizon: int, season_length: int, longest: int) -> int:
    """The history a member reads when none is given: enough seasons and horizons to see
    the pattern, bounded so that training cost does not grow with the longest series."""
    return min(longest, max(3 * horizon, 4 * season_length, 24))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    fit_parser = commands.add_parser(
        "fit",
        help="train, evaluate on the test split, export to models/<name>/",
        description=(
            "Train an ensemble of stacked LSTMs, report it beside AutoETS, AutoTheta and the "
            "baselines on the validation split (each series' last horizon training points) "
            "and the test split, export TorchScript."
        ),
    )
    add_data_arguments(fit_parser)
    fit_parser.add_argument("--name", help="model name (default: the dataset or CSV file stem)")
    fit_parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="models folder")
    fit_parser.add_argument(
        "--max-history",
        type=int,
        help="longest history the service accepts (default: longest training part)",
    )
    fit_parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="ensemble size")
    fit_parser.add_argument(
        "--lookbacks",
        type=int,
        nargs="+",
        help="points each member reads, cycled over members; 0 = all "
        "(default: one, max(3 * horizon, 4 * season length, 24))",
    )
    fit_parser.add_argument(
        "--loss-scales",
        nargs="+",
        choices=LOSS_SCALES,
        default=list(DEFAULT_LOSS_SCALES),
        help="each member's loss divisor, cycled over members",
    )
    fit_parser.add_argument(
        "--combine", choices=COMBINE_RULES, default="median", help="how members' quantiles meet"
    )
    fit_parser.add_argument(
        "--seasonal-base",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_SEASONAL_BASE,
        help="start each forecast from a learned blend of naive and seasonal naive",
    )
    fit_parser.add_argument(
        "--seasonal-cycles",
        type=int,
        default=DEFAULT_SEASONAL_CYCLES,
        help="whole seasons whose pattern the seasonal base averages (1: seasonal naive)",
    )
    fit_parser.add_argument(
        "--seasonal-input",
        action="store_true",
        help="the LSTM also reads each step's change since one season earlier",
    )
    fit_parser.add_argument(
        "--trend-base",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_TREND_BASE,
        help="also start each forecast from a learned share of the history's drift",
    )
    fit_parser.add_argument(
        "--trend-fit",
        action="store_true",
        help="with --trend-base: the drift is the least-squares slope, not the end points'",
    )
    fit_parser.add_argument(
        "--theta-weight",
        type=theta_share_or_auto,
        default=DEFAULT_THETA_WEIGHT,
        help="the Theta method's share of the point forecast, 0 to 1 (0: the LSTMs alone), "
        "or auto: the share of 0, 0.1, ..., 1 with the lowest validation MASE, scored with "
        "the members before their refit (with --validate-only, auto is 0: score shares "
        "with theta-grid)",
    )
    add_theta_dynamic_argument(fit_parser, default="auto")
    fit_parser.add_argument(
        "--interval-scale",
        type=positive_or_auto,
        default="auto",
        help="multiply every quantile's distance from the point forecast by this (1: the "
        "members' own widths), or auto: the factor of 0.5, 0.55, ..., 2 whose 80%% interval "
        "covers the validation targets nearest 80%%, scored with the members before their "
        "refit at the exported Theta share (with --validate-only, auto is 1)",
    )
    fit_parser.add_argument(
        "--tail-ratio",
        type=tail_ratio_or_auto,
        default="auto",
        help="add a 95%% interval (quantiles 0.025 and 0.975) this many times as far from "
        "the point forecast as the 80%% one, on each side (0: none), or auto: the ratio of "
        "1, 1.05, ..., 3 whose 95%% interval covers the validation targets nearest 95%%, "
        "scored with the members before their refit at the exported share and scale "
        "(with --validate-only, or members of other quantiles than 0.1 0.5 0.9, auto is 0)",
    )
    fit_parser.add_argument(
        "--companions",
        action=argparse.BooleanOptionalAction,
        help=f"with --dataset: also train on the {' and '.join(COMPANION_SOURCES)} series of "
        "the same frequency, except any that appear in M3 "
        f"(default: {'on' if DEFAULT_COMPANIONS else 'off'})",
    )
    fit_parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    fit_parser.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN)
    fit_parser.add_argument("--dropout", type=float, default=ModelConfig.dropout)
    fit_parser.add_argument("--bidirectional", action="store_true", help="read histories both ways")
    fit_parser.add_argument(
        "--learned-init", action="store_true", help="learn the LSTM's initial states"
    )
    fit_parser.add_argument(
        "--quantiles",
        type=float,
        nargs="+",
        default=list(ModelConfig.quantiles),
        help="quantiles to forecast; must include 0.5",
    )
    fit_parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    fit_parser.add_argument("--steps-per-epoch", type=int, default=TrainConfig.steps_per_epoch)
    fit_parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    fit_parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    fit_parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    fit_parser.add_argument("--clip", type=float, default=TrainConfig.clip, help="grad-norm cap")
    fit_parser.add_argument(
        "--patience", type=int, default=TrainConfig.patience, help="early-stopping epochs"
    )
    fit_parser.add_argument(
        "--min-epochs",
        type=int,
        help="epochs before early stopping may end a run (default: half of --epochs)",
    )
    fit_parser.add_argument(
        "--recency",
        type=float,
        default=TrainConfig.recency,
        help="origin weight per step back from a series' end; 1 = uniform",
    )
    fit_parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_REFIT,
        help="after early stopping, train each member again for the chosen epochs on every "
        "training point, the validation targets included "
        f"(default: {'on' if DEFAULT_REFIT else 'off'})",
    )
    fit_parser.add_argument("--seed", type=int, default=TrainConfig.seed, help="member i: seed+i")
    fit_parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    fit_parser.add_argument(
        "--jobs",
        type=positive_int,
        help="members trained at once, each in a process of its own (default: one per core "
        "on a CPU, 1 on a GPU or under torchrun), with the cores shared out as threads",
    )
    fit_parser.add_argument(
        "--validate-only",
        action="store_true",
        help="score the validation split only (for choosing settings): training, early "
        "stopping and any refit end one horizon before the validation targets, as they "
        "end before the test split otherwise; the test split is not looked at and the "
        "model is written without a test evaluation",
    )
    fit_parser.add_argument(
        "--origin",
        type=int,
        default=0,
        help="with --validate-only: move every forecast origin this many horizons further "
        "back first, so a setting can be chosen over several origins, not one",
    )
    fit_parser.add_argument(
        "--no-peers", action="store_true", help="skip AutoETS and AutoTheta in the reports"
    )
    fit_parser.add_argument(
        "--no-register", action="store_true", help="skip the BentoML model store"
    )
    fit_parser.add_argument("--quiet", action="store_true", help="no progress bar")

    eval_parser = commands.add_parser(
        "evaluate",
        help="evaluate an exported model on a test split",
        description="Evaluate an exported model beside AutoETS, AutoTheta and the baselines.",
    )
    eval_parser.add_argument("--model", type=Path, required=True, help="models/<name> folder")
    add_data_arguments(eval_parser)
    eval_parser.add_argument(
        "--out", type=Path, help="where eval.json and PNGs go (default: the model folder)"
    )
    eval_parser.add_argument("--no-peers", action="store_true", help="skip AutoETS and AutoTheta")

    backtest_parser = commands.add_parser(
        "backtest",
        help="rolling-origin evaluation over the last K forecast origins",
        description=(
            "Score an exported model and its peers at each of the last K forecast origins: "
            "window k ends k horizons before the official test split (k = 0 is that split). "
            "Each forecaster sees only the history before its window's targets."
        ),
    )
    backtest_parser.add_argument("--model", type=Path, required=True, help="models/<name> folder")
    add_data_arguments(backtest_parser)
    backtest_parser.add_argument("--windows", type=int, default=3, help="forecast origins K")
    backtest_parser.add_argument("--out", type=Path, help="JSON file (default: print only)")
    backtest_parser.add_argument(
        "--no-peers", action="store_true", help="skip AutoETS and AutoTheta"
    )

    reexport_parser = commands.add_parser(
        "reexport",
        help="export a model again with this code, around its own weights, no retraining",
        description=(
            "Rebuild an exported model with this code from its metadata and weights, check "
            "that it forecasts every history of the data set as the exported file does "
            "(within export's tolerance), export it again with its training record kept, and "
            "evaluate the new file as evaluate does. A module change that moves forecasts "
            "is refused: that model needs fit."
        ),
    )
    reexport_parser.add_argument("--model", type=Path, required=True, help="models/<name> folder")
    add_data_arguments(reexport_parser)
    reexport_parser.add_argument(
        "--out", type=Path, help="the folder to export to (default: the model folder, replaced)"
    )
    reexport_parser.add_argument(
        "--tail-ratio",
        type=tail_ratio,
        help="add a 95%% interval this many 80%% intervals wide to a model without one "
        "(fit --tail-ratio); every quantile the model had is checked unchanged",
    )
    reexport_parser.add_argument(
        "--no-peers", action="store_true", help="skip AutoETS and AutoTheta"
    )
    reexport_parser.add_argument(
        "--no-register", action="store_true", help="skip the BentoML model store"
    )

    grid_parser = commands.add_parser(
        "theta-grid",
        help="score a model's validation split with each Theta share of a grid",
        description=(
            "Rebuild an exported ensemble around its own weights with each --weights share "
            "of the Theta method and score the validation split (each series' last horizon "
            "training points, --origin horizons further back) for each. The test split is "
            "not looked at. Meant for models written by fit --validate-only, whose training "
            "ended before those targets."
        ),
    )
    grid_parser.add_argument("--model", type=Path, required=True, help="models/<name> folder")
    add_data_arguments(grid_parser)
    grid_parser.add_argument(
        "--weights", type=theta_share, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0]
    )
    grid_parser.add_argument("--origin", type=int, default=0, help="as fit --origin")
    add_theta_dynamic_argument(grid_parser, default=None)
    grid_parser.add_argument(
        "--interval-scale",
        type=positive,
        help="multiply every quantile's distance from the point forecast by this "
        "(default: the model's own)",
    )
    grid_parser.add_argument(
        "--tail-ratio",
        type=tail_ratio,
        help="score a 95%% interval this many 80%% intervals wide (default: the model's own)",
    )
    grid_parser.add_argument("--out", type=Path, help="JSON file (default: print only)")

    csv_parser = commands.add_parser(
        "csv",
        help="write a bundled M3, M1 or Tourism set as a long-format CSV (the format fit "
        "--csv reads)",
        description="Write a bundled set (in-sample and test parts) as "
        "series_id,timestamp,value, and print the fit --csv command that trains on it.",
    )
    csv_parser.add_argument("--dataset", choices=BUNDLED_SETS, required=True)
    csv_parser.add_argument("--out", type=Path, required=True, help="CSV file to write")

    table_parser = commands.add_parser(
        "readme-table",
        help="rewrite README's model table from the shipped models' eval.json files",
        description="Rewrite the per-frequency table in README.md from models/<set>/eval.json.",
    )
    table_parser.add_argument("--readme", type=Path, default=Path("README.md"))
    table_parser.add_argument("--models", type=Path, default=DEFAULT_OUT, help="models folder")
    return parser


def run_readme_table(args: argparse.Namespace) -> None:
    readme = args.readme.read_text()
    written = model_table.rewrite(readme, model_table.table_rows(args.models, DATASETS))
    args.readme.write_text(written)
    print(f"{args.readme}: model table {'rewritten' if written != readme else 'already current'}")


def run_csv(args: argparse.Namespace) -> None:
    series = load_bundled(args.dataset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series_id", "timestamp", "value"])
        for sid, history, future in zip(series.ids, series.train, series.test, strict=True):
            whole = np.concatenate([history, future])
            writer.writerows((sid, t, repr(float(v))) for t, v in enumerate(whole))
    print(f"wrote {len(series)} series of {args.dataset} to {args.out}; train on it with")
    print(
        f"python -m training fit --csv {args.out} --horizon {series.horizon} "
        f"--season-length {series.season_length}"
    )


def load_series(
    args: argparse.Namespace, min_history: int | None, validation: bool
) -> tuple[SeriesSet, int]:
    """The chosen data set and the minimum history length in force.

    A CSV series must hold min_history points, then (when training) the validation
    horizon, then the test horizon; shorter ones are an error naming the series. As with
    M3, a series too short to hold a training example before its validation horizon is
    still validated and tested, and the others train the model.
    """
    if args.dataset:
        series = load_m3(args.dataset)
        return series, min_history or max(2, series.season_length)
    if args.horizon is None or args.season_length is None:
        raise DataError(f"{args.csv}: --csv needs --horizon and --season-length")
    min_history = min_history or max(2, args.season_length)
    min_train = min_history + (args.horizon if validation else 0)
    return load_csv(args.csv, args.horizon, args.season_length, min_train), min_history


# Calls before our forward pass is timed, on the first batch of the series scored.
WARM_UP_CALLS = 2
# Timed passes over the whole set, their median reported: one pass over a small set
# (174 series take about 20 ms) is at the mercy of a single interruption.
TIMED_PASSES = 3


def scored(
    series: SeriesSet,
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_history: int,
    quantiles: list[float],
    peers: bool,
) -> tuple[dict[str, Any], np.ndarray]:
    """The model's forecasts of `series` and their evaluation beside peers and baselines."""
    # Untimed: a TorchScript module profiles and optimises itself on its first calls.
    for _ in range(WARM_UP_CALLS):
        forecast(model, series.train[:FORECAST_BATCH], max_history)
    seconds = []
    for _ in range(TIMED_PASSES):
        started = time.process_time()
        forecasts = forecast(model, series.train, max_history)  # (N, H, Q)
        seconds.append(time.process_time() - started)
    cpu_ms = 1000.0 * statistics.median(seconds) / len(series)
    peer_forecasts = run_peers(series) if peers else []
    parts = combined_parts(model, series.train, max_history)
    result = evaluate(series, forecasts, quantiles, peer_forecasts, cpu_ms, parts)
    return result, forecasts


def combined_parts(model: Any, histories: list[np.ndarray], max_history: int) -> dict[str, Any]:
    """What an ensemble with a Theta share combines, each forecast alone (eager or scripted
    module): the LSTM members' combination (N, H, Q), at their own widths, and the Theta
    points (N, H)."""
    if not getattr(model, "theta_weight", 0.0):
        return {}
    # Modules exported before the interval scale existed have none (their widths are 1).
    own_widths = (
        setting_set(model, "interval_scale", 1.0)
        if hasattr(model, "interval_scale")
        else nullcontext()
    )
    with share_set(model, 0.0), own_widths:
        lstm = forecast(model, histories, max_history)  # (N, H, Q)
    return {"LSTM ensemble": lstm, "Theta": forecast(model.theta, histories, max_history)}


def write_report(
    series: SeriesSet,
    result: dict[str, Any],
    forecasts: np.ndarray,
    quantiles: list[float],
    folder: Path,
) -> None:
    """eval.json and the forecasts plot of one evaluation, into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    write_eval_json(result, folder / "eval.json")
    plot_samples(series, forecasts, quantiles, folder / "forecasts.png")


def member_configs(args: argparse.Namespace, series: SeriesSet, longest: int) -> list[ModelConfig]:
    lookbacks = args.lookbacks or [default_lookback(series.horizon, series.season_length, longest)]
    return [
        ModelConfig(
            horizon=series.horizon,
            quantiles=tuple(args.quantiles),
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            bidirectional=args.bidirectional,
            learned_init=args.learned_init,
            lookback=lookbacks[i % len(lookbacks)],
            season_length=series.season_length if args.seasonal_base else 1,
            seasonal_cycles=args.seasonal_cycles,
            seasonal_input=args.seasonal_input,
            trend_base=args.trend_base,
            trend_fit=args.trend_fit,
        )
        for i in range(args.members)
    ]


def member_train_configs(
    args: argparse.Namespace,
    configs: list[ModelConfig],
    season_length: int,
    min_history: int,
    longest: int,
) -> list[TrainConfig]:
    """How each member trains: the same settings, its own seed and loss scale (cycled)."""
    return [
        TrainConfig(
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            clip=args.clip,
            patience=args.patience,
            min_epochs=args.epochs // 2 if args.min_epochs is None else args.min_epochs,
            seed=args.seed + i,
            device=args.device,
            min_history=min_history,
            max_history=config.lookback or longest,
            loss_scale=args.loss_scales[i % len(args.loss_scales)],
            season_length=season_length,
            recency=args.recency,
            refit=args.refit,
        )
        for i, config in enumerate(configs)
    ]


def companion_series(args: argparse.Namespace) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The extra training series `--companions` asks for, and what to record about them."""
    if args.csv is not None:
        if args.companions:
            raise DataError(f"{args.csv}: --companions needs --dataset (M3 only)")
        return [], {}
    if not (DEFAULT_COMPANIONS if args.companions is None else args.companions):
        return [], {}
    kept, dropped = load_companions(args.dataset)
    facts = {"sources": list(COMPANION_SOURCES), "series": len(kept), "dropped_in_m3": dropped}
    return kept, facts


# The ramps `fit --theta-dynamic auto` chooses between: the standard Theta method alone,
# and the dynamic model blended in from 4 to 12 points (chosen on M3 yearly's validation
# origins, docs/EXPERIMENTS.md).
DYNAMIC_CHOICES = ((0, 0), (4, 12))


def early_grid(
    runs: list[tuple[TrainConfig, TrainResult]],
    config: EnsembleConfig,
    setting: str,
    values: tuple[float, ...],
    validation: SeriesSet,
    max_history: int,
) -> list[dict[str, float]]:
    """The validation figures of the ensemble `config` describes with each value of
    `setting`, its members as early stopping left them: the refitted ones have trained
    on the validation targets."""
    early = ensemble_of([result.early_model for _, result in runs], config).eval()
    return score_grid(early, setting, values, validation, max_history, list(config.quantiles))


def chosen_theta_dynamic(
    args: argparse.Namespace,
    runs: list[tuple[TrainConfig, TrainResult]],
    config: EnsembleConfig,
    validation: SeriesSet,
    max_history: int,
) -> tuple[dict[str, Any], list[dict[str, float]] | None]:
    """The dynamic Theta ramp `fit` exports and how it was chosen: for `auto`, the one of
    DYNAMIC_CHOICES whose best Theta share (or the share given) scores the lower validation
    MASE (`early_grid`; sMAPE where no series has a MASE), the standard method of a tie.
    Second, the chosen ramp's grid of shares where it scored them all (`--theta-weight
    auto`), for `chosen_theta_share` to choose from; else None."""
    if args.theta_dynamic != "auto":
        low, full = args.theta_dynamic
        return {"from": low, "full": full, "chosen_by": "given"}, None
    if args.validate_only:
        print("dynamic Theta off (--validate-only: score it with theta-grid)")
        return {"from": 0, "full": 0, "chosen_by": "--validate-only: theta-grid scores it"}, None
    shares = SHARE_GRID if args.theta_weight == "auto" else (args.theta_weight,)
    candidates = []
    grids = []
    for low, full in DYNAMIC_CHOICES:
        ramp = replace(config, theta_dynamic_from=low, theta_dynamic_full=full)
        rows = early_grid(runs, ramp, "theta_weight", shares, validation, max_history)
        share, figure = best_share(rows)
        best = next(row for row in rows if row["theta_weight"] == share)
        candidates.append(
            {"from": low, "full": full, "theta_weight": share, figure: best[figure.lower()]}
        )
        grids.append(rows)
    index = min(
        range(len(candidates)),
        key=lambda i: (candidates[i][figure], DYNAMIC_CHOICES[i] != (0, 0)),
    )
    chosen = candidates[index]
    scores = ", ".join(
        f"{c['from']} {c['full']}: {c[figure]:.3f} at share {c['theta_weight']:g}"
        for c in candidates
    )
    span = f"{chosen['from']} {chosen['full']}"
    print(f"dynamic Theta {span}: the lower validation {figure} ({scores})")
    choice = {
        "from": chosen["from"],
        "full": chosen["full"],
        "chosen_by": f"lower validation {figure}",
        "candidates": candidates,
    }
    return choice, grids[index] if args.theta_weight == "auto" else None


def chosen_theta_share(
    args: argparse.Namespace,
    runs: list[tuple[TrainConfig, TrainResult]],
    config: EnsembleConfig,
    validation: SeriesSet,
    max_history: int,
    rows: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The Theta share `fit` exports, how it was chosen and, for `auto`, each share's
    validation figures (`early_grid`, or `rows` where the grid of SHARE_GRID was scored
    already)."""
    if args.theta_weight != "auto":
        return {"theta_weight": args.theta_weight, "chosen_by": "given"}
    if args.validate_only:
        # Choosing here would read the very targets this run is to be judged on.
        print("Theta share 0 (--validate-only: score each share with theta-grid)")
        return {"theta_weight": 0.0, "chosen_by": "--validate-only: theta-grid scores shares"}
    if rows is None:
        rows = early_grid(runs, config, "theta_weight", SHARE_GRID, validation, max_history)
    share, figure = best_share(rows)
    scores = ", ".join(f"{row['theta_weight']:g}: {row[figure.lower()]:.3f}" for row in rows)
    print(f"Theta share {share:g}: the lowest validation {figure} of {len(rows)} shares ({scores})")
    return {"theta_weight": share, "chosen_by": f"lowest validation {figure}", "grid": rows}


def chosen_interval_scale(
    args: argparse.Namespace,
    runs: list[tuple[TrainConfig, TrainResult]],
    config: EnsembleConfig,
    validation: SeriesSet,
    max_history: int,
) -> dict[str, Any]:
    """The interval scale `fit` exports, how it was chosen and, for `auto`, each scale's
    validation figures: as `chosen_theta_share`, at the share already chosen."""
    if args.interval_scale != "auto":
        return {"interval_scale": args.interval_scale, "chosen_by": "given"}
    if args.validate_only:
        print("interval scale 1 (--validate-only: score scales with theta-grid)")
        return {"interval_scale": 1.0, "chosen_by": "--validate-only: theta-grid scores scales"}
    rows = early_grid(runs, config, "interval_scale", SCALE_GRID, validation, max_history)
    scale = best_interval_scale(rows)
    if scale is None:
        print("interval scale 1: the quantiles hold no 80% interval to calibrate")
        return {"interval_scale": 1.0, "chosen_by": "no 80% interval (quantiles 0.1, 0.9)"}
    coverage = next(row["coverage_80"] for row in rows if row["interval_scale"] == scale)
    own = next(row["coverage_80"] for row in rows if row["interval_scale"] == 1.0)
    print(
        f"interval scale {scale:g}: its 80% interval covers {100 * coverage:.1f}% of the "
        f"validation targets, the members' own widths {100 * own:.1f}%"
    )
    return {"interval_scale": scale, "chosen_by": "80% coverage nearest 80%", "grid": rows}


def chosen_tail_ratio(
    args: argparse.Namespace,
    runs: list[tuple[TrainConfig, TrainResult]],
    config: EnsembleConfig,
    validation: SeriesSet,
    max_history: int,
) -> dict[str, Any]:
    """The tail ratio `fit` exports, how it was chosen and, for `auto`, each ratio's
    validation figures: as `chosen_interval_scale`, at the share and scale already chosen."""
    if args.tail_ratio != "auto":
        return {"tail_ratio": args.tail_ratio, "chosen_by": "given"}
    if args.validate_only:
        print("no 95% interval (--validate-only: score tail ratios with theta-grid)")
        return {"tail_ratio": 0.0, "chosen_by": "--validate-only: theta-grid scores ratios"}
    if not config.can_have_tails:
        print(f"no 95% interval: the members forecast quantiles {config.member_quantiles}")
        return {"tail_ratio": 0.0, "chosen_by": "members of other quantiles than 0.1 0.5 0.9"}
    # Built with tails, so that the grid scores them: each ratio of it is one >= 1.
    tailed = replace(config, tail_ratio=TAIL_GRID[0])
    rows = early_grid(runs, tailed, "tail_ratio", TAIL_GRID, validation, max_history)
    ratio = best_tail_ratio(rows)
    assert ratio is not None  # the members' 0.1 and 0.9 bound every row's 95% interval
    coverage = next(row["coverage_95"] for row in rows if row["tail_ratio"] == ratio)
    print(
        f"tail ratio {ratio:g}: its 95% interval covers {100 * coverage:.1f}% of the "
        "validation targets"
    )
    return {"tail_ratio": ratio, "chosen_by": "95% coverage nearest 95%", "grid": rows}


def run_fit(args: argparse.Namespace) -> None:
    series, min_history = load_series(args, args.min_history, validation=True)
    if args.origin:
        if not args.validate_only:
            raise ValueError(
                f"--origin {args.origin} needs --validate-only: a shipped model "
                "trains on every training point"
            )
        series = origin_split(series, args.origin, min_history)
    companions, companion_facts = companion_series(args)
    validation = validation_split(series, min_history)
    # Choosing settings, the validation targets play the test split's part: neither early
    # stopping nor a refit may see them, so training ends one horizon before them.
    training_part = validation.train if args.validate_only else series.train
    longest = max(len(s) for s in series.train)
    max_history = args.max_history or longest
    configs = member_configs(args, series, longest)
    name = args.name or series.name
    out = args.out / name
    rank = distributed.current()
    # No more at once than there are members, so the jobs and threads recorded are those run.
    jobs = min(args.jobs or default_jobs(len(configs), args.device, rank.world), len(configs))
    if rank.distributed and jobs > 1:
        raise ValueError(f"--jobs {jobs}: under torchrun the ranks share the work; leave it 1")
    if rank.is_main:
        print(
            f"{series.name}: {len(series.ids)} series, horizon {series.horizon}, "
            f"history {min_history}..{max_history}, {len(configs)} member(s) reading "
            f"{sorted({c.lookback or longest for c in configs})} points, {rank.world} "
            f"process(es) training {jobs} member(s) at a time, {threads_per_job(jobs)} "
            "thread(s) each"
        )
        if companion_facts:
            print(
                f"companions: {companion_facts['series']} series from "
                f"{' and '.join(COMPANION_SOURCES)} ({companion_facts['dropped_in_m3']} left "
                "out: they appear in M3)"
            )
    train_configs = member_train_configs(args, configs, series.season_length, min_history, longest)
    tasks = [
        MemberTask(
            training_part,
            config,
            train_config,
            f"member {i + 1}/{len(configs)}",
            companions,
            progress=not args.quiet,
            bar_position=i if jobs > 1 else 0,
        )
        for i, (config, train_config) in enumerate(zip(configs, train_configs, strict=True))
    ]
    results = train_members(tasks, jobs)
    members = [result.model for result in results]
    runs = list(zip(train_configs, results, strict=True))
    if rank.is_main:
        for i, result in enumerate(results):
            print(
                f"member {i + 1}: trained on {result.device} in {result.seconds:.0f} s; best "
                f"epoch {result.best_epoch} (validation loss {result.best_val_loss:.4f})"
            )
    if not rank.is_main:
        return  # every rank holds the same weights; rank 0 alone evaluates and writes
    ensemble_config = EnsembleConfig(
        members=configs,
        combine=args.combine,
        theta_season_length=series.season_length,
    )
    member_quantiles = list(ensemble_config.member_quantiles)
    dynamic_choice, share_rows = chosen_theta_dynamic(
        args, runs, ensemble_config, validation, max_history
    )
    ensemble_config = replace(
        ensemble_config,
        theta_dynamic_from=dynamic_choice["from"],
        theta_dynamic_full=dynamic_choice["full"],
    )
    theta_choice = chosen_theta_share(
        args, runs, ensemble_config, validation, max_history, share_rows
    )
    ensemble_config = replace(ensemble_config, theta_weight=theta_choice["theta_weight"])
    scale_choice = chosen_interval_scale(args, runs, ensemble_config, validation, max_history)
    ensemble_config = replace(ensemble_config, interval_scale=scale_choice["interval_scale"])
    tail_choice = chosen_tail_ratio(args, runs, ensemble_config, validation, max_history)
    ensemble_config = replace(ensemble_config, tail_ratio=tail_choice["tail_ratio"])
    quantiles = list(ensemble_config.quantiles)
    ensemble = ensemble_of(members, ensemble_config).eval()
    # Scored as the service runs it, so the CPU column is the scripted forward pass, as
    # `evaluate` measures it (export proves scripted and eager forecasts equal).
    served = torch.jit.script(ensemble)

    val_result, _ = scored(validation, served, max_history, quantiles, not args.no_peers)
    # Scored all the same: the peers' and baselines' rows are out of sample either way.
    val_result["model_in_sample"] = args.refit and not args.validate_only
    in_sample = ", in-sample for the refit model" if val_result["model_in_sample"] else ""
    print(f"validation split (each series' last horizon training points{in_sample}):")
    print(format_table(val_result))
    val_result["members"] = [
        scored(validation, member, max_history, member_quantiles, peers=False)[0]
        for member in members
    ]
    for i, member_result in enumerate(val_result["members"]):
        print(
            f"  member {i + 1} alone: sMAPE {member_result['smape']:.2f}, MASE "
            f"{member_result['mase']:.3f}, 80% coverage {100 * member_result['coverage_80']:.1f}"
        )
    if args.validate_only:
        evaluation: dict[str, Any] = {"test_split": "not scored (--validate-only)"}
        test_forecasts = None
    else:
        evaluation, test_forecasts = scored(
            series, served, max_history, quantiles, not args.no_peers
        )
        print("test split:")
        print(format_table(evaluation))

    def write_reports(folder: Path) -> None:
        write_eval_json(val_result, folder / "validation.json")
        plot_learning_curve(runs[0][1].history, folder / "learning_curve.png")
        if test_forecasts is not None:
            write_report(series, evaluation, test_forecasts, quantiles, folder)

    training = {
        "dataset": series.name,
        "n_series": len(series.ids),
        "companions": companion_facts or None,
        "members": [
            {
                **train_config.to_dict(),
                "device_used": result.device,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "best_val_loss": result.best_val_loss,
                "train_seconds": round(result.seconds, 1),
            }
            for train_config, result in runs
        ],
        "train_seconds": round(sum(result.seconds for _, result in runs), 1),
        "jobs": jobs,
        "threads": threads_per_job(jobs),
        "theta_dynamic": dynamic_choice,
        "theta_share": theta_choice,
        "interval_scale": scale_choice,
        "tail_ratio": tail_choice,
        "validation": {
            key: val_result[key]
            for key in ("smape", "mase", "coverage_80", "coverage_95", "peers", "baselines")
        },
    }
    facts = ModelFacts(
        name=name,
        season_length=series.season_length,
        frequency=series.frequency,
        min_history=min_history,
        max_history=max_history,
        training=training,
        evaluation=evaluation,
    )
    metadata = export_model(
        ensemble,
        ensemble_config,
        out,
        facts,
        register=not args.no_register,
        write_reports=write_reports,
    )
    print(f"exported {out / 'model.ts'} version {metadata['version']}")


def exported_series(
    args: argparse.Namespace, validation: bool = False
) -> tuple[Any, dict[str, Any], SeriesSet]:
    """The exported model, its metadata and the data set it is to be scored on (with
    `validation`, CSV series must also hold the validation horizon)."""
    scripted, metadata = load_exported(args.model)
    args.horizon = args.horizon or metadata["horizon"]
    args.season_length = args.season_length or metadata["season_length"]
    series, _ = load_series(args, metadata["min_history"], validation=validation)
    if series.horizon != metadata["horizon"]:
        raise DataError(
            f"{args.model / METADATA_FILE}: model horizon {metadata['horizon']} "
            f"differs from the data's {series.horizon}"
        )
    return scripted, metadata, series


def run_evaluate(args: argparse.Namespace) -> None:
    scripted, metadata, series = exported_series(args)
    quantiles = metadata["quantiles"]
    result, forecasts = scored(
        series, scripted, metadata["max_history"], quantiles, not args.no_peers
    )
    print(format_table(result))
    write_report(series, result, forecasts, quantiles, args.out or args.model)


# Report files of the training run, carried over to a re-exported model's folder.
TRAINING_REPORTS = ("validation.json", "learning_curve.png")


def run_reexport(args: argparse.Namespace) -> None:
    exported, metadata, series = exported_series(args)
    old_quantiles = metadata["quantiles"]
    if args.tail_ratio is not None:
        metadata = with_tails(metadata, args.tail_ratio)
    model = rebuilt(exported, metadata)
    max_history = metadata["max_history"]
    quantiles = output_quantiles(metadata["model_config"])
    columns = [quantiles.index(q) for q in old_quantiles]
    difference = check_same_forecasts(exported, model, series.train, max_history, columns)
    print(
        f"{args.model}: rebuilt by this code; its forecasts of {len(series)} histories differ "
        f"from the exported file's by at most {difference:.2g} (relative)"
    )
    evaluation, forecasts = scored(
        series, torch.jit.script(model), max_history, quantiles, not args.no_peers
    )
    print(format_table(evaluation))

    def write_reports(folder: Path) -> None:
        for name in TRAINING_REPORTS:
            if (args.model / name).exists():
                shutil.copy2(args.model / name, folder / name)
        write_report(series, evaluation, forecasts, quantiles, folder)

    written = export_model(
        model,
        config_from_dict(metadata["model_config"]),
        args.out or args.model,
        reexport_facts(metadata, evaluation, difference),
        register=not args.no_register,
        write_reports=write_reports,
    )
    print(f"exported {(args.out or args.model) / 'model.ts'} version {written['version']}")


def run_theta_grid(args: argparse.Namespace) -> None:
    scripted, metadata, series = exported_series(args, validation=True)
    min_history = metadata["min_history"]
    if args.origin:
        series = origin_split(series, args.origin, min_history)
    validation = validation_split(series, min_history)
    # Theta reads the data's season whatever share, if any, the model was exported with.
    config = {**metadata["model_config"], "theta_season_length": metadata["season_length"]}
    if args.theta_dynamic is not None:
        config["theta_dynamic_from"], config["theta_dynamic_full"] = args.theta_dynamic
    if args.interval_scale is not None:
        config["interval_scale"] = args.interval_scale
    if args.tail_ratio is not None:
        config["tail_ratio"] = args.tail_ratio
    model = rebuilt(scripted, {**metadata, "model_config": config})
    if not isinstance(model, EnsembleForecaster):
        raise ValueError(f"{args.model}: a single forecaster has no Theta share to score")
    quantiles = output_quantiles(config)
    rows = score_shares(model, validation, args.weights, metadata["max_history"], quantiles)
    for row in rows:
        coverages = ", ".join(
            f"{level}% coverage {100 * row[coverage_key(level)]:.1f}"
            for level in INTERVALS
            if row[coverage_key(level)] is not None
        )
        print(
            f"{validation.name} origin {args.origin}, Theta share {row['theta_weight']:.2f}: "
            f"sMAPE {row['smape']:.2f}, MASE {row['mase']:.4f}, {coverages}"
        )
    if args.out:
        grid = {"model": metadata["name"], "origin": args.origin, "rows": rows}
        write_eval_json(grid, args.out)


def run_backtest(args: argparse.Namespace) -> None:
    if args.windows < 1:
        raise ValueError(f"--windows must be >= 1, got {args.windows}")
    scripted, metadata, series = exported_series(args)
    windows = []
    for k in range(args.windows):
        window = origin_split(series, k, metadata["min_history"])
        result, _ = scored(
            window, scripted, metadata["max_history"], metadata["quantiles"], not args.no_peers
        )
        print(f"window {k} (origin {k} horizon(s) before the test split):")
        print(format_table(result))
        windows.append({"window": k, **result})
    summary = backtest_summary(windows)
    print(format_backtest(summary))
    if args.out:
        write_eval_json({"model": metadata["name"], "windows": windows, "mean": summary}, args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "fit": run_fit,
            "evaluate": run_evaluate,
            "backtest": run_backtest,
            "reexport": run_reexport,
            "theta-grid": run_theta_grid,
            "csv": run_csv,
            "readme-table": run_readme_table,
        }
        commands[args.command](args)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ExportCheckError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0

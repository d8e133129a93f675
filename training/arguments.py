"""The command line of `python -m training`: its defaults (chosen on the M3 validation
splits), its value types and the parser of every command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.choices import DYNAMIC_CHOICES
from training.data import BUNDLED_SETS, COMPANION_SOURCES, DATASETS
from training.model import COMBINE_RULES, ModelConfig, is_tail_ratio
from training.theta import check_dynamic_span
from training.train import LOSS_SCALES, TrainConfig

DEFAULT_OUT = Path("models")
# Defaults chosen on the M3 validation splits (docs/EXPERIMENTS.md).
DEFAULT_MEMBERS = 4
DEFAULT_HIDDEN = 32
DEFAULT_LAYERS = 2
DEFAULT_LOSS_SCALES = ("level",)
DEFAULT_SEASONAL_BASE = True
DEFAULT_SEASONAL_CYCLES = 1
DEFAULT_TREND_BASE = False
DEFAULT_THETA_BASE = False
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
        "--theta-base",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_THETA_BASE,
        help="each member starts from a learned per-step blend of its other bases and the "
        "Theta method's forecast",
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
    fit_parser.add_argument(
        "--aggregated-companions",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --dataset m3-quarterly or m3-yearly: also train on the monthly (and, for "
        "yearly, quarterly) series of M3's training parts, M1 and Tourism, averaged to the "
        "set's frequency, except any that nearly copy an M3 series (default: off)",
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

"""`python -m training fit|evaluate`: train, evaluate and export forecasters."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from training import distributed
from training.data import DATASETS, DataError, SeriesSet, load_csv, load_m3
from training.export import (
    METADATA_FILE,
    ExportCheckError,
    ModelFacts,
    export_model,
    load_exported,
)
from training.model import ModelConfig
from training.report import (
    evaluate,
    format_table,
    plot_learning_curve,
    plot_samples,
    write_eval_json,
)
from training.train import TrainConfig, fit, forecast

DEFAULT_OUT = Path("models")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    fit_parser = commands.add_parser(
        "fit",
        help="train, evaluate on the test split, export to models/<name>/",
        description="Train a stacked LSTM, evaluate it against baselines, export TorchScript.",
    )
    add_data_arguments(fit_parser)
    fit_parser.add_argument("--name", help="model name (default: the dataset or CSV file stem)")
    fit_parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="models folder")
    fit_parser.add_argument(
        "--max-history", type=int, help="longest history used (default: longest training part)"
    )
    fit_parser.add_argument("--layers", type=int, default=ModelConfig.layers)
    fit_parser.add_argument("--hidden", type=int, default=ModelConfig.hidden)
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
    fit_parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    fit_parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    fit_parser.add_argument(
        "--no-register", action="store_true", help="skip the BentoML model store"
    )
    fit_parser.add_argument("--quiet", action="store_true", help="no progress bar")

    eval_parser = commands.add_parser(
        "evaluate",
        help="evaluate an exported model on a test split",
        description="Evaluate an exported model (model.ts + metadata.json) against baselines.",
    )
    eval_parser.add_argument("--model", type=Path, required=True, help="models/<name> folder")
    add_data_arguments(eval_parser)
    eval_parser.add_argument(
        "--out", type=Path, help="where eval.json and PNGs go (default: the model folder)"
    )
    return parser


def load_series(
    args: argparse.Namespace, min_history: int | None, validation: bool
) -> tuple[SeriesSet, int]:
    """The chosen data set and the minimum history length in force.

    A CSV series must hold min_history points, then (when training) a training and a
    validation horizon, then the test horizon; shorter ones are an error naming the series.
    """
    if args.dataset:
        series = load_m3(args.dataset)
        return series, min_history or max(2, series.season_length)
    if args.horizon is None or args.season_length is None:
        raise DataError(f"{args.csv}: --csv needs --horizon and --season-length")
    min_history = min_history or max(2, args.season_length)
    # Training needs one example (min_history + horizon) before the validation horizon.
    min_train = min_history + (2 * args.horizon if validation else 0)
    return load_csv(args.csv, args.horizon, args.season_length, min_train), min_history


def report(series: SeriesSet, forecasts: Any, quantiles: list[float], out: Path) -> dict[str, Any]:
    result = evaluate(series, forecasts, quantiles)
    print(format_table(result))
    out.mkdir(parents=True, exist_ok=True)
    write_eval_json(result, out / "eval.json")
    plot_samples(series, forecasts, quantiles, out / "forecasts.png")
    return result


def run_fit(args: argparse.Namespace) -> None:
    series, min_history = load_series(args, args.min_history, validation=True)
    max_history = args.max_history or max(len(s) for s in series.train)
    model_config = ModelConfig(
        horizon=series.horizon,
        quantiles=tuple(args.quantiles),
        hidden=args.hidden,
        layers=args.layers,
        dropout=args.dropout,
        bidirectional=args.bidirectional,
        learned_init=args.learned_init,
        scale_window=max(series.season_length, 4),
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        clip=args.clip,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        min_history=min_history,
        max_history=max_history,
    )
    name = args.name or series.name
    out = args.out / name
    rank = distributed.current()
    if rank.is_main:
        print(
            f"{series.name}: {len(series.ids)} series, horizon {series.horizon}, "
            f"history {min_history}..{max_history}, {rank.world} process(es), "
            f"{torch.get_num_threads()} threads each"
        )
    result = fit(series.train, model_config, train_config, progress=not args.quiet)
    if not rank.is_main:
        return  # every rank holds the same weights; rank 0 alone evaluates and writes
    print(
        f"trained on {result.device} in {result.seconds:.0f} s; "
        f"best epoch {result.best_epoch} (validation loss {result.best_val_loss:.4f})"
    )
    forecasts = forecast(result.model, series.train, max_history)  # (N, H, Q)
    evaluation = report(series, forecasts, list(model_config.quantiles), out)
    plot_learning_curve(result.history, out / "learning_curve.png")
    training = {
        "dataset": series.name,
        "n_series": len(series.ids),
        **train_config.to_dict(),
        "device_used": result.device,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_val_loss": result.best_val_loss,
        "train_seconds": round(result.seconds, 1),
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
    metadata = export_model(result.model, model_config, out, facts, register=not args.no_register)
    print(f"exported {out / 'model.ts'} version {metadata['version']}")


def run_evaluate(args: argparse.Namespace) -> None:
    scripted, metadata = load_exported(args.model)
    args.horizon = args.horizon or metadata["horizon"]
    args.season_length = args.season_length or metadata["season_length"]
    series, _ = load_series(args, metadata["min_history"], validation=False)
    if series.horizon != metadata["horizon"]:
        raise DataError(
            f"{args.model / METADATA_FILE}: model horizon {metadata['horizon']} "
            f"differs from the data's {series.horizon}"
        )
    forecasts = forecast(scripted, series.train, metadata["max_history"])  # (N, H, Q)
    report(series, forecasts, metadata["quantiles"], args.out or args.model)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fit":
            run_fit(args)
        else:
            run_evaluate(args)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ExportCheckError, FileNotFoundError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0

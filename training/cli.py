"""`python -m training fit|evaluate|backtest|reexport|theta-grid|csv|readme-table`: what
each command does. Its arguments are `training.arguments`; what `fit` chooses on the
validation split, `training.choices`."""

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
from training.arguments import DEFAULT_COMPANIONS, build_parser, default_lookback
from training.choices import (
    chosen_interval_scale,
    chosen_tail_ratio,
    chosen_theta_dynamic,
    chosen_theta_share,
)
from training.data import (
    COMPANION_SOURCES,
    DATASETS,
    DataError,
    SeriesSet,
    load_bundled,
    load_companions,
    load_csv,
    load_m3,
)
from training.export import METADATA_FILE, ExportCheckError, ModelFacts, export_model, load_exported
from training.members import MemberTask, default_jobs, threads_per_job, train_members
from training.metrics import INTERVALS, coverage_key
from training.model import (
    EnsembleConfig,
    EnsembleForecaster,
    ModelConfig,
    config_from_dict,
    ensemble_of,
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
from training.shares import score_shares, setting_set, share_set
from training.splits import origin_split, validation_split
from training.train import FORECAST_BATCH, TrainConfig, forecast


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
            theta_base=args.theta_base,
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
    """The extra training series `--companions` and `--aggregated-companions` ask for,
    and what to record about them."""
    if args.csv is not None:
        for flag in ("companions", "aggregated_companions"):
            if getattr(args, flag):
                option = "--" + flag.replace("_", "-")
                raise DataError(f"{args.csv}: {option} needs --dataset (M3 only)")
        return [], {}
    same_frequency = DEFAULT_COMPANIONS if args.companions is None else args.companions
    if not (same_frequency or args.aggregated_companions):
        return [], {}
    kept, dropped = load_companions(args.dataset, args.aggregated_companions, same_frequency)
    facts = {
        "sources": list(COMPANION_SOURCES),
        "series": len(kept),
        "dropped_in_m3": dropped,
        "aggregated": bool(args.aggregated_companions),
    }
    return kept, facts


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
            averaged = " and finer series averaged" if companion_facts["aggregated"] else ""
            print(
                f"companions: {companion_facts['series']} series from "
                f"{' and '.join(COMPANION_SOURCES)}{averaged} "
                f"({companion_facts['dropped_in_m3']} left out: they appear in M3)"
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

"""What `fit` chooses itself on the validation split, after training and before the
export: the dynamic Theta ramp, the Theta share, the interval scale and the tail ratio,
each scored with the members as early stopping left them (their refit has seen the
validation targets)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from training.data import SeriesSet
from training.model import EnsembleConfig, ensemble_of
from training.shares import (
    SCALE_GRID,
    SHARE_GRID,
    TAIL_GRID,
    best_interval_scale,
    best_share,
    best_tail_ratio,
    score_grid,
)
from training.train import TrainConfig, TrainResult

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

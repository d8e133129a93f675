"""Evaluation of a model's quantile forecasts against the baselines: figures, table, plots.

`evaluate` returns the `evaluation` object of `metadata.json` (docs/ARTIFACT.md): the
model's `smape`, `mase`, `coverage_80`, `coverage_95` and `cpu_ms_per_series` at the
top level, each statistical peer's (AutoETS, AutoTheta) figures under `peers`, each
baseline's `smape` and `mase` under `baselines`, and what was evaluated (data set,
number of series, horizon). Every method is scored by the same code on the same split.

Plots draw on a bare `matplotlib.figure.Figure` with the Agg canvas, never through
pyplot, so they need no display and leave no global figure state behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training import metrics
from training.baselines import forecast_baseline
from training.data import SeriesSet
from training.metrics import INTERVALS, coverage_key
from training.peers import PeerForecasts

REPORT_BASELINES = ("seasonal_naive", "naive2")
Bounds = tuple[np.ndarray, np.ndarray]  # (N, H) lower and upper bounds of an interval


def quantile_index(quantiles: Sequence[float], q: float) -> int | None:
    """Position of quantile q in the list (float-tolerant), or None when absent."""
    for i, value in enumerate(quantiles):
        if math.isclose(value, q, abs_tol=1e-9):
            return i
    return None


def _check_forecasts(
    series_set: SeriesSet, forecasts: np.ndarray, quantiles: Sequence[float]
) -> tuple[np.ndarray, int]:
    """Forecasts as a float64 array of the right shape, and the index of the median."""
    # Accepts anything array-like (a CPU torch tensor too).
    forecasts = np.asarray(forecasts, dtype=np.float64)
    expected = (len(series_set), series_set.horizon, len(quantiles))
    if forecasts.shape != expected:
        raise ValueError(f"forecasts must have shape [N, H, Q] = {expected}, got {forecasts.shape}")
    median = quantile_index(quantiles, 0.5)
    if median is None:
        raise ValueError(f"quantiles must include 0.5 (the point forecast), got {list(quantiles)}")
    return forecasts, median


def _figures(
    series_set: SeriesSet, point: np.ndarray, intervals: Mapping[int, Bounds] | None = None
) -> dict[str, float | None]:
    """sMAPE and MASE of a point forecast [N, H]; given a method's intervals (level ->
    bounds), the coverage of each level of INTERVALS, None for a level it lacks."""
    figures: dict[str, float | None] = {
        "smape": metrics.smape(series_set.test, point),
        "mase": metrics.mase(series_set.test, point, series_set.train, series_set.season_length),
    }
    if intervals is not None:
        for level in INTERVALS:
            bounds = intervals.get(level)
            figures[coverage_key(level)] = (
                None if bounds is None else metrics.coverage(series_set.test, *bounds)
            )
    return figures


def evaluate(
    series_set: SeriesSet,
    forecasts: np.ndarray,
    quantiles: Sequence[float],
    peers: Sequence[PeerForecasts] = (),
    cpu_ms_per_series: float | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """sMAPE, MASE and interval coverage of the model and its peers, sMAPE and MASE of
    baselines.

    forecasts: [N, H, Q] in the order of `series_set` and of `quantiles`; each peer's
    forecasts are in the same order. `coverage_80` is None unless both 0.1 and 0.9 are
    among the quantiles, `coverage_95` unless 0.025 and 0.975 are. `parts` are the
    forecasts the model combines, each scored alone under `parts`: [N, H, Q] like the
    model's, or [N, H] points.
    """
    model = _quantile_figures(series_set, forecasts, quantiles)
    result = {
        "dataset": series_set.name,
        "frequency": series_set.frequency,
        "n_series": len(series_set),
        "horizon": series_set.horizon,
        "season_length": series_set.season_length,
        "quantiles": [float(q) for q in quantiles],
        **model,
        "cpu_ms_per_series": cpu_ms_per_series,
        "peers": {
            peer.name: {
                **_figures(series_set, peer.point, peer.intervals),
                "cpu_ms_per_series": peer.cpu_ms_per_series,
                "naive_fallbacks": peer.fallbacks,
            }
            for peer in peers
        },
        "baselines": {
            name: _figures(series_set, forecast_baseline(name, series_set))
            for name in REPORT_BASELINES
        },
    }
    if parts:
        result["parts"] = {
            name: _quantile_figures(series_set, part, quantiles)
            if np.ndim(part) == 3
            else _figures(series_set, np.asarray(part, dtype=np.float64))
            for name, part in parts.items()
        }
    return result


def _quantile_figures(
    series_set: SeriesSet, forecasts: np.ndarray, quantiles: Sequence[float]
) -> dict[str, float | None]:
    """The figures of [N, H, Q] forecasts: their median's sMAPE and MASE, the coverage of
    each interval their quantiles bound."""
    forecasts, median = _check_forecasts(series_set, forecasts, quantiles)
    return _figures(series_set, forecasts[:, :, median], quantile_intervals(forecasts, quantiles))


def quantile_intervals(forecasts: np.ndarray, quantiles: Sequence[float]) -> dict[int, Bounds]:
    """The bounds of each level of INTERVALS whose two quantiles are among `quantiles`."""
    intervals = {}
    for level, pair in INTERVALS.items():
        lower, upper = (quantile_index(quantiles, q) for q in pair)
        if lower is not None and upper is not None:
            intervals[level] = (forecasts[:, :, lower], forecasts[:, :, upper])
    return intervals


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


def format_table(result: dict[str, Any]) -> str:
    """A plain, aligned text table: one row per method (model, peers, baselines), columns
    sMAPE, MASE, the coverage of each interval level (80%, and 95% where any method has
    it) and CPU milliseconds per series."""
    rows = [("model", result)]
    rows += [(f"  {name} alone", f) for name, f in result.get("parts", {}).items()]
    rows += [(name, f) for name, f in result.get("peers", {}).items()]
    rows += [(name, f) for name, f in result["baselines"].items()]
    levels = shown_levels([f for _, f in rows])
    coverages = (f"{level}% coverage" for level in levels)
    header = ("method", "sMAPE", "MASE", *coverages, "CPU ms/series")
    cells = [header] + [
        (
            name,
            _cell(f["smape"], ".2f"),
            _cell(f["mase"], ".3f"),
            *coverage_cells(f, levels),
            _cell(f.get("cpu_ms_per_series"), ".2f"),
        )
        for name, f in rows
    ]
    title = f"{result['dataset']}: {result['n_series']} series, horizon {result['horizon']}"
    return _render(title, cells)


def shown_levels(figures: Sequence[Mapping[str, Any]]) -> list[int]:
    """The interval levels a table shows: 80 always, any other that some row scores."""
    return [
        level
        for level in INTERVALS
        if level == 80 or any(f.get(coverage_key(level)) is not None for f in figures)
    ]


def coverage_cells(figures: Mapping[str, Any], levels: Sequence[int]) -> list[str]:
    """Each level's coverage in percent, "-" where the method has none."""
    values = [figures.get(coverage_key(level)) for level in levels]
    return [_cell(None if value is None else 100 * value, ".1f") for value in values]


def _render(title: str, cells: Sequence[tuple[str, ...]]) -> str:
    """A title line, then rows with the first column left-aligned and the rest right-aligned."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        )
        for row in cells
    ]
    return "\n".join([title, *lines])


def methods(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every method's figures in one evaluation, by name: model, peers, baselines."""
    return {"model": result, **result.get("peers", {}), **result["baselines"]}


def backtest_summary(windows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each method's sMAPE, MASE and interval coverage averaged over the backtest windows."""
    summary: dict[str, dict[str, float | None]] = {}
    keys = ("smape", "mase", *(coverage_key(level) for level in INTERVALS))
    for name in methods(windows[0]):
        summary[name] = {}
        for key in keys:
            values = [methods(w)[name].get(key) for w in windows]
            known = [float(v) for v in values if v is not None]
            summary[name][key] = float(np.mean(known)) if len(known) == len(values) else None
    return summary


def format_backtest(summary: dict[str, dict[str, float | None]]) -> str:
    """The mean over windows, one row per method."""
    levels = shown_levels(list(summary.values()))
    header = ("method", "mean sMAPE", "mean MASE", *(f"mean {level}% coverage" for level in levels))
    cells = [header] + [
        (name, _cell(f["smape"], ".2f"), _cell(f["mase"], ".3f"), *coverage_cells(f, levels))
        for name, f in summary.items()
    ]
    return _render("all windows, mean:", cells)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no literal for them."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_eval_json(result: dict[str, Any], path: Path) -> None:
    """Write the result as indented, strictly valid JSON (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")


def _save(figure: Figure, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=100)


def plot_samples(
    series_set: SeriesSet,
    forecasts: np.ndarray,
    quantiles: Sequence[float],
    path: Path,
    n: int = 6,
    seed: int = 0,
) -> None:
    """PNG grid of n randomly chosen series: history tail, actual, median and the band of
    each interval the quantiles bound (80%, 95%)."""
    forecasts, median = _check_forecasts(series_set, forecasts, quantiles)
    intervals = quantile_intervals(forecasts, quantiles)
    # Wider intervals are drawn fainter, under the narrower ones.
    bands = sorted(intervals, reverse=True)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(series_set), size=min(n, len(series_set)), replace=False))
    cols = min(3, max(len(chosen), 1))
    rows = max(1, -(-len(chosen) // cols))
    figure = Figure(figsize=(4.5 * cols, 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    h = series_set.horizon
    # Three horizons of history give context without squashing the forecast.
    tail = 3 * h
    steps = np.arange(1, h + 1)
    for ax, i in zip(axes, chosen, strict=False):
        history = series_set.train[i][-tail:]
        ax.plot(np.arange(-history.shape[0] + 1, 1), history, color="black", lw=1, label="history")
        ax.plot(steps, series_set.test[i], color="black", lw=1, ls="--", label="actual")
        for level in bands:
            lower, upper = intervals[level]
            ax.fill_between(
                steps,
                lower[i],
                upper[i],
                color="tab:blue",
                alpha=0.25 if level == 80 else 0.12,
                label=f"{level}% interval",
            )
        ax.plot(steps, forecasts[i, :, median], color="tab:blue", lw=1.5, label="median")
        ax.set_title(series_set.ids[i], fontsize=9)
        ax.axvline(0.5, color="grey", lw=0.5)
    for ax in axes[len(chosen) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{series_set.name}: sample forecasts (step 0 = last observed point)")
    _save(figure, path)


def plot_learning_curve(history: list[dict[str, Any]], path: Path) -> None:
    """PNG of train and validation loss per epoch; epochs without a val_loss are skipped."""
    if not history:
        raise ValueError("plot_learning_curve needs at least one epoch of history")
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(e["epoch"], e[key]) for e in history if e.get(key) is not None]
        if points:
            epochs, losses = zip(*points, strict=True)
            ax.plot(epochs, losses, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("Learning curve")
    _save(figure, path)

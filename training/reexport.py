"""Re-export: an exported model rebuilt by this code around its own weights, proved to
forecast as its file does, and exported again, without retraining.

A change to the module's code (a faster forward pass, a fix that leaves forecasts as
they are) reaches the shipped models this way instead of through a retraining of every
set. The rebuilt module must forecast every history it is checked on within export's
tolerance of the file it replaces: a change that moves forecasts is a new model, and
needs `fit`. The training record is kept, with the version and code it was trained
as; the evaluation is measured anew, on the new file, as `evaluate` measures it.

One change of forecasts is allowed, as it leaves every one the file made as it was: a
95% interval added to a model without one (`with_tails`), its bounds computed from the
80% interval the model already forecasts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from training.export import (
    RELATIVE_TOLERANCE,
    ExportCheckError,
    ModelFacts,
    history_scale,
    relative_error,
)
from training.model import config_from_dict, rebuild
from training.train import forecast
from training.windows import pad_right


def rebuilt(scripted: Any, metadata: dict[str, Any]) -> nn.Module:
    """The eager module this code builds from the metadata's `model_config` (in eval mode),
    holding the exported file's weights; ValueError when they do not fit it (a changed
    layout). `theta-grid` passes a `model_config` with other combination settings."""
    model = rebuild(metadata["model_config"])
    try:
        model.load_state_dict(scripted.state_dict())
    except RuntimeError as error:
        raise ValueError(
            f"model {metadata['name']} version {metadata['version']}: its weights do not fit "
            f"the module this code builds from its model_config, so this code cannot run it "
            f"(retrain it with fit): {error}"
        ) from error
    return model.eval()


def with_tails(metadata: dict[str, Any], ratio: float) -> dict[str, Any]:
    """The metadata of the same ensemble with a 95% interval of this tail ratio
    (`EnsembleConfig.tail_ratio`), and the ratio in its training record; ValueError for a
    single forecaster or a model whose 95% interval is another ratio's (fit changes it)."""
    config = metadata["model_config"]
    if "members" not in config:
        raise ValueError(f"model {metadata['name']}: a single forecaster has no tail ratio")
    own = config.get("tail_ratio", 0.0)
    if own not in (0.0, ratio):
        raise ValueError(
            f"model {metadata['name']} has a 95% interval of tail ratio {own:g} already; "
            f"another ratio changes its forecasts (retrain it with fit --tail-ratio {ratio:g})"
        )
    training = {**metadata["training"], "tail_ratio": {"tail_ratio": ratio, "chosen_by": "given"}}
    return {**metadata, "model_config": {**config, "tail_ratio": ratio}, "training": training}


def output_quantiles(model_config: dict[str, Any]) -> list[float]:
    """The quantiles forecast by the module that metadata's `model_config` describes."""
    return list(config_from_dict(model_config).quantiles)


def check_same_forecasts(
    exported: Any,
    model: nn.Module,
    histories: list[np.ndarray],
    max_history: int,
    columns: list[int] | None = None,
) -> float:
    """The largest relative difference between the two modules' forecasts of `histories`
    (export.relative_error, each series' scale its mean |value|); ExportCheckError above
    export's tolerance. `columns`: those of the rebuilt module's quantiles that the
    exported file forecasts, in its order (default: all)."""
    old = torch.from_numpy(forecast(exported, histories, max_history))  # (N, H, Q)
    new = torch.from_numpy(forecast(model, histories, max_history))  # (N, H, Q')
    if columns is not None:
        new = new[:, :, columns]  # (N, H, Q)
    values, lengths = pad_right([h[-max_history:] for h in histories])  # (N, T), (N,)
    scale = history_scale(torch.from_numpy(values), torch.from_numpy(lengths))  # (N,)
    error = relative_error(new, old, scale.to(torch.float64))
    if not error <= RELATIVE_TOLERANCE:
        raise ExportCheckError(
            f"the rebuilt module forecasts the data set differently from the exported file: "
            f"max relative difference {error:.3g} > {RELATIVE_TOLERANCE}; retrain with fit"
        )
    return error


def reexport_facts(
    metadata: dict[str, Any], evaluation: dict[str, Any], forecast_difference: float
) -> ModelFacts:
    """What the new export says of itself: the old training record, where it was first
    trained (kept through later re-exports), and the new evaluation."""
    trained_as = metadata["training"].get("trained_as") or {
        key: metadata[key] for key in ("version", "source_commit", "torch_version")
    }
    training = {
        **metadata["training"],
        "trained_as": trained_as,
        "reexport_check": {
            "from_version": metadata["version"],
            "max_relative_difference": forecast_difference,
        },
    }
    return ModelFacts(
        name=metadata["name"],
        season_length=metadata["season_length"],
        frequency=metadata["frequency"],
        min_history=metadata["min_history"],
        max_history=metadata["max_history"],
        training=training,
        evaluation=evaluation,
    )

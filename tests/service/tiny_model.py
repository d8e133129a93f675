"""A tiny scripted model and its metadata.json, made the way docs/ARTIFACT.md describes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from contract.metadata import ModelMetadata, write_metadata
from training.model import ModelConfig, StackedLSTMForecaster

HORIZON = 6
QUANTILES = (0.1, 0.5, 0.9)
MIN_HISTORY = 4
MAX_HISTORY = 40
NAME = "tiny"
VERSION = "20260101-0000-test0001"


def write_tiny_artifact(
    directory: Path, seed: int = 0, name: str = NAME, frequency: str = "monthly"
) -> Path:
    """Script a small StackedLSTMForecaster (fixed seed) into `directory`; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ModelConfig(horizon=HORIZON, quantiles=QUANTILES, hidden=8, layers=2, dropout=0.0)
    module = StackedLSTMForecaster(config).eval()
    model_path = directory / "model.ts"
    torch.jit.script(module).save(str(model_path))
    metadata = ModelMetadata(
        schema_version=1,
        name=name,
        version=VERSION,
        created="2026-01-01T00:00:00Z",
        horizon=HORIZON,
        quantiles=QUANTILES,
        point_quantile_index=1,
        season_length=12,
        frequency=frequency,
        min_history=MIN_HISTORY,
        max_history=MAX_HISTORY,
        model_config=config.to_dict(),
        training={"dataset": "none", "seed": seed},
        evaluation={"smape": 99.0, "mase": 9.0, "coverage_80": 0.5},
        torch_version=torch.__version__,
        source_commit="unknown",
        model_file="model.ts",
        model_sha256=hashlib.sha256(model_path.read_bytes()).hexdigest(),
    )
    write_metadata(metadata, directory / "metadata.json")
    return directory

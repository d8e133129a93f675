"""A stand-in artifact (untrained weights, the real architecture) for smoke runs and tests.

It follows docs/ARTIFACT.md exactly, so the service loads it like a trained model; its
forecasts are meaningless but its cost per series is the real model's.

    python -m bench.standin /tmp/standin     # writes model.ts + metadata.json
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import torch

from contract.metadata import ModelMetadata, write_metadata
from training.model import ModelConfig, StackedLSTMForecaster

HORIZON = 18
QUANTILES = (0.1, 0.5, 0.9)


def write_standin(
    directory: Path, hidden: int = 64, layers: int = 2, name: str = "standin", seed: int = 0
) -> Path:
    """Script a freshly initialised forecaster into `directory`; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ModelConfig(horizon=HORIZON, quantiles=QUANTILES, hidden=hidden, layers=layers)
    scripted = torch.jit.script(StackedLSTMForecaster(config).eval())
    model_path = directory / "model.ts"
    torch.jit.save(scripted, str(model_path))
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    now = datetime.now(UTC)
    metadata = ModelMetadata(
        schema_version=1,
        name=name,
        version=f"{now:%Y%m%d-%H%M}-{digest[:8]}",
        created=now.isoformat(timespec="seconds"),
        horizon=HORIZON,
        quantiles=QUANTILES,
        point_quantile_index=QUANTILES.index(0.5),
        season_length=12,
        frequency="monthly",
        min_history=12,
        max_history=126,
        model_config=config.to_dict(),
        training={"note": "stand-in: untrained weights, for load tests only"},
        evaluation={},
        torch_version=torch.__version__,
        source_commit="unknown",
        model_file="model.ts",
        model_sha256=digest,
    )
    write_metadata(metadata, directory / "metadata.json")
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    print(write_standin(args.directory, args.hidden, args.layers))


if __name__ == "__main__":
    main()

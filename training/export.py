"""Export: script the model, prove it exact, write `models/<name>/` and register it with BentoML.

The whole artifact (model.ts, metadata.json, reports) is built in a hidden folder beside
`models/<name>/`; the checks run on the saved file as `torch.jit.load` reads it back,
and only then is the folder swapped in. A failed or interrupted export leaves the
previous model whole. See docs/ARTIFACT.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

# METADATA_FILE is re-exported: training/cli.py names the file in its messages.
from contract.metadata import (
    METADATA_FILE as METADATA_FILE,
)
from contract.metadata import (
    MODEL_FILE,
    SCHEMA_VERSION,
    ModelMetadata,
    read_metadata,
    write_metadata,
)
from training.model import EnsembleConfig, ModelConfig

RELATIVE_TOLERANCE = 1e-5


class ExportCheckError(RuntimeError):
    """The scripted model is not exact: it differs from the eager one or depends on its batch."""


def history_scale(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean |value| of each row's observed points, (B,); 1 for an all-zero history."""
    observed = torch.arange(values.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    scale = (values.abs() * observed).sum(dim=1) / lengths  # (B,)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def relative_error(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    """Largest |a - b| / max(|b|, the series' scale) over (B, H, Q) forecasts.

    Relative to the series' own magnitude as well as to the value: float32 rounds a
    forecast near zero of a series in the thousands at the series' scale, not its own.
    """
    floor = scale.view(-1, 1, 1)  # (B, 1, 1)
    return float(((a - b).abs() / torch.maximum(b.abs(), floor)).max())


def random_batch(
    count: int, min_length: int, max_length: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive random-walk histories of random lengths, right-padded with junk (not zeros)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, max_length + 1, (count,), generator=gen)  # (B,)
    steps = torch.randn(count, max_length, generator=gen)  # (B, T)
    values = 100.0 + 5.0 * steps.cumsum(dim=1)  # (B, T)
    padding = torch.arange(max_length).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
    # Junk in the padding: a model that reads past a series' length fails the checks.
    values = values.masked_fill(padding, 1e4)
    return values, lengths


def check_exact(
    eager: nn.Module,
    scripted: torch.jit.ScriptModule,
    min_length: int,
    max_length: int,
    count: int = 24,
    seed: int = 0,
) -> dict[str, float]:
    """(a) scripted == eager on a ragged batch; (b) each series alone == inside a shuffled batch.

    Raises ExportCheckError when either differs by more than RELATIVE_TOLERANCE.
    """
    eager.eval()
    values, lengths = random_batch(count, min_length, max_length, seed)
    with torch.inference_mode():
        batched_eager = eager(values, lengths)  # (B, H, Q)
        batched_script = scripted(values, lengths)  # (B, H, Q)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + 1))
        shuffled = scripted(values[order], lengths[order])[torch.argsort(order)]  # (B, H, Q)
        alone = torch.cat(
            [scripted(values[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(count)]
        )  # (B, H, Q)
    scale = history_scale(values, lengths)  # (B,)
    figures = {
        "scripted_vs_eager": relative_error(batched_script, batched_eager, scale),
        "alone_vs_batched": relative_error(batched_script, alone, scale),
        "alone_vs_shuffled": relative_error(shuffled, alone, scale),
    }
    for check, error in figures.items():
        if not error <= RELATIVE_TOLERANCE:
            raise ExportCheckError(
                f"export check {check} failed: "
                f"max relative error {error:.3g} > {RELATIVE_TOLERANCE}"
            )
    return figures


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
    )
    return done.stdout.strip()


def source_commit() -> str:
    """HEAD of the code that trained the model, `-dirty` when training/ had local changes."""
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@dataclass(frozen=True)
class ModelFacts:
    """What the metadata says about a model beyond its config: data, limits, provenance."""

    name: str
    season_length: int
    frequency: str
    min_history: int
    max_history: int
    training: dict[str, Any]
    evaluation: dict[str, Any]


def build_metadata(
    facts: ModelFacts,
    model_config: ModelConfig | EnsembleConfig,
    model_sha256: str,
    created: datetime,
) -> ModelMetadata:
    """The metadata of an export; pydantic's ValidationError if it breaks the contract."""
    return ModelMetadata(
        schema_version=SCHEMA_VERSION,
        name=facts.name,
        version=f"{created:%Y%m%d-%H%M%S}-{model_sha256[:8]}",
        created=created.isoformat(timespec="seconds"),
        horizon=model_config.horizon,
        quantiles=tuple(model_config.quantiles),
        point_quantile_index=list(model_config.quantiles).index(0.5),
        season_length=facts.season_length,
        frequency=facts.frequency,
        min_history=facts.min_history,
        max_history=facts.max_history,
        model_config=model_config.to_dict(),
        training=facts.training,
        evaluation=facts.evaluation,
        torch_version=torch.__version__,
        source_commit=source_commit(),
        model_file=MODEL_FILE,
        model_sha256=model_sha256,
    )


def export_model(
    model: nn.Module,
    model_config: ModelConfig | EnsembleConfig,
    out_dir: Path,
    facts: ModelFacts,
    register: bool = True,
    write_reports: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Script, save, check and publish model.ts + metadata.json (+ reports) as out_dir.

    `write_reports(folder)` adds report files (eval.json, plots) to the folder being
    built. Returns the metadata written, as its JSON object. If a check or anything else
    fails (metadata that breaks the contract too), out_dir is left as it was.
    """
    model = model.cpu().eval()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is readable by all
    try:
        model_path = staging / MODEL_FILE
        torch.jit.script(model).save(str(model_path))
        # The file itself is checked, as the service will load it, not the object in memory.
        saved = torch.jit.load(str(model_path), map_location="cpu")
        checks = check_exact(model, saved, facts.min_history, facts.max_history)
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        evaluation = {**facts.evaluation, "export_checks": checks}
        metadata = build_metadata(
            replace(facts, evaluation=evaluation), model_config, digest, datetime.now(UTC)
        )
        write_metadata(metadata, staging / METADATA_FILE)
        if write_reports is not None:
            write_reports(staging)
        publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if register:
        register_in_store(out_dir, metadata)
    return metadata.to_dict()


def publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished folder in: the old one moves aside, the new one takes its name."""
    retired = out_dir.with_name(f".{out_dir.name}.retired-{os.getpid()}")
    if out_dir.exists():
        os.rename(out_dir, retired)
    os.rename(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


def store_tag(metadata: ModelMetadata) -> str:
    return f"forecaster-{metadata.name}:{metadata.version}"


def register_in_store(out_dir: Path, metadata: ModelMetadata) -> str:
    """Copy model.ts and metadata.json into the local BentoML model store; returns the tag."""
    import bentoml  # imported late: it is slow to import and only export needs it

    labels = {"name": metadata.name, "frequency": metadata.frequency}
    written = metadata.to_dict()
    summary = {
        key: written[key]
        for key in ("schema_version", "horizon", "season_length", "min_history", "max_history")
    }
    with bentoml.models.create(store_tag(metadata), labels=labels, metadata=summary) as ref:
        for file in (MODEL_FILE, METADATA_FILE):
            shutil.copy2(out_dir / file, Path(ref.path) / file)
    return str(ref.tag)


def load_exported(out_dir: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The exported model and its metadata's JSON object, loaded as the service would (plain
    torch.jit.load), the metadata checked against the contract (contract.MetadataError)."""
    metadata = read_metadata(out_dir / METADATA_FILE)
    module = torch.jit.load(str(out_dir / metadata.model_file), map_location="cpu")
    return module, metadata.to_dict()

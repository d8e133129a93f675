"""Export refuses inexact models and writes the artifact that docs/ARTIFACT.md describes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from contract.metadata import MetadataError
from training.export import (
    ExportCheckError,
    ModelFacts,
    check_exact,
    export_model,
    load_exported,
)
from training.model import ModelConfig, StackedLSTMForecaster


class PeeksAtPadding(nn.Module):
    """Forecasts the mean of the whole padded row: depends on the batch's longest series."""

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        return values.mean(dim=1).view(-1, 1, 1).expand(-1, 2, 3)  # (B, 2, 3)


def test_check_exact_rejects_a_model_that_reads_padding() -> None:
    """Guards against an export check too weak to notice a batch-dependent model."""
    model = PeeksAtPadding()
    with pytest.raises(ExportCheckError, match="alone_vs_batched"):
        check_exact(model, torch.jit.script(model), min_length=2, max_length=20)  # type: ignore[arg-type]


def test_check_exact_rejects_a_scripted_model_that_differs_from_the_eager_one() -> None:
    """Guards against exporting weights other than the ones evaluated."""
    torch.manual_seed(0)
    config = ModelConfig(horizon=3, hidden=8)
    evaluated, other = StackedLSTMForecaster(config).eval(), StackedLSTMForecaster(config).eval()
    with pytest.raises(ExportCheckError, match="scripted_vs_eager"):
        check_exact(evaluated, torch.jit.script(other), min_length=2, max_length=20)


def test_export_writes_model_and_metadata(tmp_path: Path) -> None:
    """Guards against metadata drifting from the contract the service relies on."""
    torch.manual_seed(0)
    config = ModelConfig(horizon=4, hidden=8, quantiles=(0.1, 0.5, 0.9))
    model = StackedLSTMForecaster(config).eval()
    facts = ModelFacts(
        name="tiny",
        season_length=1,
        frequency="other",
        min_history=3,
        max_history=30,
        training={"seed": 0},
        evaluation={"smape": 12.5},
    )
    metadata = export_model(model, config, tmp_path / "tiny", facts, register=False)
    scripted, written = load_exported(tmp_path / "tiny")
    assert written == metadata
    text = (tmp_path / "tiny" / "metadata.json").read_text()
    assert text == json.dumps(metadata, indent=2) + "\n"
    assert written["schema_version"] == 1
    assert written["horizon"] == 4 and written["quantiles"] == [0.1, 0.5, 0.9]
    assert written["point_quantile_index"] == 1
    assert (written["min_history"], written["max_history"]) == (3, 30)
    assert written["evaluation"]["smape"] == 12.5
    assert set(written["evaluation"]["export_checks"]) == {
        "scripted_vs_eager",
        "alone_vs_batched",
        "alone_vs_shuffled",
    }
    model_bytes = (tmp_path / "tiny" / "model.ts").read_bytes()
    assert written["model_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", written["version"])
    assert ModelConfig.from_dict(written["model_config"]) == config
    json.dumps(written)  # plain JSON, no numpy scalars
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    with torch.inference_mode():
        assert torch.equal(scripted(values, torch.tensor([4])), model(values, torch.tensor([4])))


def test_load_exported_refuses_metadata_the_service_would_refuse(tmp_path: Path) -> None:
    """Guards against evaluate and backtest scoring a model whose metadata.json breaks the
    contract (they read it through the same schema as the service)."""
    export_tiny(tmp_path / "tiny")
    path = tmp_path / "tiny" / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "point_quantile_index": 0}))
    with pytest.raises(MetadataError) as info:
        load_exported(tmp_path / "tiny")
    assert str(info.value) == (
        f"{path}: point_quantile_index 0 does not point at 0.5: quantiles[0] is 0.1"
    )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def tiny_facts() -> ModelFacts:
    return ModelFacts("tiny", 1, "other", 3, 30, {"seed": 0}, {"smape": 12.5})


def export_tiny(out: Path, write_reports: Callable[[Path], None] | None = None) -> None:
    """Export an untrained 2-step forecaster (fixed seed) as out."""
    torch.manual_seed(0)
    config = ModelConfig(horizon=2, hidden=8)
    model = StackedLSTMForecaster(config).eval()
    export_model(model, config, out, tiny_facts(), register=False, write_reports=write_reports)


@pytest.mark.parametrize("failure", ["check", "interrupt"])
def test_failed_export_leaves_the_previous_model_whole(tmp_path: Path, failure: str) -> None:
    """Guards against a failed or interrupted run leaving a mismatched model.ts /
    metadata.json pair (or half a folder) where the service will load it: the previous
    model must stay byte for byte, and no staging folder may be left behind."""
    out = tmp_path / "models" / "tiny"
    export_tiny(out)
    before = folder_bytes(out)

    def interrupted(folder: Path) -> None:
        (folder / "eval.json").write_text("{}")
        raise KeyboardInterrupt

    if failure == "check":
        with pytest.raises(ExportCheckError, match="alone_vs_batched"):
            config = ModelConfig(horizon=2, hidden=8)
            export_model(PeeksAtPadding(), config, out, tiny_facts(), register=False)
    else:
        with pytest.raises(KeyboardInterrupt):
            export_tiny(out, write_reports=interrupted)
    assert folder_bytes(out) == before
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny"]


def test_export_replaces_the_whole_folder(tmp_path: Path) -> None:
    """Guards against a new export mixing with files of the old one (a stale plot or
    eval.json beside a new model.ts)."""
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    export_tiny(out, write_reports=lambda folder: (folder / "eval.json").write_text("{}\n"))
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "metadata.json", "model.ts"]
    assert oct(out.stat().st_mode & 0o777) == "0o755"

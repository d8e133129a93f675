"""The default model in models/m3-monthly: exact in one big batch, and as good as it says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import load_m3
from training.export import history_scale, relative_error
from training.metrics import smape

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "m3-monthly"


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.jit.ScriptModule, dict]:
    # Plain torch.jit.load: nothing from this repository is needed to run the file.
    model = torch.jit.load(str(MODEL_DIR / "model.ts"), map_location="cpu")
    return model, json.loads((MODEL_DIR / "metadata.json").read_text())


@pytest.fixture(scope="module")
def histories(shipped: tuple[torch.jit.ScriptModule, dict]) -> list[np.ndarray]:
    _, metadata = shipped
    return [h[-metadata["max_history"] :] for h in load_m3("m3-monthly").train]


def one_padded_batch(histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(h) for h in histories])  # (N,)
    values = torch.full((len(histories), int(lengths.max())), -7.0)  # (N, T), junk padding
    for row, history in enumerate(histories):
        values[row, : len(history)] = torch.from_numpy(history)
    return values, lengths


def test_metadata_matches_the_model_and_the_data(
    shipped: tuple[torch.jit.ScriptModule, dict],
) -> None:
    """Guards against shipping metadata from another run than the model file."""
    model, metadata = shipped
    assert metadata["schema_version"] == 1 and metadata["name"] == "m3-monthly"
    assert metadata["horizon"] == 18 and metadata["season_length"] == 12
    assert metadata["quantiles"] == [0.1, 0.5, 0.9]
    with torch.inference_mode():
        out = model(torch.ones(1, 30) * 50.0, torch.tensor([30]))
    assert out.shape == (1, 18, 3)
    assert (MODEL_DIR / "model.ts").stat().st_size < 5 * 1024 * 1024


def test_all_series_in_one_batch_equal_each_alone(
    shipped: tuple[torch.jit.ScriptModule, dict], histories: list[np.ndarray]
) -> None:
    """Guards against a shipped file that is exact on small batches only: all 1428 M3
    monthly series (48 to 126 points) in one padded batch must equal each series alone,
    within 1e-5 of max(|forecast|, the series' mean |value|)."""
    model, _ = shipped
    values, lengths = one_padded_batch(histories)
    with torch.inference_mode():
        batched = model(values, lengths)  # (1428, 18, 3)
        alone = torch.cat(
            [
                model(torch.from_numpy(h).float().unsqueeze(0), torch.tensor([len(h)]))
                for h in histories
            ]
        )  # (1428, 18, 3)
    assert batched.shape == (1428, 18, 3)
    scale = history_scale(values, lengths)  # (1428,)
    assert relative_error(batched, alone, scale) <= 1e-5
    print(
        f"SHIPPED: max error relative to max(|forecast|, series scale) "
        f"{relative_error(batched, alone, scale):.2e}; "
        f"elementwise relative {((batched - alone).abs() / alone.abs()).max().item():.2e}"
    )


def test_reported_smape_is_what_the_file_scores(
    shipped: tuple[torch.jit.ScriptModule, dict], histories: list[np.ndarray]
) -> None:
    """Guards against a figure in metadata/README that the shipped file does not reproduce,
    and against a model no better than Naive2 (16.9 sMAPE on M3 monthly)."""
    model, metadata = shipped
    values, lengths = one_padded_batch(histories)
    with torch.inference_mode():
        point = model(values, lengths)[:, :, metadata["point_quantile_index"]].double().numpy()
    score = smape(np.stack(load_m3("m3-monthly").test), point)
    assert score == pytest.approx(metadata["evaluation"]["smape"], abs=1e-3)
    assert score <= 15.2

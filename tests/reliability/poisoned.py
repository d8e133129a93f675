"""The tiny model wrapped so that chosen series break it, to test that failures stay alone.

A series whose last observed value is `NAN_LAST` gets NaN forecasts (its row only); a
batch holding a series whose last value is `RAISE_LAST` makes the whole forward pass
raise. Every other row is the tiny model's own answer.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from contract.metadata import read_metadata, write_metadata

NAN_LAST = 666.0
RAISE_LAST = 999.0


class Poisoned(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.nan_last = NAN_LAST
        self.raise_last = RAISE_LAST

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = values.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        if bool((last == self.raise_last).any()):
            raise RuntimeError("poisoned series in this batch")
        out = self.inner(values, lengths)  # (B, H, Q)
        poisoned = (last == self.nan_last)[:, None, None]  # (B, 1, 1)
        return torch.where(poisoned, torch.full_like(out, float("nan")), out)  # (B, H, Q)


def write_poisoned_artifact(tiny: Path, directory: Path) -> Path:
    """A copy of the tiny artifact whose model.ts is `Poisoned(tiny model)`."""
    shutil.copytree(tiny, directory)
    inner = torch.jit.load(str(tiny / "model.ts"), map_location="cpu").eval()
    model_path = directory / "model.ts"
    torch.jit.script(Poisoned(inner).eval()).save(str(model_path))
    meta_path = directory / "metadata.json"
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    write_metadata(read_metadata(meta_path).replace(model_sha256=digest), meta_path)
    return directory

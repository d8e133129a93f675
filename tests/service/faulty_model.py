"""The tiny model wrapped so that chosen series make it slow or answer the wrong shape.

A batch holding a series whose last value is `SLOW_LAST` takes `slow_steps` extra
matrix products (seconds of compute), so requests queue behind it; one holding a series
whose last value is `NARROW_LAST` comes out with one quantile column instead of all, a
model answer the service only finds wrong when it formats the response.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from contract.metadata import read_metadata, write_metadata

SLOW_LAST = 777.0
NARROW_LAST = 555.0


class Faulty(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, slow_steps: int) -> None:
        super().__init__()
        self.inner = inner
        self.slow_last = SLOW_LAST
        self.narrow_last = NARROW_LAST
        self.slow_steps = slow_steps
        self.weight = torch.nn.Parameter(torch.randn(256, 256) / 16, requires_grad=False)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        last = values.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        out = self.inner(values, lengths)  # (B, H, Q)
        if bool((last == self.slow_last).any()):
            acc = torch.eye(256)  # (256, 256)
            for _ in range(self.slow_steps):
                acc = torch.tanh(acc @ self.weight)  # (256, 256)
            out = out + 0.0 * acc.sum()  # (B, H, Q), unchanged
        if bool((last == self.narrow_last).any()):
            return out[:, :, :1]  # (B, H, 1)
        return out


def write_faulty_artifact(tiny: Path, directory: Path, slow_steps: int = 4000) -> Path:
    """A copy of the tiny artifact whose model.ts is `Faulty(tiny model)`."""
    shutil.copytree(tiny, directory)
    inner = torch.jit.load(str(tiny / "model.ts"), map_location="cpu").eval()
    model_path = directory / "model.ts"
    torch.jit.script(Faulty(inner, slow_steps).eval()).save(str(model_path))
    meta_path = directory / "metadata.json"
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    write_metadata(read_metadata(meta_path).replace(model_sha256=digest), meta_path)
    return directory

"""Finding, checking and loading the model artifact (docs/ARTIFACT.md), nothing else.

The artifact is the only contract with `training/`: a TorchScript `model.ts` and its
`metadata.json`, in a directory or in the BentoML model store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The directory holding `service/`: the project root in a checkout, `src/` in a bento.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "name": str,
    "version": str,
    "horizon": int,
    "quantiles": list,
    "point_quantile_index": int,
    "min_history": int,
    "max_history": int,
    "model_file": str,
}


class ArtifactError(RuntimeError):
    """The configured model cannot be found, read or trusted; the message says why."""


@dataclass(frozen=True)
class Artifact:
    """A located, checked artifact: where it is, what its metadata says."""

    directory: Path
    metadata: dict[str, Any]
    store_tag: str | None = None  # set when it came from the BentoML model store

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def horizon(self) -> int:
        return int(self.metadata["horizon"])

    @property
    def quantiles(self) -> tuple[float, ...]:
        return tuple(float(q) for q in self.metadata["quantiles"])

    @property
    def point_index(self) -> int:
        return int(self.metadata["point_quantile_index"])

    @property
    def model_path(self) -> Path:
        return self.directory / str(self.metadata["model_file"])

    def card(self) -> dict[str, Any]:
        """What a client needs to know about the model (GET /model)."""
        keys = (
            "name",
            "version",
            "created",
            "horizon",
            "quantiles",
            "point_quantile_index",
            "season_length",
            "frequency",
            "min_history",
            "max_history",
            "evaluation",
            "torch_version",
            "source_commit",
            "model_sha256",
        )
        return {k: self.metadata.get(k) for k in keys}

    def load_module(self) -> Any:
        """The TorchScript module, on the CPU, in eval mode."""
        import torch

        try:
            module = torch.jit.load(str(self.model_path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError or ValueError here, both fatal
            raise ArtifactError(f"cannot load TorchScript {self.model_path}: {exc}") from exc
        module.eval()
        return module

    def load_checked(self) -> Any:
        """The module, after one probe batch showed it agrees with the metadata.

        The hash ties model.ts to metadata.json's export, not its content to the keys:
        a hand-edited horizon or quantile list would otherwise serve mis-labelled columns.
        """
        import torch

        module = self.load_module()
        short, long = int(self.metadata["min_history"]), int(self.metadata["max_history"])
        values = torch.linspace(1.0, 2.0, long).repeat(2, 1)  # (2, T), a gentle ramp
        lengths = torch.tensor([short, long])  # (2,)
        try:
            with torch.inference_mode():
                out = module(values, lengths)  # (2, H, Q)
        except Exception as exc:
            raise ArtifactError(f"{self.model_path} fails on a probe batch: {exc}") from exc
        expected = (2, self.horizon, len(self.quantiles))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ArtifactError(
                f"{self.model_path} returns shape {shape} for 2 series, but metadata.json "
                f"(horizon {self.horizon}, {len(self.quantiles)} quantiles) implies {expected}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ArtifactError(f"{self.model_path} returns non-finite values on a probe batch")
        return module


def one_line(exc: BaseException, limit: int = 600) -> str:
    """An error as one line of text (torch's messages span many), cut to `limit` chars."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read(directory: Path, store_tag: str | None = None) -> Artifact:
    """Read and check `metadata.json` in `directory`, and that `model.ts` matches its hash."""
    meta_path = directory / "metadata.json"
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{meta_path} must hold a JSON object")
    for key, typ in _REQUIRED.items():
        if not isinstance(metadata.get(key), typ):
            raise ArtifactError(f"{meta_path}: key {key!r} missing or not {typ}")
    if metadata["schema_version"] != 1:
        raise ArtifactError(f"{meta_path}: schema_version {metadata['schema_version']} != 1")
    quantiles = metadata["quantiles"]
    if not 0 <= metadata["point_quantile_index"] < len(quantiles):
        raise ArtifactError(f"{meta_path}: point_quantile_index outside quantiles")
    if quantiles[metadata["point_quantile_index"]] != 0.5:
        raise ArtifactError(f"{meta_path}: point_quantile_index does not point at 0.5")
    if not 1 <= metadata["min_history"] <= metadata["max_history"]:
        raise ArtifactError(f"{meta_path}: need 1 <= min_history <= max_history")
    artifact = Artifact(directory, metadata, store_tag)
    if not artifact.model_path.is_file():
        raise ArtifactError(f"{artifact.model_path} is missing")
    expected = metadata.get("model_sha256")
    if expected:
        actual = hashlib.sha256(artifact.model_path.read_bytes()).hexdigest()
        if actual != expected:
            raise ArtifactError(
                f"{artifact.model_path}: sha256 {actual[:12]}... does not match "
                f"metadata.json's {str(expected)[:12]}... (files from different exports?)"
            )
    return artifact


def is_store_tag(spec: str) -> bool:
    """A BentoML tag (`name` or `name:version`) has no path separator and no leading dot."""
    return "/" not in spec and "\\" not in spec and not spec.startswith(".")


def locate(spec: str, cwd: Path | None = None) -> Artifact:
    """The artifact a `FORECASTER_MODEL` value names: a directory, else a store tag.

    Relative directories are tried against the working directory, then the project root
    (so `bentoml serve` works from anywhere in a checkout and inside a built bento).
    """
    path = Path(spec).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [(cwd or Path.cwd()) / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if (candidate / "metadata.json").is_file():
            return read(candidate.resolve())
    if is_store_tag(spec):
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            stored = bentoml.models.get(spec)
        except NotFound:
            pass
        else:
            return read(Path(stored.path), store_tag=str(stored.tag))
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    store = " nor a BentoML model store tag" if is_store_tag(spec) else ""
    raise ArtifactError(
        f"model {spec!r} not found: no metadata.json in {tried}{store}. "
        "Train one (make train) or point FORECASTER_MODEL at a models/<name> directory "
        "or a store tag such as forecaster-m3-monthly:latest."
    )

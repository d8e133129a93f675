"""Finding, checking and loading the model artifact (docs/ARTIFACT.md), nothing else.

The artifact is the only contract with `training/`: a TorchScript `model.ts` and its
`metadata.json`, in a directory or in the BentoML model store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.metadata import METADATA_FILE, MetadataError, ModelMetadata, read_metadata

# The directory holding `service/`: the project root in a checkout, `src/` in a bento.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# What GET /model shows of the metadata.
CARD_KEYS = (
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


class ArtifactError(RuntimeError):
    """The configured model cannot be found, read or trusted; the message says why."""


@dataclass(frozen=True)
class Artifact:
    """A located, checked artifact: where it is, what its metadata says."""

    directory: Path
    metadata: ModelMetadata
    store_tag: str | None = None  # set when it came from the BentoML model store

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def horizon(self) -> int:
        return self.metadata.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.metadata.quantiles

    @property
    def point_index(self) -> int:
        return self.metadata.point_quantile_index

    @property
    def min_history(self) -> int:
        return self.metadata.min_history

    @property
    def max_history(self) -> int:
        return self.metadata.max_history

    @property
    def season_length(self) -> int:
        return self.metadata.season_length

    @property
    def frequency(self) -> str:
        """As the metadata says it ("monthly", "other", a CSV's label); see contract.frequency."""
        return self.metadata.frequency

    @property
    def model_path(self) -> Path:
        return self.directory / self.metadata.model_file

    def card(self) -> dict[str, Any]:
        """What a client needs to know about the model (GET /model)."""
        metadata = self.metadata.to_dict()
        return {key: metadata[key] for key in CARD_KEYS}

    def load_module(self, device: str = "cpu") -> Any:
        """The TorchScript module, on `device`, in eval mode."""
        import torch

        try:
            module = torch.jit.load(str(self.model_path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError or ValueError here, both fatal
            raise ArtifactError(
                f"cannot load TorchScript {self.model_path} onto {device}: {exc}"
            ) from exc
        module.eval()
        return module

    def load_checked(self, device: str = "cpu") -> Any:
        """The module on `device`, after one probe batch there showed it agrees with the metadata.

        The hash ties model.ts to metadata.json's export, not its content to the keys:
        a hand-edited horizon or quantile list would otherwise serve mis-labelled columns.
        """
        import torch

        module = self.load_module(device)
        short, long = self.min_history, self.max_history
        values = torch.linspace(1.0, 2.0, long).repeat(2, 1).to(device)  # (2, T), a gentle ramp
        lengths = torch.tensor([short, long]).to(device)  # (2,)
        try:
            with torch.inference_mode():
                out = module(values, lengths)  # (2, H, Q)
                out = out.cpu() if isinstance(out, torch.Tensor) else out  # (2, H, Q)
        except Exception as exc:
            raise ArtifactError(
                f"{self.model_path} fails on a probe batch on {device}: {exc}"
            ) from exc
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
    """Read `metadata.json` in `directory` through the contract, and check that `model.ts`
    matches its hash. ArtifactError names the file and the rule broken, on one line."""
    try:
        metadata = read_metadata(directory / METADATA_FILE)
    except MetadataError as exc:
        raise ArtifactError(" ".join(str(exc).split())) from exc
    artifact = Artifact(directory, metadata, store_tag)
    if not artifact.model_path.is_file():
        raise ArtifactError(f"{artifact.model_path} is missing")
    expected = metadata.model_sha256
    actual = hashlib.sha256(artifact.model_path.read_bytes()).hexdigest()
    if actual != expected:
        raise ArtifactError(
            f"{artifact.model_path}: sha256 {actual[:12]}... does not match "
            f"metadata.json's {expected[:12]}... (files from different exports?)"
        )
    return artifact


def is_store_tag(spec: str) -> bool:
    """A BentoML tag (`name` or `name:version`) has no path separator and no leading dot."""
    return "/" not in spec and "\\" not in spec and not spec.startswith(".")


def locate(spec: str, cwd: Path | None = None) -> Artifact:
    """The artifact one `FORECASTER_MODELS` entry names: a model directory, else a store tag.

    Relative directories are tried against the working directory, then the project root
    (so `bentoml serve` works from anywhere in a checkout and inside a built bento).
    """
    path = Path(spec).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [(cwd or Path.cwd()) / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if (candidate / METADATA_FILE).is_file():
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
        "Train one (make train) or point FORECASTER_MODELS at a models/<name> directory "
        "or a store tag such as forecaster-m3-monthly:latest."
    )

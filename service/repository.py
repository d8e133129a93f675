"""The model repository: which exported models a `FORECASTER_MODELS` value names.

A value is a comma-separated list of entries; each entry is one model folder (it holds
`metadata.json`), a folder of model folders (`models/`: each subfolder with a
`metadata.json` is a model, hidden ones such as an export's staging folder are not), or
a BentoML model store tag. Models are known by their metadata `name`, which must be
unique across the repository.
"""

from __future__ import annotations

from pathlib import Path

from service.artifact import PROJECT_ROOT, Artifact, ArtifactError, locate, read


def model_folders(directory: Path) -> list[Path]:
    """The visible subfolders of `directory` that hold a metadata.json, by name."""
    return sorted(
        child
        for child in directory.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / "metadata.json").is_file()
    )


def locate_entry(entry: str, cwd: Path | None = None) -> list[Artifact]:
    """The artifacts of one entry: a folder of model folders, else what `locate` finds."""
    path = Path(entry).expanduser()
    candidates = [path] if path.is_absolute() else [(cwd or Path.cwd()) / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if candidate.is_dir() and not (candidate / "metadata.json").is_file():
            folders = model_folders(candidate)
            if folders:
                return [read(folder.resolve()) for folder in folders]
    return [locate(entry, cwd)]


def locate_models(spec: str, cwd: Path | None = None) -> dict[str, Artifact]:
    """Every model a `FORECASTER_MODELS` value names, by model name (in the order named)."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if not entries:
        raise ArtifactError("FORECASTER_MODELS names no model")
    found: dict[str, Artifact] = {}
    for entry in entries:
        for artifact in locate_entry(entry, cwd):
            other = found.get(artifact.name)
            if other is not None:
                raise ArtifactError(
                    f"two models are called {artifact.name!r}: {other.directory} and "
                    f"{artifact.directory}; each served model needs its own name"
                )
            found[artifact.name] = artifact
    return found


def choose_default(names: list[str], wanted: str) -> str:
    """The default model: `wanted` when served; the only model when just one is."""
    if wanted in names:
        return wanted
    if len(names) == 1:
        return names[0]
    raise ArtifactError(
        f"FORECASTER_DEFAULT_MODEL {wanted!r} is not among the models served: {names}"
    )

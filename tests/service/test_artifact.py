"""Unit tests of locating and checking the model artifact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import ROOT
from service.artifact import ArtifactError, is_store_tag, locate, read


def test_locate_a_directory_relative_to_the_working_directory(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    target = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_artifact, target)
    found = locate("models/tiny", cwd=tmp_path)
    assert found.directory == target.resolve()
    assert (found.name, found.horizon, found.quantiles, found.point_index) == (
        "tiny",
        6,
        (0.1, 0.5, 0.9),
        1,
    )
    assert (found.min_history, found.max_history, found.season_length, found.frequency) == (
        4,
        40,
        12,
        "monthly",
    )
    assert found.model_path == target.resolve() / "model.ts"
    assert found.store_tag is None


def test_the_card_shows_the_metadata_as_written(tiny_artifact: Path) -> None:
    """Guards against GET /model showing a key renamed or retyped by the schema (a tuple
    for the quantiles list, the schema's attribute name for a key)."""
    written = json.loads((tiny_artifact / "metadata.json").read_text())
    card = read(tiny_artifact).card()
    assert list(card) == [
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
    ]
    assert card == {key: written[key] for key in card}
    assert card["quantiles"] == [0.1, 0.5, 0.9]


def test_load_checked_runs_the_probe_on_the_device_asked_for(tiny_artifact: Path) -> None:
    """Guards against a device argument that is ignored (the module left on the CPU) or that
    breaks the default callers; a GPU, where there is one, is checked the same way."""
    import torch

    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    for device in devices:
        module = read(tiny_artifact).load_checked(device=device)
        weights = list(module.parameters())
        assert weights and {w.device.type for w in weights} == {device}
    assert {w.device.type for w in read(tiny_artifact).load_checked().parameters()} == {"cpu"}


def test_a_device_that_does_not_exist_is_an_artifact_error(tiny_artifact: Path) -> None:
    """Guards against a mistyped device surfacing as a torch traceback at start-up."""
    with pytest.raises(ArtifactError) as info:
        read(tiny_artifact).load_module(device="nodevice")
    model = tiny_artifact / "model.ts"
    assert str(info.value).startswith(f"cannot load TorchScript {model} onto nodevice: ")


def test_missing_model_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        locate("models/nope", cwd=tmp_path)
    message = str(info.value)
    assert message.startswith("model 'models/nope' not found: no metadata.json in ")
    assert str(tmp_path / "models/nope") in message and "FORECASTER_MODELS" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"schema_version": 2},
            "{meta}: schema_version 2 != 1 (this code reads schema 1 only)",
        ),
        ({"horizon": "6"}, "{meta}: horizon: Input should be a valid integer (got '6')"),
        (
            {"point_quantile_index": 0},
            "{meta}: point_quantile_index 0 does not point at 0.5: quantiles[0] is 0.1",
        ),
        (
            {"max_history": 3},
            "{meta}: need 1 <= min_history <= max_history, got min_history 4 and max_history 3",
        ),
        (
            {"model_sha256": "0" * 64},
            "{model}: sha256 {actual}... does not match metadata.json's 000000000000... "
            "(files from different exports?)",
        ),
        ({"model_file": "absent.ts"}, "{directory}/absent.ts is missing"),
    ],
)
def test_untrustworthy_metadata_is_refused(
    tiny_artifact: Path, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Guards against serving a model.ts with the wrong metadata (wrong horizon or quantiles),
    and against a refusal that does not name the file and the rule on one line."""
    target = tmp_path / "m"
    shutil.copytree(tiny_artifact, target)
    metadata = json.loads((target / "metadata.json").read_text())
    (target / "metadata.json").write_text(json.dumps({**metadata, **change}, indent=2))
    with pytest.raises(ArtifactError) as info:
        read(target)
    actual = metadata["model_sha256"][:12]
    assert str(info.value) == message.format(
        meta=target / "metadata.json", model=target / "model.ts", directory=target, actual=actual
    )


def test_unreadable_metadata_is_refused_with_its_path(tmp_path: Path) -> None:
    """Guards against a truncated metadata.json stopping start-up with a traceback."""
    (tmp_path / "metadata.json").write_text('{"name": "tiny",\n')
    with pytest.raises(ArtifactError) as info:
        read(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'metadata.json'} is not JSON: EOF ")


def test_store_tags_are_told_from_paths() -> None:
    assert is_store_tag("forecaster-m3-monthly:latest")
    assert is_store_tag("forecaster-m3-monthly")
    assert not is_store_tag("models/m3-monthly")
    assert not is_store_tag("./m3")


@pytest.mark.slow
def test_locate_a_bentoml_store_tag(tiny_artifact: Path, tmp_path: Path) -> None:
    """Guards against the store-tag setting resolving to nothing (or to a stale version)."""
    script = f"""
import shutil, bentoml
from pathlib import Path
with bentoml.models.create("forecaster-tiny") as ref:
    for f in ("model.ts", "metadata.json"):
        shutil.copy(Path({str(tiny_artifact)!r}) / f, Path(ref.path) / f)
from service.artifact import locate
found = locate("forecaster-tiny:latest")
print(found.store_tag == str(ref.tag), found.name, found.horizon)
"""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "tiny", "6"]

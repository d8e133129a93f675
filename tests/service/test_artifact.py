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
    assert found.store_tag is None


def test_missing_model_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        locate("models/nope", cwd=tmp_path)
    message = str(info.value)
    assert message.startswith("model 'models/nope' not found: no metadata.json in ")
    assert str(tmp_path / "models/nope") in message and "FORECASTER_MODEL" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2 != 1"),
        ({"horizon": "6"}, "key 'horizon' missing"),
        ({"point_quantile_index": 0}, "does not point at 0.5"),
        ({"model_sha256": "0" * 64}, "does not match"),
    ],
)
def test_untrustworthy_metadata_is_refused(
    tiny_artifact: Path, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Guards against serving a model.ts with the wrong metadata (wrong horizon or quantiles)."""
    target = tmp_path / "m"
    shutil.copytree(tiny_artifact, target)
    metadata = json.loads((target / "metadata.json").read_text())
    (target / "metadata.json").write_text(json.dumps({**metadata, **change}))
    with pytest.raises(ArtifactError, match=message):
        read(target)


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

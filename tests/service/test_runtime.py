"""`service.runtime.build` in-process: the repository it finds, its default, its device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.artifact import ArtifactError
from service.repository import choose_default, locate_models
from service.runtime import StartupError, build, resolve_device
from service.settings import Settings
from tests.service.tiny_model import write_tiny_artifact


@pytest.fixture
def two(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_tiny_artifact(root / "b-folder", seed=1, name="beta", frequency="quarterly")
    write_tiny_artifact(root / "a-folder", seed=0, name="alpha")
    write_tiny_artifact(root / ".beta.staging-7", seed=2, name="half")
    (root / "notes").mkdir()  # a folder without metadata.json is not a model
    return root


def test_a_folder_of_models_is_read_by_folder_name_skipping_hidden_ones(two: Path) -> None:
    """Guards against an export's staging folder (or a stray folder) being served."""
    found = locate_models(str(two))
    assert list(found) == ["alpha", "beta"]
    assert found["beta"].directory == (two / "b-folder").resolve()


def test_a_list_of_entries_keeps_its_order_and_refuses_two_of_one_name(two: Path) -> None:
    """Guards against one model silently replacing another of the same name."""
    found = locate_models(f"{two / 'b-folder'}, {two / 'a-folder'}")
    assert list(found) == ["beta", "alpha"]
    with pytest.raises(ArtifactError, match="two models are called 'alpha'"):
        locate_models(f"{two},{two / 'a-folder'}")
    with pytest.raises(ArtifactError, match="names no model"):
        locate_models(" , ")


def test_the_default_is_the_named_model_or_the_only_one() -> None:
    assert choose_default(["a", "m3-monthly"], "m3-monthly") == "m3-monthly"
    assert choose_default(["tiny"], "m3-monthly") == "tiny"
    with pytest.raises(ArtifactError, match=r"'m3-monthly' is not among .*\['a', 'b'\]"):
        choose_default(["a", "b"], "m3-monthly")


def test_build_wires_one_engine_per_model_on_one_model_thread(two: Path) -> None:
    """Guards against models that each get a thread of their own (passes would overlap
    and compete for the worker's one core) or limits taken from the wrong model."""
    runtime = build(Settings(models=str(two), default_model="beta", device="cpu"))
    alpha, beta = runtime.models["alpha"], runtime.models["beta"]
    assert runtime.default_model is beta
    assert alpha.engine.dispatch.__self__._thread is beta.engine.dispatch.__self__._thread  # type: ignore[attr-defined]
    assert (alpha.limits.frequency, beta.limits.frequency) == ("M", "Q")
    assert beta.card["name"] == "beta" and beta.card["levels"] == [80.0]
    assert runtime.catalogue()["default"] == "beta"


def test_the_device_is_cuda_only_where_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against `auto` picking CUDA on a CPU machine, or `cuda` starting without one."""
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(StartupError, match="FORECASTER_DEVICE=cuda, but torch sees no CUDA"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"

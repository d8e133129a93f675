"""`bentoml build`, then serve the built bento by its tag from an empty directory.

This is the container's path minus Docker: the bento must carry the code and the model.
"""

from __future__ import annotations

import ast
import os
import random
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement

from bench.servers import BENTOML, ROOT, Server
from tests.service.conftest import Reference
from tests.service.tiny_model import QUANTILES, VERSION, write_tiny_artifact

pytestmark = pytest.mark.slow


def test_built_bento_serves_its_own_models_from_an_empty_directory(
    reference: Reference, tmp_path: Path
) -> None:
    """Guards against a bento missing a model or a module, which only fails in production."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    for package in ("service", "contract"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, project / package, ignore=ignore)
    shutil.copy(ROOT / "bentofile.yaml", project)
    # Tiny models stand in for the shipped ones (the default's weights are the session's
    # tiny model's, seed 0, so `reference` is its forecast).
    for name, seed in (("m3-monthly", 0), ("m3-quarterly", 1)):
        write_tiny_artifact(project / "models" / name, seed=seed, name=name)
    (project / "models" / "m3-monthly" / "learning_curve.png").write_bytes(b"not needed to serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")}
    env["BENTOML_HOME"] = str(tmp_path / "home")
    env["BENTOML_DO_NOT_TRACK"] = "True"

    built = subprocess.run(
        [str(BENTOML), "build", "--output", "tag"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("forecaster:"), built.stdout

    bento = tmp_path / "home" / "bentos" / "forecaster" / tag.split(":")[1]
    files = {str(p.relative_to(bento / "src")) for p in (bento / "src").rglob("*") if p.is_file()}
    for name in ("m3-monthly", "m3-quarterly"):
        assert {f"models/{name}/model.ts", f"models/{name}/metadata.json"} <= files
    # The project is installed in this venv too, so only the file list can show a package
    # the bento would lack in a container.
    assert {"service/service.py", "contract/metadata.py", "contract/frequency.py"} <= files
    assert not [f for f in files if f.endswith(".png") or f.startswith(("tests", "training"))]
    dockerfile = bento / "env" / "docker" / "Dockerfile"
    assert dockerfile.is_file(), "bentoml build made no Dockerfile"
    # The container must not run as root: the last USER line names another user.
    users = [
        line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")
    ]
    print(f"RELIABILITY: container_user users={users}")
    assert users and users[-1] not in ("root", "0", "0:0"), users

    empty = tmp_path / "empty"
    empty.mkdir()
    with Server(env, target=tag, cwd=empty) as server:
        values = [random.Random(7).uniform(50, 150) for _ in range(23)]
        response = httpx.post(
            f"{server.url}/forecast", json={"series": [{"values": values}]}, timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": "m3-monthly", "version": VERSION}
        served = httpx.get(f"{server.url}/models", timeout=30).json()["models"]
        assert [card["name"] for card in served] == ["m3-monthly", "m3-quarterly"]
        expected = reference(values)
        np.testing.assert_allclose(
            body["forecasts"][0]["point"], expected[:, QUANTILES.index(0.5)], rtol=1e-5
        )


def test_the_bento_installs_every_package_the_service_imports() -> None:
    """Guards against an import that works here (the venv has it) and fails in the image."""

    def canonical(name: str) -> str:
        return name.strip().lower().replace("_", "-")

    listed = {
        canonical(Requirement(spec).name)
        for spec in yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    }
    imported: set[str] = set()
    for path in (ROOT / "service").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"service", "contract", "__future__"}
    # bentoml (and starlette, which it brings) is what the bento runs on; pydantic brings
    # pydantic_core, whose version it pins exactly.
    provided = {"bentoml", "starlette", "pydantic_core"}
    distributions = packages_distributions()
    missing = {
        module
        for module in third_party - provided
        if not {canonical(d) for d in distributions.get(module, [module])} & listed
    }
    assert not missing, f"bentofile.yaml python.packages lacks {sorted(missing)}"


def test_the_bento_pins_exactly_the_runtime_dependencies() -> None:
    """Guards against bentofile.yaml and pyproject.toml drifting apart: a package added to
    (or a pin changed in) the runtime dependencies but not in the image, or the reverse,
    or a training-only package (statsforecast, matplotlib) shipped in the image."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bento = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    # bentoml is what the bento runs on: `bentoml build` adds its own version itself.
    runtime = [str(r) for r in map(Requirement, declared) if r.name != "bentoml"]
    assert sorted(str(Requirement(spec)) for spec in bento) == sorted(runtime)

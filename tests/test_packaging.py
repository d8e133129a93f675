"""pyproject.toml declares what each package imports: the runtime for service/, extras after."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCAL = {"contract", "client", "service", "training", "load_tests", "bench", "tests", "__future__"}
# What bentoml brings with it and the service uses through it.
VIA_BENTOML = {"starlette"}
# What pydantic brings with it (at the exact version it pins) and the service uses.
VIA_PYDANTIC = {"pydantic_core"}


def canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def declared(extra: str | None) -> set[str]:
    """Distribution names of the runtime dependencies, plus `extra`'s (its own extras followed)."""
    names: set[str] = set()
    pending = [*PROJECT["dependencies"]]
    seen: set[str] = set()
    if extra is not None:
        pending += [f"{PROJECT['name']}[{extra}]"]
    while pending:
        requirement = Requirement(pending.pop())
        if canonical(requirement.name) != PROJECT["name"]:
            names.add(canonical(requirement.name))
            continue
        for name in requirement.extras - seen:
            seen.add(name)
            pending += PROJECT["optional-dependencies"][name]
    return names


def imported(package: str) -> set[str]:
    """Top-level third-party modules that `package`'s files import."""
    modules: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - LOCAL


@pytest.mark.parametrize(
    ("package", "extra"),
    [
        ("contract", None),
        ("client", "client"),
        ("service", None),
        ("training", "train"),
        ("load_tests", "load"),
        ("bench", "bench"),
    ],
)
def test_every_import_is_declared_where_the_package_is_installed(
    package: str, extra: str | None
) -> None:
    """Guards against a package that imports what its install does not bring: a training
    import left out of `train`, or a runtime dependency that only the dev extra installs."""
    names = declared(extra)
    distributions = packages_distributions()
    missing = {
        module
        for module in imported(package) - VIA_BENTOML - VIA_PYDANTIC
        if not {canonical(d) for d in distributions.get(module, [module])} & names
    }
    where = "dependencies" if extra is None else f"dependencies or the {extra} extra"
    assert not missing, f"{package}/ imports {sorted(missing)}, not in pyproject's {where}"


def test_the_runtime_holds_nothing_the_service_does_not_import() -> None:
    """Guards against training or load-test packages (statsforecast, locust) in every
    install and in the image: each runtime dependency is imported by service/, or serves it."""
    distributions = packages_distributions()
    used = {canonical(d) for m in imported("service") for d in distributions.get(m, [m])}
    # bentoml runs the service; uvicorn (under it) loads uvloop and httptools by itself.
    serving = {"bentoml", "uvloop", "httptools"}
    assert declared(None) - used - serving == set()

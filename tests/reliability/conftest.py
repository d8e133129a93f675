"""The reliability tier reuses the service tier's tiny model, reference and BentoML home."""

from __future__ import annotations

import pytest

from tests.reliability.common import REPORTED
from tests.service.conftest import bentoml_home, reference, tiny_artifact

__all__ = ["bentoml_home", "reference", "tiny_artifact"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat every `RELIABILITY:` line at the end, captured output or not."""
    if REPORTED:
        terminalreporter.section("reliability figures")
        for line in REPORTED:
            terminalreporter.write_line(line)

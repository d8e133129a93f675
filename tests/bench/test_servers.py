"""bench.servers.Server's own files: its scratch folder (its log, unless one is given, and
the temporary folders its processes make) is gone once it stops; a given log stays."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from bench.servers import Server


class StaticServer(Server):
    """Python's own http.server in place of `bentoml serve`: the same start, probe and
    stop, in a fraction of a second and with no model."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]

    def probes(self) -> list[str]:
        return [f"{self.url}/"]


def test_a_log_the_server_made_is_removed_when_it_stops() -> None:
    with StaticServer({}, cwd=Path(__file__).parent) as server:
        assert httpx.get(f"{server.url}/").status_code == 200
        assert server.log.exists()
    assert server.process is not None and server.process.poll() is not None
    assert not server.log.exists()
    assert not server.scratch.exists()


def test_a_log_it_was_given_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with StaticServer({}, cwd=Path(__file__).parent, log=log) as server:
        httpx.get(f"{server.url}/")
    assert server.process is not None and server.process.poll() is not None
    assert "GET / " in log.read_text()


class LitteringServer(StaticServer):
    """Makes a temporary folder it never removes, as a process killed mid-request does."""

    def command(self) -> list[str]:
        serve = (
            "import runpy, sys, tempfile; tempfile.mkdtemp(prefix='left-'); "
            "sys.argv[0] = 'http.server'; runpy.run_module('http.server', run_name='__main__')"
        )
        return [sys.executable, "-c", serve, "--bind", "127.0.0.1", str(self.port)]


def test_temporary_folders_its_processes_leave_are_removed_when_it_stops() -> None:
    with LitteringServer({}, cwd=Path(__file__).parent) as server:
        left = list(server.scratch.glob("left-*"))
        assert len(left) == 1, list(server.scratch.iterdir())
    assert not left[0].exists()


def test_a_server_only_built_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    server = StaticServer({"FORECASTER_MODELS": "x"})
    assert server.env["FORECASTER_MODELS"] == "x"
    assert list(tmp_path.iterdir()) == []

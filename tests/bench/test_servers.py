"""bench.servers.Server's own files: a log it made is gone once it stops, a given one stays."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

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


def test_a_log_it_was_given_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with StaticServer({}, cwd=Path(__file__).parent, log=log) as server:
        httpx.get(f"{server.url}/")
    assert server.process is not None and server.process.poll() is not None
    assert "GET / " in log.read_text()

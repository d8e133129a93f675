"""A real `bentoml serve` subprocess on a free 127.0.0.1 port, stopped by its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(model: Path, bentoml_home: Path, **settings: str) -> dict[str, str]:
    """A test server's environment: its model, a BentoML home of its own under
    `bentoml_home`, and settings by name (`max_batch_size="16"` is
    `FORECASTER_MAX_BATCH_SIZE=16`).

    Its own home because `bentoml serve` clears `$BENTOML_HOME/prometheus_multiproc_dir`
    at start-up: a server sharing a home with one already up would wipe its metrics.
    """
    home = tempfile.mkdtemp(prefix="home-", dir=bentoml_home)
    env = {"FORECASTER_MODEL": str(model), "BENTOML_HOME": home}
    env.update({f"FORECASTER_{name.upper()}": value for name, value in settings.items()})
    return env


class Server:
    """`bentoml serve [target]` with `env` added; ready once /readyz answers 200."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        target: str | None = None,
        cwd: Path = ROOT,
        cpus: str | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.env = {**os.environ, **env}
        self.port = port or free_port()
        self.target = target
        self.cwd = cwd
        self.cpus = cpus
        self.start_timeout_s = start_timeout_s
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="forecaster-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [str(BENTOML), "serve", *([self.target] if self.target else [])]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited {self.process.returncode}:\n{self.tail()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"not ready in {self.start_timeout_s} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def pids(self) -> list[int]:
        """The server process and all its descendants."""
        assert self.process is not None
        found = [self.process.pid]
        for pid in found:
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                found += [int(p) for p in children.read_text().split()]
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers that outlived the arbiter are in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

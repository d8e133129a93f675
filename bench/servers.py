"""The one server launcher: starting, probing and stopping servers, and reading their CPU time.

`Server` is `bentoml serve` (the service under test, for the tests, the benchmark, the soak
and `make load` alike); `TorchServe` is the benchmark's other contender. Each runs in its
own session (process group), optionally pinned with `taskset`, bound to 127.0.0.1 on a
free port, is ready once its probes answer 200, and is stopped by its process group
(SIGTERM, then SIGKILL, descendants that left the group included) on the way out of its
`with` block, whatever happened inside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BENTOML = BIN / "bentoml"
TORCHSERVE_DIR = Path(__file__).resolve().parent / "torchserve"
# What the tools add to a server's environment: no usage tracking, logs written as they come.
QUIET = {"BENTOML_DO_NOT_TRACK": "True", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: Sequence[str], cpus: str | int | None) -> list[str]:
    """`command` under `taskset -c cpus` (its children inherit the affinity)."""
    if cpus is None:
        return list(command)
    return ["taskset", "-c", str(cpus), *command]


def family(pid: int) -> list[psutil.Process]:
    """A process and all its live descendants; empty once it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its live descendants, in seconds."""
    total = 0.0
    for proc in family(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the process group (and any descendant that left it), then SIGKILL what stays."""
    members = family(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(members, timeout=grace_s)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    # Workers that outlived the arbiter are in the same group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def serve_env(model: Path, bentoml_home: Path, **settings: str) -> dict[str, str]:
    """A server's environment: its model, a BentoML home of its own under `bentoml_home`,
    and settings by name (`max_batch_size="16"` is `FORECASTER_MAX_BATCH_SIZE=16`).

    Its own home because `bentoml serve` clears `$BENTOML_HOME/prometheus_multiproc_dir`
    at start-up: a server sharing a home with one already up would wipe its metrics.
    """
    bentoml_home.mkdir(parents=True, exist_ok=True)
    home = tempfile.mkdtemp(prefix="home-", dir=bentoml_home)
    env = {"FORECASTER_MODELS": str(model), "BENTOML_HOME": home}
    env.update({f"FORECASTER_{name.upper()}": value for name, value in settings.items()})
    return env


class Server:
    """`bentoml serve [target]` with `env` added, on 127.0.0.1; ready once /readyz answers 200.

    `cpus` pins it (`taskset -c`); `name` labels its errors; its output goes to `log`,
    or, when none is given, to a file in its scratch folder (its errors carry the file's
    tail). The scratch folder is also its TMPDIR unless `env` names one, and is removed
    once it is stopped: a process killed mid-request (the reliability tests kill workers)
    leaves temporary folders that its own clean-up never removes. The folder is made when
    first needed, so a server that is only built leaves nothing behind.
    """

    predict_path = "/forecast"

    def __init__(
        self,
        env: Mapping[str, str],
        port: int | None = None,
        target: str | None = None,
        cwd: Path = ROOT,
        cpus: str | int | None = None,
        start_timeout_s: float = 120.0,
        name: str = "bentoml serve",
        log: Path | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.tmpdir_given = "TMPDIR" in env
        self.port = port or free_port()
        self.target = target
        self.cwd = cwd
        self.cpus = cpus
        self.start_timeout_s = start_timeout_s
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.given_log = log
        self._scratch: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    @property
    def scratch(self) -> Path:
        """Its own temporary folder, made on first use and removed by `stop`."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="forecaster-serve-"))
        return self._scratch

    @property
    def log(self) -> Path:
        return self.given_log or self.scratch / "serve.log"

    @property
    def metrics_url(self) -> str | None:
        """Where its Prometheus page is; None for a server without one."""
        return f"{self.url}/metrics"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        command = [str(BENTOML), "serve", *([self.target] if self.target else [])]
        return pinned([*command, "--host", "127.0.0.1", "--port", str(self.port)], self.cpus)

    def probes(self) -> list[str]:
        """URLs that must answer 200, in order, before it counts as ready."""
        return [f"{self.url}/readyz"]

    def __enter__(self) -> Server:
        self.start()
        return self

    def start(self) -> None:
        env = self.env if self.tmpdir_given else {**self.env, "TMPDIR": str(self.scratch)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: one killpg stops it all
            )
        try:
            for probe in self.probes():
                self.wait_ready(probe)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, probe: str | None = None) -> None:
        """Poll `probe` (its first probe by default) until it answers 200; raise with
        the log's tail if it exits or never does."""
        url = probe or self.probes()[0]
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready in {self.start_timeout_s} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The server process and all its live descendants."""
        return [proc.pid for proc in family(self.pid)]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        """Stop its whole process group and remove its scratch folder; once, however often
        it is called."""
        if self.process is not None and not self._stopped:
            self._stopped = True
            stop_group(self.process)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class TorchServe(Server):
    """TorchServe serving the same model.ts through `torchserve/handler.py`: one worker,
    its own batching (`batch_size`, `max_batch_delay_ms`), in a work directory of its own
    under `log_dir`."""

    predict_path = "/predictions/forecaster"

    def __init__(
        self,
        model_dir: Path,
        log_dir: Path,
        batch_size: int,
        max_batch_delay_ms: int,
        cpus: str | int | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        self.work = Path(tempfile.mkdtemp(prefix="torchserve-", dir=log_dir))
        self.store = self.work / "store"
        self.config = self.work / "config.properties"
        self.stats_file = self.work / "handler-stats.txt"
        self.ports = {k: free_port() for k in ("inference", "management", "metrics")}
        env = {
            # TorchServe keeps its pid file in the temp dir: a private one keeps runs apart.
            "TMPDIR": str(self.work),
            "LOG_LOCATION": str(self.work / "logs"),
            "METRICS_LOCATION": str(self.work / "logs"),
            "FORECASTER_TS_STATS": str(self.stats_file),
            "FORECASTER_TORCH_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        super().__init__(
            env,
            port=self.ports["inference"],
            cwd=self.work,
            cpus=cpus,
            start_timeout_s=start_timeout_s,
            name="torchserve",
            log=log_dir / "torchserve.log",
        )

    @property
    def metrics_url(self) -> str | None:
        return None  # the handler counts its calls in `stats_file` instead

    def command(self) -> list[str]:
        return pinned(
            [
                str(BIN / "torchserve"),
                "--start",
                "--foreground",
                "--ncs",
                "--disable-token-auth",
                "--model-store",
                str(self.store),
                "--ts-config",
                str(self.config),
                "--log-config",
                str(TORCHSERVE_DIR / "log4j2.xml"),
            ],
            self.cpus,
        )

    def probes(self) -> list[str]:
        # Registered is not the same as a worker up: then wait for the first real answer.
        return [
            f"http://127.0.0.1:{self.ports['management']}/models/forecaster",
            f"{self.url}/ping",
        ]

    def start(self) -> None:
        if shutil.which("java") is None:
            raise RuntimeError("TorchServe needs Java (17) on PATH; none found")
        archive_model(self.model_dir, self.store, self.log)
        self.config.write_text(
            torchserve_config(
                TORCHSERVE_DIR / "config.properties",
                self.store,
                self.ports,
                self.batch_size,
                self.max_batch_delay_ms,
            )
        )
        super().start()

    def stop(self) -> None:
        if self.process is not None and not self._stopped:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    [str(BIN / "torchserve"), "--stop"],
                    env=self.env,
                    cwd=self.work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=30,
                )
        super().stop()

    def stats(self) -> tuple[int, int]:
        """(model calls, series) the handler has counted so far; (0, 0) before its first call."""
        try:
            fields = self.stats_file.read_text().split()
            return int(fields[0]), int(fields[1])
        except (OSError, IndexError, ValueError):
            return 0, 0


def archive_model(model_dir: Path, store: Path, log_path: Path) -> Path:
    """Pack model.ts, metadata.json and the handler into `store/forecaster.mar`."""
    store.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "torch-model-archiver"),
        "--model-name",
        "forecaster",
        "--version",
        "1.0",
        "--serialized-file",
        str(model_dir / "model.ts"),
        "--handler",
        str(TORCHSERVE_DIR / "handler.py"),
        "--extra-files",
        str(model_dir / "metadata.json"),
        "--export-path",
        str(store),
        "--force",
    ]
    with log_path.open("ab") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    return store / "forecaster.mar"


def torchserve_config(
    template: Path, store: Path, ports: Mapping[str, int], batch_size: int, delay_ms: int
) -> str:
    """config.properties text from the template, with ports, store and batching filled in."""
    return string.Template(template.read_text()).substitute(
        inference_port=ports["inference"],
        management_port=ports["management"],
        metrics_port=ports["metrics"],
        model_store=str(store),
        batch_size=batch_size,
        max_batch_delay_ms=delay_ms,
    )

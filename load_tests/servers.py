"""Starting, probing and stopping the servers under test, and reading their CPU time.

Every server runs in its own session (process group), pinned with `taskset`, bound to
127.0.0.1 on a free port, and is stopped by PID (group SIGTERM, then SIGKILL) on the
way out of its `with` block, whatever happened inside.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TORCHSERVE_DIR = Path(__file__).resolve().parent / "torchserve"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """`command` under `taskset -c core` (its children inherit the affinity)."""
    if core is None:
        return list(command)
    return ["taskset", "-c", str(core), *command]


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its live descendants, in seconds."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group (and any descendant that left it), then SIGKILL what stays."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


@dataclass
class Server:
    """A running server: its root process, base URL, and where its log goes."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    predict_path: str
    metrics_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, probe_url: str, timeout_s: float) -> None:
        """Poll `probe_url` until it answers 200; raise with the log's tail if it never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(probe_url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")


def _launch(
    name: str, command: list[str], env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: one killpg stops it all
        )
    finally:
        log.close()


@contextlib.contextmanager
def bentoml_server(
    model_dir: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    core: int | None = None,
    name: str = "ours",
    ready_timeout_s: float = 120.0,
) -> Iterator[Server]:
    """`bentoml serve` from the project root on a free port, ready (/readyz) on entry."""
    port = free_port()
    command = pinned(
        [str(BIN / "bentoml"), "serve", "--host", "127.0.0.1", "--port", str(port)], core
    )
    full_env = {
        "FORECASTER_MODEL": str(model_dir),
        # Its own home: BentoML clears its prometheus multiprocess directory at start-up,
        # which would wipe the metrics of another service already up beside it.
        "BENTOML_HOME": str(log_dir / f"bentoml-home-{name}"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log_path = log_dir / f"{name}.log"
    process = _launch(name, command, full_env, ROOT, log_path)
    base = f"http://127.0.0.1:{port}"
    server = Server(name, process, base, log_path, "/forecast", metrics_url=f"{base}/metrics")
    try:
        server.wait_ready(f"{base}/readyz", ready_timeout_s)
        yield server
    finally:
        stop_group(process)


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


@contextlib.contextmanager
def torchserve_server(
    model_dir: Path,
    log_dir: Path,
    batch_size: int,
    max_batch_delay_ms: int,
    core: int | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[Server]:
    """TorchServe serving the same model.ts through `handler.py`, one worker, own batching."""
    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java (17) on PATH; none found")
    work = Path(tempfile.mkdtemp(prefix="torchserve-", dir=log_dir))
    store = work / "store"
    log_path = log_dir / "torchserve.log"
    archive_model(model_dir, store, log_path)
    ports = {k: free_port() for k in ("inference", "management", "metrics")}
    config = work / "config.properties"
    config.write_text(
        torchserve_config(
            TORCHSERVE_DIR / "config.properties", store, ports, batch_size, max_batch_delay_ms
        )
    )
    stats = work / "handler-stats.txt"
    env = {
        # TorchServe keeps its pid file in the temp dir: a private one keeps runs apart.
        "TMPDIR": str(work),
        "LOG_LOCATION": str(work / "logs"),
        "METRICS_LOCATION": str(work / "logs"),
        "FORECASTER_TS_STATS": str(stats),
        "FORECASTER_TORCH_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = pinned(
        [
            str(BIN / "torchserve"),
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--model-store",
            str(store),
            "--ts-config",
            str(config),
            "--log-config",
            str(TORCHSERVE_DIR / "log4j2.xml"),
        ],
        core,
    )
    process = _launch("torchserve", command, env, work, log_path)
    base = f"http://127.0.0.1:{ports['inference']}"
    server = Server(
        "torchserve",
        process,
        base,
        log_path,
        "/predictions/forecaster",
        extra={"stats_file": str(stats), "config": str(config)},
    )
    try:
        server.wait_ready(
            f"http://127.0.0.1:{ports['management']}/models/forecaster", ready_timeout_s
        )
        # Registered is not the same as a worker up: wait for the first real answer.
        server.wait_ready(f"{base}/ping", ready_timeout_s)
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [str(BIN / "torchserve"), "--stop"],
                env={**os.environ, **env},
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
        stop_group(process)


def read_torchserve_stats(server: Server) -> tuple[int, int]:
    """(model calls, series) the handler has counted so far; (0, 0) before its first call."""
    try:
        fields = Path(server.extra["stats_file"]).read_text().split()
        return int(fields[0]), int(fields[1])
    except (OSError, IndexError, ValueError, KeyError):
        return 0, 0

"""Metrics across worker processes: what a worker that is gone leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from service.metrics import forget_dead_processes

# A stand-in worker: the service's two live-summed gauges and a counter, then it waits
# for stdin to close (or exits at once with "exit").
WORKER = """
import sys
from prometheus_client import Counter, Gauge
Gauge("forecaster_requests_in_progress", "", multiprocess_mode="livesum").set({in_progress})
Gauge("forecaster_queue_series", "", multiprocess_mode="livesum").set({queued})
Counter("forecaster_requests", "").inc({answered})
print("ready", flush=True)
if sys.argv[1] != "exit":
    sys.stdin.read()
"""


def worker(directory: Path, mode: str, **values: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(**values), mode],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def summed(directory: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return {s.name: s.value for family in registry.collect() for s in family.samples}


def test_a_gone_workers_gauges_leave_the_sums_and_its_counters_stay(tmp_path: Path) -> None:
    """Guards against a killed worker's last in-progress and queued counts staying in the
    summed gauges for ever (prometheus-client keeps each process's file until it is
    marked dead, which a SIGKILLed worker never does)."""
    live = worker(tmp_path, "wait", in_progress=1, queued=2, answered=5)
    reaped = worker(tmp_path, "exit", in_progress=3, queued=40, answered=7)
    reaped.wait()
    zombie = worker(tmp_path, "exit", in_progress=4, queued=50, answered=11)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline  # killed, not yet reaped by its parent
        time.sleep(0.01)
    try:
        assert summed(tmp_path)["forecaster_requests_in_progress"] == 8
        assert forget_dead_processes(str(tmp_path)) == sorted([reaped.pid, zombie.pid])
        after = summed(tmp_path)
        assert after["forecaster_requests_in_progress"] == 1
        assert after["forecaster_queue_series"] == 2
        assert after["forecaster_requests_total"] == 5 + 7 + 11
        assert forget_dead_processes(str(tmp_path)) == []
    finally:
        live.communicate()
        zombie.wait()


def test_without_a_multiprocess_directory_there_is_nothing_to_forget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert forget_dead_processes() == []
    assert forget_dead_processes(str(tmp_path / "absent")) == []

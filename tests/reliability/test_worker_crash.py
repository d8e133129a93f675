"""Worker crash: SIGKILL one of two workers during load; the service recovers by itself.

Failures are counted raw (the load generator never retries): only the requests that
the killed worker held at that instant can be lost, since the shared socket sends new
connections to the surviving worker while BentoML's arbiter starts a replacement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from bench.loadgen import LoadResult
from bench.metrics import sample, scrape
from bench.servers import Server, serve_env
from tests.reliability.common import closed_loop, report
from tests.service.faulty_model import SLOW_LAST, write_faulty_artifact

pytestmark = pytest.mark.slow

CLIENTS = 8
KILL_AFTER_S = 3.0


def worker_pids(server: Server) -> set[int]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    found = set()
    for child in children:
        try:  # a killed worker not yet reaped is a zombie, whose command line is gone
            if "_bentoml_impl.worker.service" in " ".join(child.cmdline()):
                found.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def connections(pid: int, port: int) -> int:
    """Established client connections that worker `pid` serves on `port`."""
    found = psutil.Process(pid).net_connections(kind="tcp")
    return sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in found)


def wait_warmed_up(server: Server, workers: int, timeout_s: float = 60.0) -> None:
    """Until `workers` workers (replacements included) have finished their warm-up: a new
    worker's process is listed well before it has loaded the service."""
    deadline = time.monotonic() + timeout_s
    while server.log.read_text(errors="replace").count(WARMED_UP) < workers:
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.2)


WARMED_UP = "Completed async startup hook: warm_up"


def test_killed_worker_is_replaced_and_only_its_in_flight_requests_fail(
    tiny_artifact: Path, bentoml_home: Path
) -> None:
    """Guards against a crashed worker taking the service down or staying dead, or its
    last in-progress and queued counts staying in the summed gauges."""
    env = serve_env(tiny_artifact, bentoml_home, workers="2")
    with Server(env) as server:
        workers = worker_pids(server)
        assert len(workers) == 2, workers

        async def scenario() -> tuple[LoadResult, int, int]:
            load = asyncio.create_task(closed_loop(server.url, CLIENTS, 10.0, seed=41))
            await asyncio.sleep(KILL_AFTER_S)
            # The worker holding the most client connections: the worst case to lose.
            held = {pid: connections(pid, server.port) for pid in workers}
            victim = max(held, key=lambda pid: held[pid])
            os.kill(victim, signal.SIGKILL)
            return await load, victim, held[victim]

        started = time.perf_counter()
        tally, victim, victim_connections = asyncio.run(scenario())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replaced = worker_pids(server)
            if len(replaced) == 2 and victim not in replaced:
                break
            time.sleep(0.5)
        after = [
            httpx.post(
                f"{server.url}/forecast", json={"series": [{"values": [1.0, 2, 3, 4]}]}, timeout=30
            ).status_code
            for _ in range(20)
        ]
        elapsed = time.perf_counter() - started
        # Nothing is in flight now: summed over the live workers, both gauges are 0.
        wait_warmed_up(server, 3)
        gauges = scrape(server)
    failed = [o for o in tally.outcomes if o.status not in (200, 503)]
    window = [o.sent_at - KILL_AFTER_S for o in failed]
    report(
        "worker_crash",
        sent=len(tally.outcomes),
        answered_200=tally.statuses[200],
        answered_503=tally.statuses[503],
        failed=len(failed),
        failure_kinds=",".join(sorted({o.error or str(o.status) for o in failed})) or "none",
        victim_connections=victim_connections,
        failed_sent_from_s=round(min(window, default=0.0), 2),
        failed_sent_to_s=round(max(window, default=0.0), 2),
        replaced=victim not in replaced and len(replaced) == 2,
        after_200=after.count(200),
        in_progress_after=sample(gauges, "forecaster_requests_in_progress"),
        queue_series_after=sample(gauges, "forecaster_queue_series"),
        wall_s=round(elapsed, 1),
    )
    assert victim not in replaced and len(replaced) == 2, (workers, replaced)
    assert after == [200] * 20
    # Only what the killed worker held: at most one request per client in flight.
    assert len(failed) <= CLIENTS, failed
    assert all(o.status == 0 for o in failed), failed
    # The killed worker's last values are not kept in the sums (guards against a gauge
    # that reads "requests in progress" for ever after a crash).
    assert sample(gauges, "forecaster_requests_in_progress") == 0
    assert sample(gauges, "forecaster_queue_series") == 0


def test_a_killed_workers_in_progress_and_queued_counts_leave_the_summed_gauges(
    tiny_artifact: Path, bentoml_home: Path, tmp_path: Path
) -> None:
    """Guards against the gauges summed over workers keeping a SIGKILLed worker's last
    values for ever: its requests in progress and series queued at death, read as load
    that never ends (prometheus-client keeps a process's gauge file until it is marked
    dead, which a killed worker never does)."""
    model = write_faulty_artifact(tiny_artifact, tmp_path / "slow", slow_steps=2000)
    slow = {"series": [{"values": [1.0, 2, 3, SLOW_LAST]}]}
    env = serve_env(model, bentoml_home, workers="2")
    with Server(env) as server:
        workers = worker_pids(server)

        def gauge(name: str) -> float:
            return sample(scrape(server), name)

        with ThreadPoolExecutor(4) as pool:  # one connection each, spread over the workers
            held = [
                pool.submit(httpx.post, f"{server.url}/forecast", json=slow, timeout=60)
                for _ in range(4)
            ]
            deadline = time.monotonic() + 30
            while gauge("forecaster_requests_in_progress") < 4:
                assert time.monotonic() < deadline, "the slow requests never were in progress"
                time.sleep(0.05)
            by_worker = {pid: connections(pid, server.port) for pid in workers}
            victim = max(by_worker, key=lambda pid: by_worker[pid])
            os.kill(victim, signal.SIGKILL)
            statuses = [0 if f.exception() else f.result().status_code for f in held]
        deadline = time.monotonic() + 60
        while len(replaced := worker_pids(server)) < 2 or victim in replaced:
            assert time.monotonic() < deadline, replaced
            time.sleep(0.5)
        wait_warmed_up(server, 3)  # the replacement forgets the victim's gauges as it starts
        ok = httpx.post(f"{server.url}/forecast", json={"series": [{"values": [1.0, 2, 3, 4]}]})
        after = scrape(server)
    report(
        "worker_crash_gauges",
        victim_connections=by_worker[victim],
        answered_200=statuses.count(200),
        lost=statuses.count(0),
        in_progress_after=sample(after, "forecaster_requests_in_progress"),
        queue_series_after=sample(after, "forecaster_queue_series"),
    )
    assert by_worker[victim] >= 2  # 4 requests on 2 workers: it held at least 2
    assert (statuses.count(0), statuses.count(200)) == (by_worker[victim], 4 - by_worker[victim])
    assert ok.status_code == 200
    assert sample(after, "forecaster_requests_in_progress") == 0
    assert sample(after, "forecaster_queue_series") == 0

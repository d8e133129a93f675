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
from pathlib import Path

import httpx
import psutil
import pytest

from bench.loadgen import LoadResult
from bench.servers import Server, serve_env
from tests.reliability.common import closed_loop, report

pytestmark = pytest.mark.slow

CLIENTS = 8
KILL_AFTER_S = 3.0


def worker_pids(server: Server) -> set[int]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return {p.pid for p in children if "_bentoml_impl.worker.service" in " ".join(p.cmdline())}


def connections(pid: int, port: int) -> int:
    """Established client connections that worker `pid` serves on `port`."""
    found = psutil.Process(pid).net_connections(kind="tcp")
    return sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in found)


def test_killed_worker_is_replaced_and_only_its_in_flight_requests_fail(
    tiny_artifact: Path, bentoml_home: Path
) -> None:
    """Guards against a crashed worker taking the service down or staying dead."""
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
        wall_s=round(elapsed, 1),
    )
    assert victim not in replaced and len(replaced) == 2, (workers, replaced)
    assert after == [200] * 20
    # Only what the killed worker held: at most one request per client in flight.
    assert len(failed) <= CLIENTS, failed
    assert all(o.status == 0 for o in failed), failed

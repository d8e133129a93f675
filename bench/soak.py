"""Soak test: minutes of mixed load against a real `bentoml serve`; leaks show as trends.

    .venv/bin/python -m bench.soak                 # 10 minutes, models/m3-monthly (make soak)
    .venv/bin/python -m bench.soak --minutes 1     # a short run

The server is pinned to CPU 0 and this client (bench/loadgen.py) to CPU 1 (`taskset`; see
BENCHMARKS.md, method). Every `--sample-s` seconds it records the server's RSS (all its processes),
open file descriptors and the window's latency; it prints one `RELIABILITY: soak_window
...` line per window and a start-vs-end summary. Exit status 1 on any 5xx, any request
without an answer, a mixed-up answer, or growth beyond noise (RSS or fds of the last
windows over the first windows after warm-up, beyond the thresholds below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.loadgen import Outcome, Request, Traffic, closed_loop, prebuilt_request, quantile
from bench.servers import ROOT, Server

RSS_GROWTH_MB = 30.0  # beyond allocator noise for a ~700 MB process tree
FD_GROWTH = 10


@dataclass
class Window:
    """What one sampling window saw."""

    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        key = outcome_key(outcome)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if key in ("forecast_200", "mixed_up"):
            self.latencies.append(outcome.seconds)


def outcome_key(outcome: Outcome) -> str:
    """`forecast_200`, `model_200`, `forecast_422`, ..., `mixed_up`, `error_<what failed>`."""
    if outcome.status == -1:
        return "mixed_up"
    if outcome.status == 0:
        return f"error_{outcome.error}"
    return f"{outcome.kind}_{outcome.status}"


def server_usage(server: Server) -> tuple[float, int]:
    """RSS in MB and open file descriptors, summed over the server's processes."""
    rss, fds = 0, 0
    for pid in server.pids():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process = psutil.Process(pid)
            rss += process.memory_info().rss
            fds += process.num_fds()
    return rss / 2**20, fds


def series(rng: random.Random, n: int, lo: int, hi: int, tag: str) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        level = rng.uniform(10, 5000)
        values = [round(level * (1 + 0.1 * rng.gauss(0, 1)), 3) for _ in range(rng.randint(lo, hi))]
        out.append({"id": f"{tag}-{i}", "values": values})
    return out


def mixed_traffic(url: str, card: dict[str, Any]) -> Traffic:
    """The soak's mix: mostly one series, some of 2 to 32 at horizon 3, bad bodies,
    `GET /model` and `GET /metrics`; each user draws from its own seeded generator."""
    lo, hi = int(card["min_history"]), int(card["max_history"]) + 20
    rngs: dict[int, random.Random] = {}
    bad = [b'{"series": [{"values": [1, NaN]}]}', b'{"series": [', b"{}"]

    def forecast(payload: dict[str, Any]) -> Request:
        ids = tuple(s["id"] for s in payload["series"])
        return Request(prebuilt_request(url, orjson.dumps(payload)), ids)

    def traffic(user: int, turn: int) -> Request:
        rng = rngs.setdefault(user, random.Random(user))
        tag = f"c{user}r{turn + 1}"
        roll = rng.random()
        if roll < 0.65:
            return forecast({"series": series(rng, 1, lo, hi, tag)})
        if roll < 0.85:
            return forecast({"series": series(rng, rng.randint(2, 32), lo, hi, tag), "horizon": 3})
        if roll < 0.93:
            return Request(prebuilt_request(url, rng.choice(bad)))
        if roll < 0.97:
            return Request(prebuilt_request(url, method="GET", path="/model"), kind="model")
        return Request(prebuilt_request(url, method="GET", path="/metrics"), kind="metrics")

    return traffic


async def soak(
    server: Server, minutes: float, clients: int, sample_s: float
) -> list[dict[str, Any]]:
    card = httpx.get(f"{server.url}/model", timeout=10).json()
    windows: list[dict[str, Any]] = []
    current = Window()
    started = time.perf_counter()
    deadline = started + 60 * minutes

    async def sampler() -> None:
        nonlocal current
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(sample_s, max(0.0, deadline - time.perf_counter())))
            window, current = current, Window()
            rss, fds = server_usage(server)
            row = {
                "t_s": round(time.perf_counter() - started, 1),
                "requests": sum(window.statuses.values()),
                "rss_mb": round(rss, 1),
                "fds": fds,
                "p50_ms": round(1000 * quantile(window.latencies, 0.5), 2),
                "p99_ms": round(1000 * quantile(window.latencies, 0.99), 2),
                "statuses": dict(sorted(window.statuses.items())),
            }
            windows.append(row)
            print(f"RELIABILITY: soak_window {json.dumps(row, separators=(',', ':'))}", flush=True)

    url = server.url + server.predict_path
    await asyncio.gather(
        sampler(),
        closed_loop(
            url,
            clients,
            mixed_traffic(url, card),
            60 * minutes,
            on_outcome=lambda outcome: current.add(outcome),
        ),
    )
    return windows


def verdict(windows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Start vs end over the windows after the first (warm-up); problems found."""
    body = windows[1:] if len(windows) > 2 else windows
    k = max(1, len(body) // 4)
    start, end = body[:k], body[-k:]
    totals: dict[str, int] = {}
    for w in windows:
        for key, n in w["statuses"].items():
            totals[key] = totals.get(key, 0) + n
    summary = {
        "windows": len(windows),
        "requests": sum(totals.values()),
        "rss_start_mb": round(statistics.mean(w["rss_mb"] for w in start), 1),
        "rss_end_mb": round(statistics.mean(w["rss_mb"] for w in end), 1),
        "fds_start": round(statistics.mean(w["fds"] for w in start), 1),
        "fds_end": round(statistics.mean(w["fds"] for w in end), 1),
        "p50_start_ms": round(statistics.median(w["p50_ms"] for w in start), 2),
        "p50_end_ms": round(statistics.median(w["p50_ms"] for w in end), 2),
        "p99_start_ms": round(statistics.median(w["p99_ms"] for w in start), 2),
        "p99_end_ms": round(statistics.median(w["p99_ms"] for w in end), 2),
        "outcomes": dict(sorted(totals.items())),
    }
    problems = [key for key in totals if key.startswith(("error_", "mixed")) or "_5" in key]
    if summary["rss_end_mb"] - summary["rss_start_mb"] > RSS_GROWTH_MB:
        problems.append(f"RSS grew more than {RSS_GROWTH_MB} MB")
    if summary["fds_end"] - summary["fds_start"] > FD_GROWTH:
        problems.append(f"file descriptors grew by more than {FD_GROWTH}")
    return summary, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--model", default=str(ROOT / "models" / "m3-monthly"))
    parser.add_argument("--json", type=Path, help="also write windows and summary here")
    args = parser.parse_args(argv)
    sample_s = min(args.sample_s, 60 * args.minutes / 4)
    env = {"FORECASTER_MODELS": args.model, "BENTOML_DO_NOT_TRACK": "True"}
    with Server(env, cpus="0") as server:
        with contextlib.suppress(OSError):  # one CPU only: share it
            os.sched_setaffinity(0, {1})
        windows = asyncio.run(soak(server, args.minutes, args.clients, sample_s))
    summary, problems = verdict(windows)
    summary["problems"] = problems or "none"
    print(f"RELIABILITY: soak_summary {json.dumps(summary, separators=(',', ':'))}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"windows": windows, "summary": summary}, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

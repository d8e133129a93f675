"""Measure adaptive batching: series per model call, throughput, latency, server CPU.

Starts `bentoml serve` on a tiny scripted model (or FORECASTER_MODEL if set) pinned to
CPU 0, drives it from CPU 1 with N concurrent single-series clients over keep-alive
HTTP/1.1 (a hand-rolled client, much lighter than httpx, so that the load generator
does not starve the server), and reads the service's own metrics before and after.

    .venv/bin/python -m tests.service.bench_batching --clients 1 32 --requests 3000 \
        --set max_batch_size=64,max_latency_ms=2000 --json runs/bench_batching.json

Prints one table row per (settings, clients) and writes all rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.service.server import Server, free_port
from tests.service.tiny_model import MAX_HISTORY, MIN_HISTORY, write_tiny_artifact


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return status, await reader.readexactly(length)


def encode(port: int, method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def drive(port: int, clients: int, total: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    bodies = [
        json.dumps(
            {"series": [{"values": [rng.uniform(50, 150) for _ in range(rng.randint(lo, hi))]}]}
        ).encode()
        for lo, hi in [(MIN_HISTORY, MAX_HISTORY)]
        for _ in range(256)
    ]
    latencies: list[float] = []
    errors = 0

    async def client(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for j in range(total // clients):
            raw = encode(port, "POST", "/forecast", bodies[(k * 7919 + j) % len(bodies)])
            started = time.perf_counter()
            status, _ = await request(reader, writer, raw)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "mean_ms": 1000 * sum(latencies) / len(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


async def scrape(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _, body = await request(reader, writer, encode(port, "GET", "/metrics"))
    writer.close()
    return body.decode()


def measure(server: Server, clients: int, total: int) -> dict[str, Any]:
    before = asyncio.run(scrape(server.port))
    cpu0 = cpu_seconds(server.pids())
    row = asyncio.run(drive(server.port, clients, total, seed=clients))
    cpu1 = cpu_seconds(server.pids())
    after = asyncio.run(scrape(server.port))
    calls = metric(after, "forecaster_model_call_series_count") - metric(
        before, "forecaster_model_call_series_count"
    )
    series = metric(after, "forecaster_model_call_series_sum") - metric(
        before, "forecaster_model_call_series_sum"
    )
    row.update(
        clients=clients,
        model_calls=calls,
        series_per_call=series / calls if calls else 0.0,
        server_cpu_ms_per_series=1000 * (cpu1 - cpu0) / max(series, 1),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="comma-separated FORECASTER_ settings for one server, e.g. max_batch_size=32",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.environ.get("FORECASTER_MODEL") or str(write_tiny_artifact(Path(tmp) / "m"))
        print(
            f"{'settings':<40} {'clients':>7} {'rps':>7} {'mean_ms':>8} {'p99_ms':>8} "
            f"{'ser/call':>8} {'cpu_ms/ser':>10} {'errors':>6}"
        )
        for spec in args.set or [""]:
            env = {"FORECASTER_MODEL": model}
            for pair in filter(None, spec.split(",")):
                key, value = pair.split("=", 1)
                env[f"FORECASTER_{key.upper()}"] = value
            with Server(env, port=free_port(), cpus="0") as server:
                for clients in args.clients:
                    row = measure(server, clients, args.requests)
                    row["settings"] = spec or "defaults"
                    rows.append(row)
                    print(
                        f"{row['settings']:<40} {clients:>7} {row['rps']:>7.0f} "
                        f"{row['mean_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                        f"{row['series_per_call']:>8.2f} "
                        f"{row['server_cpu_ms_per_series']:>10.2f} {row['errors']:>6}"
                    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    # The load generator gets the other core.
    os.sched_setaffinity(0, {1})
    main()

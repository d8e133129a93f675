"""`make load`: start the service, run the locustfile headless, stop the service, summarise.

Exits 1 when any request failed (or none was made), so it can gate a release.

    .venv/bin/python -m load_tests.run_load                      # default model, 60 s, 32 users
    .venv/bin/python -m load_tests.run_load --seconds 20 --users 8 --standin
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.servers import BIN, QUIET, ROOT, Server, pinned, serve_env
from bench.standin import write_standin

LOCUSTFILE = ROOT / "load_tests" / "locustfile.py"
DEFAULT_CSV = ROOT / "load_tests" / "results" / "tmp" / "load"


@dataclass(frozen=True)
class Row:
    """One line of locust's `<prefix>_stats.csv`."""

    name: str
    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_s: float


def read_stats(path: Path) -> list[Row]:
    """The rows of a locust stats CSV (per endpoint name, then 'Aggregated')."""
    rows: list[Row] = []
    with path.open(newline="") as f:
        for rec in csv.DictReader(f):
            rows.append(
                Row(
                    name=f"{rec['Type']} {rec['Name']}".strip(),
                    requests=int(rec["Request Count"]),
                    failures=int(rec["Failure Count"]),
                    median_ms=float(rec["Median Response Time"] or 0),
                    p95_ms=float(rec["95%"] if rec["95%"] != "N/A" else "nan"),
                    p99_ms=float(rec["99%"] if rec["99%"] != "N/A" else "nan"),
                    requests_per_s=float(rec["Requests/s"] or 0),
                )
            )
    return rows


def summary(rows: list[Row]) -> str:
    lines = [f"{'endpoint':<34} {'requests':>9} {'failed':>7} {'req/s':>7} {'p50':>6} {'p99':>6}"]
    for r in rows:
        lines.append(
            f"{r.name:<34} {r.requests:>9} {r.failures:>7} {r.requests_per_s:>7.1f} "
            f"{r.median_ms:>6.0f} {r.p99_ms:>6.0f}"
        )
    return "\n".join(lines)


def run_locust(
    host: str, seconds: float, users: int, csv_prefix: Path, core: int | None
) -> subprocess.CompletedProcess[bytes]:
    """Locust headless against `host`; the shape stops it after `seconds`; a timeout bounds it."""
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    command = pinned(
        [
            str(BIN / "locust"),
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            host,
            "--stop-timeout",
            "10",
            "--csv",
            str(csv_prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        core,
    )
    env = {
        **os.environ,
        "FORECASTER_LOAD_USERS": str(users),
        "FORECASTER_LOAD_SECONDS": str(seconds),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(command, cwd=ROOT, env=env, timeout=seconds + 120, check=False)


@contextlib.contextmanager
def model_dir(model: str | None, standin: bool) -> Iterator[Path]:
    if standin:
        with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
            yield write_standin(Path(tmp) / "standin")
        return
    spec = Path(model or os.environ.get("FORECASTER_MODELS", "models/m3-monthly"))
    yield spec if spec.is_absolute() else ROOT / spec


def run(
    model: Path,
    seconds: float,
    users: int,
    csv_prefix: Path,
    server_core: int | None = None,
    client_core: int | None = None,
) -> tuple[int, list[Row]]:
    """Serve `model`, load it, stop it; (exit status, locust's stats rows)."""
    with tempfile.TemporaryDirectory(prefix="load-logs-") as tmp:
        logs = Path(tmp)
        env = {**serve_env(model, logs), **QUIET}
        with Server(env, cpus=server_core, name="service", log=logs / "service.log") as server:
            print(f"[load] service ready at {server.url} (pid {server.pid})", flush=True)
            started = time.monotonic()
            proc = run_locust(server.url, seconds, users, csv_prefix, client_core)
            took = time.monotonic() - started
            print(f"[load] locust exited {proc.returncode} after {took:.0f} s", flush=True)
            log_tail = server.tail(2000)
        stats = Path(f"{csv_prefix}_stats.csv")
        rows = read_stats(stats) if stats.exists() else []
    total = next((r for r in rows if r.name.endswith("Aggregated")), None)
    if total is None or total.requests == 0:
        print("[load] FAILED: no requests were made\n" + log_tail, file=sys.stderr)
        return 1, rows
    if total.failures or proc.returncode != 0:
        failures = Path(f"{csv_prefix}_failures.csv")
        if failures.exists():
            print(failures.read_text()[:3000], file=sys.stderr)
        print(f"[load] FAILED: {total.failures} of {total.requests} requests", file=sys.stderr)
        return 1, rows
    return 0, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model dir (default models/m3-monthly)")
    parser.add_argument("--standin", action="store_true", help="serve an untrained stand-in")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load shape")
    parser.add_argument("--users", type=int, default=32, help="peak concurrent users")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="locust --csv prefix")
    parser.add_argument("--server-core", type=int, default=None, help="taskset the service")
    parser.add_argument("--client-core", type=int, default=None, help="taskset locust")
    args = parser.parse_args(argv)
    with model_dir(args.model, args.standin) as model:
        status, rows = run(
            model, args.seconds, args.users, args.csv, args.server_core, args.client_core
        )
    print(summary(rows))
    print(f"[load] {'OK' if status == 0 else 'FAILED'}; CSV: {args.csv}_*.csv")
    return status


if __name__ == "__main__":
    raise SystemExit(main())

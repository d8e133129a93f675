"""Where a served forecast's CPU goes: py-spy on our service under closed-loop load.

Starts the service pinned to one core, drives it with the benchmark's client from the
other, samples every server process with py-spy for the measured window, and prints
the share of samples spent in each stage (inclusive), so the CPU-ms per forecast can be
set against the in-process limit.

    .venv/bin/python -m bench.profile_server --users 32 --seconds 15
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.benchmark import RESULTS, Probe, model_directory, summarise
from bench.loadgen import from_payloads, run_closed_loop
from bench.servers import BIN, QUIET, Server, serve_env
from load_tests.payloads import payload_pool

# (stage, substrings of a "function (file:line)" frame). Each sample goes to the stage of
# its deepest matching frame, so the shares are exclusive and add up to 100 %.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("model forward (TorchScript)", ("forward (service/engine.py",)),
    ("batching: plan/collate/scatter", ("service/batching.py",)),
    ("batcher: queue and model thread", ("service/batcher.py", "concurrent/futures/")),
    ("request guard: body read + validation", ("service/guard.py", "service/schemas.py")),
    ("engine: request in, response out", ("service/engine.py",)),
    ("BentoML API layer (args, serde)", ("_bentoml_impl/", "_bentoml_sdk/")),
    (
        "BentoML access log, HTTP metrics, traffic",
        ("http/access.py", "http/instruments.py", "http/traffic.py", "_internal/context.py"),
    ),
    ("prometheus_client", ("prometheus_client/",)),
    (
        "OpenTelemetry tracing",
        ("opentelemetry", "asgi/__init__.py", "trace/", "context/__init__.py", "_semconv.py"),
    ),
    ("logging", ("logging/__init__.py", "bentoml/_internal/log.py")),
    ("JSON encode/decode", ("json/",)),
    ("uvicorn + h11 (HTTP)", ("uvicorn/", "h11/")),
    ("starlette (routing, request, response)", ("starlette/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
]


def stage_of(stack: str) -> str:
    """The stage of one collapsed stack (root;...;leaf): its deepest matching frame's."""
    for frame in reversed(stack.split(";")):
        for label, needles in STAGES:
            if any(n in frame for n in needles):
                return label
    return "other"


def stacks(collapsed: str) -> Iterator[tuple[str, int]]:
    """(stack, samples) for each line of py-spy's collapsed ('raw') output."""
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            yield stack, int(n)


def stage_shares(collapsed: str) -> list[tuple[str, float]]:
    """Exclusive share of samples per stage from py-spy's collapsed ('raw') output."""
    counts: collections.Counter[str] = collections.Counter()
    for stack, n in stacks(collapsed):
        counts[stage_of(stack)] += n
    total = sum(counts.values())
    labels = [label for label, _ in STAGES] + ["other"]
    return [(label, counts[label] / total if total else 0.0) for label in labels]


def top_leaves(collapsed: str, k: int = 15) -> list[tuple[str, float]]:
    """The `k` functions with the most self samples, as shares."""
    counts: collections.Counter[str] = collections.Counter()
    for stack, n in stacks(collapsed):
        counts[stack.split(";")[-1]] += n
    total = sum(counts.values())
    return [(leaf, n / total) for leaf, n in counts.most_common(k)] if total else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/m3-monthly"))
    parser.add_argument("--standin", action="store_true")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the service (repeatable)"
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    os.sched_setaffinity(0, {args.client_core})
    args.out.mkdir(parents=True, exist_ok=True)
    single = payload_pool(1, 512, seed=1)
    # Raw stacks are large: they go to the git-ignored tmp/; the summary sits beside them.
    (args.out / "tmp").mkdir(parents=True, exist_ok=True)
    raw = args.out / "tmp" / f"profile-ours-{args.users}users.collapsed.txt"
    summary_path = args.out / f"profile-ours-{args.users}users.txt"
    bench_args = argparse.Namespace(model=args.model, standin=args.standin)
    with (
        model_directory(bench_args) as model_dir,
        tempfile.TemporaryDirectory() as logs,
        Server(
            {**serve_env(model_dir, Path(logs)), **QUIET, **env},
            cpus=args.server_core,
            name="ours",
            log=Path(logs) / "ours.log",
        ) as server,
    ):
        horizon = int(json.loads((model_dir / "metadata.json").read_text())["horizon"])
        probe = Probe(server)
        spy: list[subprocess.Popen[bytes]] = []

        async def start() -> object:
            # py-spy runs on the client core so that sampling does not slow the server.
            spy.append(
                subprocess.Popen(
                    [
                        "taskset", "-c", str(args.client_core), py_spy, "record",
                        "--pid", str(server.pid), "--subprocesses", "--format", "raw",
                        "--rate", "200", "--duration", str(int(args.seconds)),
                        "--output", str(raw), "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            return await probe.start()

        url = server.url + server.predict_path
        traffic = from_payloads(url, single, horizon)
        result = run_closed_loop(url, args.users, traffic, args.seconds, 3.0, start, probe.end)
        spy[0].wait(timeout=args.seconds + 60)
    point = summarise(result)
    collapsed = raw.read_text(errors="replace")
    lines = [
        f"{args.users} users: {point['requests_per_s']:.1f} req/s, p99 {point['p99_ms']:.1f} ms, "
        f"server CPU {point['cpu_ms_per_series']:.2f} ms/forecast, "
        f"{point['series_per_call']:.1f} series/call, errors {point['errors']}",
        "",
        "share of server samples by stage (deepest matching frame):",
        *(f"  {100 * share:5.1f} %  {label}" for label, share in stage_shares(collapsed)),
        "",
        "functions with the most self samples:",
        *(f"  {100 * share:5.1f} %  {leaf}" for leaf, share in top_leaves(collapsed)),
    ]
    text = "\n".join(lines) + "\n"
    summary_path.write_text(text)
    print(text)
    print(f"summary: {summary_path}; collapsed stacks (flamegraph.pl, speedscope.app): {raw}")


if __name__ == "__main__":
    main()

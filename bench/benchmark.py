"""`make bench`: every serving contender measured side by side, in one run, on the same model.

Contenders (same `model.ts`, same M3 monthly payloads, each warmed up first):

- **limit**: the model called in-process (bench/limit.py), packed and plain padded;
- **ours**: `bentoml serve` with adaptive batching, as shipped;
- **nobatch**: the same service with batching off;
- **torchserve**: TorchServe 0.12 with its own batching, one worker, our handler;
- **ours@REF** (`--baseline REF`): the service's code at a git ref, from a temporary
  worktree, serving the same model folder: is the current code as fast as it was?

The servers (and all their processes) run on one core, this script (the closed-loop load
generator, bench/loadgen.py) on another. Server CPU time is the utime + stime of the
server's whole process tree over the measured window. Writes
`bench/results/bench-<UTC>.json` (git-ignored) and `latest.json`, `throughput_vs_p99.png`,
and the tables into BENCHMARKS.md between its marker comments.

    .venv/bin/python -m bench                       # full run, ~15 min (make bench)
    .venv/bin/python -m bench --duration 5 --reps 1 --standin   # smoke run
    .venv/bin/python -m bench --contenders limit,ours --baseline 8e41dfe --users 32 \
        --bulk-users 0 --repository models            # ours against its past self
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.loadgen import LoadResult, from_payloads, run_closed_loop
from bench.metrics import scrape, total
from bench.servers import QUIET, ROOT, Server, TorchServe, serve_env
from bench.standin import write_standin
from load_tests.payloads import Payload, m3_monthly, payload_pool

RESULTS = ROOT / "bench" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def nobatch_env() -> dict[str, str]:
    """Environment that turns the service's batching off.

    Uses a boolean batching setting when the service has one; until then a batch of at
    most one series (each series alone through the batcher's queue) is the nearest thing.
    """
    from service.settings import Settings

    for name in ("batching", "adaptive_batching", "enable_batching"):
        if name in Settings.model_fields:
            return {f"FORECASTER_{name.upper()}": "false"}
    return {"FORECASTER_MAX_BATCH_SIZE": "1"}


@contextlib.contextmanager
def git_worktree(ref: str, repo: Path = ROOT) -> Iterator[tuple[Path, str]]:
    """(path, commit) of a detached worktree of `ref` under a temporary directory.

    Removed on the way out, whatever happened inside: `git worktree remove --force`, then
    the directory itself and git's record of it (`git worktree prune`).
    """
    commit = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    parent = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    tree = parent / commit[:12]
    try:
        _git(repo, "worktree", "add", "--detach", str(tree), commit)
        yield tree, commit
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _git(repo, "worktree", "prune")


def _git(repo: Path, *command: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *command], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["git", *command], done.stdout, done.stderr
        )
    return done.stdout.strip()


def baseline_name(ref: str) -> str:
    return f"ours@{ref}"


def baseline_env(model_dir: Path) -> dict[str, str]:
    """The model named in both settings: `FORECASTER_MODEL` (one model, the code before
    the model repository) and `FORECASTER_MODELS` (the repository), so either code finds it."""
    return {"FORECASTER_MODEL": str(model_dir), "FORECASTER_MODELS": str(model_dir)}


def repository_env(repository: Path, model_dir: Path) -> dict[str, str]:
    """Serve every model of `repository`; a request naming none goes to `model_dir`'s."""
    if model_dir.parent.resolve() != repository.resolve():
        raise SystemExit(f"--model {model_dir} is not a model of --repository {repository}")
    return {"FORECASTER_MODELS": str(repository), "FORECASTER_DEFAULT_MODEL": model_dir.name}


def ratios(ours: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours against the baseline at each load point: req/s and server CPU per series.

    Each point's figures are medians over its windows; the windows themselves (req/s)
    come along, paired in the order they ran.
    """
    pairs = list(zip(ours["single"], baseline["single"], strict=True))
    if ours.get("bulk") and baseline.get("bulk"):
        pairs.append((ours["bulk"], baseline["bulk"]))
    out = []
    for mine, theirs in pairs:
        if (mine["users"], mine["series_per_request"]) != (
            theirs["users"],
            theirs["series_per_request"],
        ):
            raise ValueError(f"points differ: {mine['users']} users vs {theirs['users']}")
        out.append(
            {
                "users": mine["users"],
                "series_per_request": mine["series_per_request"],
                "requests_per_s": (mine["requests_per_s"], theirs["requests_per_s"]),
                "requests_per_s_ratio": _ratio(mine["requests_per_s"], theirs["requests_per_s"]),
                "cpu_ms_per_series": (mine["cpu_ms_per_series"], theirs["cpu_ms_per_series"]),
                "cpu_ms_per_series_ratio": _ratio(
                    mine["cpu_ms_per_series"], theirs["cpu_ms_per_series"]
                ),
                "windows_requests_per_s": (
                    mine["rep_requests_per_s"],
                    theirs["rep_requests_per_s"],
                ),
                "p99_ms": (mine["p99_ms"], theirs["p99_ms"]),
                "errors": (mine["errors"], theirs["errors"]),
            }
        )
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def baseline_floor(rows: list[dict[str, Any]], name: str, users: int = 32) -> dict[str, Any]:
    """The requirement on a change: req/s of single-series requests at `users` within 5 %
    of the baseline's."""
    ratio = next(
        (
            r["requests_per_s_ratio"]
            for r in rows
            if r["users"] == users and r["series_per_request"] == 1
        ),
        None,
    )
    return {
        "floor": f"req/s at {users} users, ours / {name}",
        "measured": ratio,
        "needed": ">= 0.95",
        "passed": ratio is not None and ratio >= 0.95,
    }


def baseline_markdown(result: dict[str, Any]) -> str:
    """The baseline comparison as a markdown block; empty when no baseline ran."""
    baseline = result["config"].get("baseline")
    if not baseline:
        return ""
    name = baseline["name"]
    compared = result.get("baseline") or {}
    lines = [
        "",
        f"**Ours against `{name}`** (`--baseline {baseline['ref']}`, commit "
        f"{baseline['commit'][:12]}, run from a temporary git worktree with "
        f"{_env_md(baseline['env'])}; ours with {_env_md(baseline['ours_env'])}), measured "
        "in turns with the others. Each ratio is ours / baseline, of the medians.",
        "",
    ]
    if not compared.get("ratios"):
        return "\n".join([*lines, f"Not compared: {compared.get('error', 'no ratios')}", ""])
    lines += [
        f"| load | req/s ours | req/s {name} | ratio | windows, ours | windows, {name} "
        f"| CPU-ms / series ours | CPU-ms / series {name} | ratio | p99 ms | errors |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---|---|",
    ]
    for r in compared["ratios"]:
        load = f"{r['users']} users" + (
            f" × {r['series_per_request']} series" if r["series_per_request"] > 1 else ""
        )
        mine, theirs = r["windows_requests_per_s"]
        lines.append(
            f"| {load} | {_num(r['requests_per_s'][0], 1)} | {_num(r['requests_per_s'][1], 1)} "
            f"| {_num(r['requests_per_s_ratio'], 3)} "
            f"| {', '.join(_num(w, 0) for w in mine)} | {', '.join(_num(w, 0) for w in theirs)} "
            f"| {_num(r['cpu_ms_per_series'][0], 3)} | {_num(r['cpu_ms_per_series'][1], 3)} "
            f"| {_num(r['cpu_ms_per_series_ratio'], 3)} "
            f"| {_num(r['p99_ms'][0], 1)} / {_num(r['p99_ms'][1], 1)} "
            f"| {r['errors'][0]} / {r['errors'][1]} |"
        )
    return "\n".join(lines) + "\n"


def _env_md(env: dict[str, str]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in env.items()) or "nothing"


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def call_series(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of `forecaster_model_call_series` in a /metrics page; (0, 0) if absent."""
    name = "forecaster_model_call_series"
    return total(metrics_text, f"{name}_sum"), total(metrics_text, f"{name}_count")


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "load_before": round(os.getloadavg()[0], 2),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "bentoml", "torchserve", "httptools", "uvloop", "locust"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = "absent"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        out["java"] = java.stderr.splitlines()[0].split('"')[1]
    return out


class Probe:
    """Reads a server's CPU time, its series-per-model-call counters and the load
    generator's own CPU time (this process: is the client the bottleneck?) at window edges."""

    def __init__(self, server: Server, idle: Sequence[Server] = ()) -> None:
        self.server = server
        self.idle = list(idle)  # the other contenders, up and idle on the same core

    def idle_cpu(self) -> float:
        return sum(other.cpu_seconds() for other in self.idle)

    async def counters(self) -> tuple[float, float]:
        if isinstance(self.server, TorchServe):
            calls, series = self.server.stats()
            return float(series), float(calls)
        if self.server.metrics_url is None:
            return 0.0, 0.0
        # In a thread: the users go on sending meanwhile, as they would with any client.
        return call_series(await asyncio.to_thread(scrape, self.server))

    async def start(self) -> tuple[float, tuple[float, float], float, float]:
        counters = await self.counters()  # before the CPU reading: /metrics costs CPU too
        return self.server.cpu_seconds(), counters, time.process_time(), self.idle_cpu()

    async def end(self) -> tuple[float, tuple[float, float], float, float]:
        cpu, client, idle = self.server.cpu_seconds(), time.process_time(), self.idle_cpu()
        return cpu, await self.counters(), client, idle


def summarise(result: LoadResult) -> dict[str, Any]:
    """One repetition's figures, server CPU and series per call included."""
    (cpu0, (s0, c0), client0, idle0), (cpu1, (s1, c1), client1, idle1) = (
        result.before,
        result.after,
    )
    served = result.ok * result.series_per_request
    return {
        "users": result.users,
        "series_per_request": result.series_per_request,
        "requests_per_s": result.requests_per_s,
        "series_per_s": result.series_per_s,
        "p50_ms": result.percentile_ms(50),
        "p95_ms": result.percentile_ms(95),
        "p99_ms": result.percentile_ms(99),
        "errors": result.failed,
        "warmup_errors": result.warmup_errors,
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": client1 - client0,
        "idle_contenders_cpu_s": idle1 - idle0,
        "client_cpu_ms_per_request": (
            1000.0 * (client1 - client0) / (len(result.measured)) if len(result.measured) else None
        ),
        "cpu_ms_per_series": 1000.0 * (cpu1 - cpu0) / served if served else None,
        "series_per_call": (s1 - s0) / (c1 - c0) if c1 > c0 else None,
        "error_samples": result.error_samples,
    }


def measure_window(
    server: Server,
    payloads: list[Payload],
    users: int,
    horizon: int,
    args: argparse.Namespace,
    warmup_s: float,
    idle: Sequence[Server] = (),
) -> dict[str, Any]:
    """One window of `users` closed-loop clients against `server`, after `warmup_s`."""
    probe = Probe(server, idle)
    url = server.url + server.predict_path
    result = run_closed_loop(
        url,
        users,
        from_payloads(url, payloads, horizon),
        args.duration,
        warmup_s,
        on_start=probe.start,
        on_end=probe.end,
    )
    return summarise(result)


def median_of(reps: list[dict[str, Any]]) -> dict[str, Any]:
    point = report.median_point(reps)
    point["error_samples"] = [s for r in reps for s in r["error_samples"]][:5]
    point["rep_requests_per_s"] = [r["requests_per_s"] for r in reps]
    return point


def run_contenders(
    starters: dict[str, Callable[[], Server]],
    single: list[Payload],
    bulk: list[Payload],
    horizon: int,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Every contender up at once, on the same core, measured in interleaved windows.

    For each point, repetition k of every contender runs before repetition k+1 of any:
    the host's slow spells (they last minutes here) then land on all contenders alike,
    and the ratios between them compare like with like. A contender waiting for its
    turn is idle; its CPU during the others' windows is recorded (`idle_contenders_cpu_s`).
    Each window has its own warm-up, since its server sat idle before it.
    """
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, start in starters.items():
            print(f"[bench] {name}: starting", flush=True)
            started = time.monotonic()
            try:
                servers[name] = stack.enter_context(start())
            except Exception as exc:  # a contender that cannot run is reported, the rest go on
                results[name] = _failed(name, exc)
                continue
            print(f"[bench] {name}: ready in {time.monotonic() - started:.1f} s", flush=True)
        for name, server in list(servers.items()):
            # Warm-up at moderate concurrency: compiles the model's paths, fills pools,
            # lets TorchServe's JIT settle.
            try:
                measure_window(server, single, 8, horizon, _short(args), args.warmup)
            except Exception as exc:
                results[name] = _failed(name, exc)
                del servers[name]
        points: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        loads = [(users, single) for users in args.users]
        if args.bulk_users > 0:
            loads.append((args.bulk_users, bulk))
        for users, payloads in loads:
            reps: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for _ in range(args.reps):
                for name, server in list(servers.items()):
                    idle = [other for other in servers.values() if other is not server]
                    try:
                        window = measure_window(
                            server, payloads, users, horizon, args, args.warmup, idle
                        )
                    except Exception as exc:
                        results[name] = _failed(name, exc)
                        del servers[name]
                        continue
                    reps[name].append(window)
            for name in servers:
                point = median_of(reps[name])
                kind = "bulk " if payloads is bulk else ""
                print(f"[bench] {name}: {kind}{_line(point)}", flush=True)
                points[name].append(point)
        for name in servers:
            single_points = points[name][: len(args.users)]
            bulk_point = points[name][len(args.users)] if args.bulk_users > 0 else None
            results[name] = {"single": single_points, "bulk": bulk_point, "error": None}
    return {name: results[name] for name in starters if name in results}


def _failed(name: str, exc: Exception) -> dict[str, Any]:
    print(f"[bench] {name}: FAILED: {exc}", file=sys.stderr, flush=True)
    return {"single": [], "bulk": None, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def _short(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "duration": min(2.0, args.duration)})


def _line(p: dict[str, Any]) -> str:
    def f(key: str, digits: int) -> str:
        value = p.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"users={p['users']} req/s={f('requests_per_s', 1)} series/s={f('series_per_s', 0)} "
        f"p50={f('p50_ms', 1)} p99={f('p99_ms', 1)} ms errors={p['errors']} "
        f"cpu-ms/series={f('cpu_ms_per_series', 3)} series/call={f('series_per_call', 1)}"
    )


def run_limit(model_dir: Path, sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """The in-process limit in a child process pinned to the server core."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "limit.json"
        command = [
            sys.executable,
            "-m",
            "bench.limit",
            "--model",
            str(model_dir),
            "--sizes",
            ",".join(str(s) for s in sizes),
            "--seconds",
            str(args.limit_seconds),
            "--reps",
            str(args.reps),
            "--core",
            str(args.server_core),
            "--json",
            str(out),
        ]
        subprocess.run(command, cwd=ROOT, check=True, timeout=900)
        return dict(json.loads(out.read_text()))


@contextlib.contextmanager
def model_directory(args: argparse.Namespace) -> Iterator[Path]:
    if not args.standin:
        model = args.model if args.model.is_absolute() else ROOT / args.model
        if not (model / "metadata.json").is_file():
            raise SystemExit(f"no model at {model}; train one (make train) or pass --standin")
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        yield write_standin(Path(tmp) / "standin")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/m3-monthly"))
    parser.add_argument(
        "--repository",
        type=Path,
        default=None,
        help=(
            "ours serves this whole model repository (FORECASTER_MODELS), requests going "
            "to --model, one of its models; default: --model alone"
        ),
    )
    parser.add_argument("--standin", action="store_true", help="use an untrained stand-in model")
    parser.add_argument("--duration", type=float, default=10.0, help="measured s per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up s before a point")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--users", default="1,8,32,64", help="single-series concurrencies")
    parser.add_argument("--bulk-series", type=int, default=64, help="series per bulk request")
    parser.add_argument(
        "--bulk-users", type=int, default=4, help="concurrent bulk clients (0: no bulk point)"
    )
    parser.add_argument("--limit-sizes", default="1,8,32,128", help="in-process batch sizes")
    parser.add_argument("--limit-seconds", type=float, default=1.5, help="s per limit rep")
    parser.add_argument(
        "--contenders", default="limit,ours,nobatch,torchserve", help="which to run"
    )
    parser.add_argument("--ts-batch-size", type=int, default=64, help="TorchServe batchSize")
    parser.add_argument("--ts-delay-ms", type=int, default=5, help="TorchServe maxBatchDelay")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor fails")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for ours and nobatch (repeatable), to try a setting",
    )
    parser.add_argument(
        "--variant-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "run one more contender, ours with this environment (repeatable), in turns "
            "with the others: an A/B of a setting under the same host noise"
        ),
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help=(
            "run one more contender, ours@REF: the service's code at this git ref, from a "
            "temporary worktree, serving --model alone, in turns with the others"
        ),
    )
    args = parser.parse_args(argv)
    args.service_env = dict(item.split("=", 1) for item in args.service_env)
    args.variant_env = dict(item.split("=", 1) for item in args.variant_env)
    args.users = [int(u) for u in args.users.split(",")]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    return args


def ours_env(args: argparse.Namespace, model_dir: Path) -> dict[str, str]:
    """What the current code's contenders serve: `--repository` when given, else nothing
    beyond `serve_env`'s `--model` alone."""
    if args.repository is None:
        return {}
    repository = args.repository if args.repository.is_absolute() else ROOT / args.repository
    return repository_env(repository, model_dir)


def starters(
    args: argparse.Namespace, model_dir: Path, log_dir: Path, baseline_tree: Path | None = None
) -> dict[str, Callable[[], Server]]:
    """The chosen contenders' starters, by name; a variant and a baseline join the chosen
    ones when asked for (`--variant-env`, `--baseline` with its worktree at `baseline_tree`)."""
    served = ours_env(args, model_dir)

    def ours(name: str, extra_env: dict[str, str], cwd: Path = ROOT) -> Callable[[], Server]:
        """The service (the code in `cwd`), plus `--service-env`, plus this contender's own."""

        def start() -> Server:
            env = {**serve_env(model_dir, log_dir), **QUIET, **args.service_env, **extra_env}
            log = log_dir / f"{name}.log"
            return Server(env, cwd=cwd, cpus=args.server_core, name=name, log=log)

        return start

    every: dict[str, Callable[[], Server]] = {
        "ours": ours("ours", served),
        "nobatch": ours("nobatch", {**served, **nobatch_env()}),
        "torchserve": lambda: TorchServe(
            model_dir, log_dir, args.ts_batch_size, args.ts_delay_ms, cpus=args.server_core
        ),
    }
    chosen = list(args.contenders)
    if args.variant_env:
        every["variant"] = ours("variant", {**served, **args.variant_env})
        chosen.append("variant")
    if args.baseline:
        if baseline_tree is None:
            raise ValueError(f"--baseline {args.baseline} needs its worktree")
        name = baseline_name(args.baseline)
        every[name] = ours(name, baseline_env(model_dir), cwd=baseline_tree)
        chosen.append(name)
    return {name: start for name, start in every.items() if name in chosen}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.client_core})  # the load generator's core; servers get theirs
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    histories = m3_monthly()
    single = payload_pool(1, 512, seed=1, histories=histories)
    bulk = payload_pool(args.bulk_series, 32, seed=2, histories=histories)
    lengths = [len(h.values) for h in histories]
    mean_length = statistics.mean(lengths)
    sizes = sorted({*(int(s) for s in args.limit_sizes.split(",")), args.bulk_series})
    created = datetime.now(UTC)
    result: dict[str, Any] = {"created": created.isoformat(timespec="seconds")}
    result["machine"] = machine()
    result["versions"] = versions()
    with contextlib.ExitStack() as trees, model_directory(args) as model_dir:
        baseline_tree: tuple[Path, str] | None = None
        if args.baseline:
            baseline_tree = trees.enter_context(git_worktree(args.baseline))
            print(f"[bench] {baseline_name(args.baseline)}: worktree {baseline_tree[0]}")
        meta = json.loads((model_dir / "metadata.json").read_text())
        horizon = int(meta["horizon"])
        nobatch = nobatch_env()
        result["config"] = {
            "model": str(args.model) if not args.standin else "stand-in (untrained, same shape)",
            "model_version": meta.get("version"),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "reps": args.reps,
            "users": args.users,
            "bulk_series": args.bulk_series,
            "bulk_users": args.bulk_users,
            "history_lengths": f"{min(lengths)}–{max(lengths)}, mean {mean_length:.0f}",
            "server_core": args.server_core,
            "client_core": args.client_core,
            "load_generator": (
                "closed loop, one keep-alive connection per user, uvloop + httptools "
                "(bench/loadgen.py)"
            ),
            "service_env": args.service_env,
            "variant_env": args.variant_env,
            "nobatch_env": nobatch,
            "torchserve": {
                "batch_size": args.ts_batch_size,
                "max_batch_delay_ms": args.ts_delay_ms,
                "workers": 1,
                "logging": "warn (bench/torchserve/log4j2.xml)",
            },
        }
        if "limit" in args.contenders:
            print("[bench] limit: in-process model", flush=True)
            result["limit"] = run_limit(model_dir, sizes, args)

        result["config"]["ours_env"] = ours_env(args, model_dir)
        if baseline_tree is not None:
            result["config"]["baseline"] = {
                "name": baseline_name(args.baseline),
                "ref": args.baseline,
                "commit": baseline_tree[1],
                "env": baseline_env(model_dir),
                "ours_env": ours_env(args, model_dir),
            }
        tree = baseline_tree[0] if baseline_tree else None
        chosen = starters(args, model_dir, log_dir, tree)
        result["contenders"] = run_contenders(chosen, single, bulk, horizon, args)
        if baseline_tree is not None:
            result["baseline"] = compare_baseline(result)
        if "limit" in args.contenders:
            # The same model call again at the end: host noise that slowed the machine
            # during the run shows up as a drift between the two.
            print("[bench] limit again: machine check", flush=True)
            result["limit_after"] = run_limit(model_dir, [report.MACHINE_CHECK_BATCH], args)
    result["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    result["floors"] = report.floors(result)
    if result.get("baseline", {}).get("ratios"):
        name = result["config"]["baseline"]["name"]
        result["floors"].append(baseline_floor(result["baseline"]["ratios"], name))
    result["logs"] = str(log_dir)
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(finite(result), indent=2, allow_nan=False)
    (args.out / f"bench-{stamp}.json").write_text(text + "\n")
    (args.out / "latest.json").write_text(text + "\n")
    with contextlib.suppress(Exception):
        report.plot(result, args.out / "throughput_vs_p99.png")
    table = report.markdown(result) + baseline_markdown(result)
    print(table)
    if not args.no_markdown:
        existing = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
        BENCHMARKS_MD.write_text(report.replace_between_markers(existing, table))
    print(f"[bench] wrote {args.out / f'bench-{stamp}.json'}; server logs in {log_dir}")
    failed = [f["floor"] for f in result["floors"] if not f["passed"]]
    return 1 if args.strict and failed else 0


def compare_baseline(result: dict[str, Any]) -> dict[str, Any]:
    """`{"ratios": ...}`, ours / baseline per load point, or `{"error": ...}`: why not."""
    name = result["config"]["baseline"]["name"]
    blocks = {n: result["contenders"].get(n) or {} for n in ("ours", name)}
    missing = [n for n, block in blocks.items() if not block or block.get("error")]
    if missing:
        errors = "; ".join(f"{n}: {blocks[n].get('error') or 'not run'}" for n in missing)
        return {"error": f"did not run: {errors}"}
    return {"ratios": ratios(blocks["ours"], blocks[name])}


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (an empty window's percentile) made None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())

"""What BentoML's per-request HTTP layers cost a request, measured in-process.

The service's `RequestGuard` answers `/forecast` and `/model` itself. By default it wraps
BentoML's whole ASGI app, so those routes skip BentoML's layers (its traffic metrics, the
OpenTelemetry check, the request timeout); with tracing or the access log on it sits
inside them. This drives `GET /model` (answered by the guard, no model call) through both
arrangements on one uvloop event loop, pinned to one core, alternating repetitions, and
prints the median µs per request:

    .venv/bin/python -m bench.asgi_layers [--requests 20000 --reps 5 --core 0]

It writes the same figures to `bench/results/asgi-layers.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.benchmark import RESULTS, machine
from service.guard import ASGIApp, RequestGuard
from service.service import GUARD_OPTIONS, Forecaster

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/model",
    "raw_path": b"/model",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 3000),
}


def arrangements() -> dict[str, ASGIApp]:
    """The guard outside BentoML's app (the default), and inside its middleware stack."""
    outside = RequestGuard(_bentoml_app(), **GUARD_OPTIONS)
    Forecaster.add_asgi_middleware(RequestGuard, **GUARD_OPTIONS)
    inside = _bentoml_app()
    return {"guard outside BentoML's layers": outside, "guard inside them": inside}


def _bentoml_app() -> ASGIApp:
    # The base class's app: BentoML's stack as configured, without the default wrapping.
    return super(type(Forecaster), Forecaster).to_asgi(is_main=True)


async def per_request_us(app: ASGIApp, requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"GET /model answered {message['status']}")

    started = time.perf_counter()
    for _ in range(requests):
        await app({**SCOPE, "state": {}}, receive, send)
    return 1e6 * (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "asgi-layers.json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    apps = arrangements()

    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in apps}
        for app in apps.values():  # warm-up: starlette builds its stack on the first call
            await per_request_us(app, 200)
        for _ in range(args.reps):
            for name, app in apps.items():
                times[name].append(await per_request_us(app, args.requests))
        return times

    times = uvloop.run(run())
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["guard outside BentoML's layers"]
    print(f"GET /model, {args.requests} requests x {args.reps} reps on core {args.core}")
    print("| arrangement | µs / request (median) | reps | vs outside |")
    print("|---|---:|---|---:|")
    for name, median in medians.items():
        reps = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"| {name} | {median:.1f} | {reps} | +{median - base:.1f} µs |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "core": args.core,
        "requests_per_rep": args.requests,
        "us_per_request": times,
        "median_us": medians,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

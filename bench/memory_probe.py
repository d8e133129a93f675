"""Memory of the model path alone: packed forwards of ragged batches from worker threads.

Separates the service's RSS growth under a soak into what the model path does (torch,
numpy, glibc arenas) and what HTTP adds: it runs `service.batching` with the shipped
model, no server, and prints RSS next to the Python heap that tracemalloc sees. RSS
rising while the traced heap stays flat is native memory (allocator caching or
fragmentation), not Python objects kept alive. `--threads 1` is the service's model
thread (`service.batcher`); `--threads 40` spreads the passes over a pool the size of
starlette's, as a dispatcher running callbacks in that pool would.

    .venv/bin/python -m bench.memory_probe --seconds 150 [--threads 40]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import torch

from service.batching import run_packed
from training.data import load_m3

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--threads", type=int, default=1, help="threads running the passes")
    parser.add_argument("--every", type=int, default=1500, help="dispatches between prints")
    args = parser.parse_args()

    tracemalloc.start()
    torch.set_num_threads(1)
    model = torch.jit.load(str(ROOT / "models" / "m3-monthly" / "model.ts"))
    histories = [h[-126:].astype(np.float32) for h in load_m3("m3-monthly").train]
    rng = np.random.default_rng(0)

    def forward(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(values), torch.from_numpy(lengths)).numpy()

    process = psutil.Process()
    started, dispatches = time.perf_counter(), 0
    # One single-thread executor per thread, used in turn: a shared pool would keep
    # reusing one idle thread, since each pass waits for the previous one.
    pools = [ThreadPoolExecutor(1) for _ in range(args.threads)]
    try:
        while time.perf_counter() - started < args.seconds:
            # One dispatch: 1 to 31 requests of 1 to 3 series each, as the batcher forms them.
            requests = [
                [histories[j] for j in rng.integers(0, len(histories), rng.integers(1, 4))]
                for _ in range(rng.integers(1, 32))
            ]
            pool = pools[dispatches % len(pools)]
            pool.submit(run_packed, requests, forward, 4096, 64).result()
            dispatches += 1
            if dispatches % args.every == 0:
                rss = process.memory_info().rss / 2**20
                traced = tracemalloc.get_traced_memory()[0] / 2**20
                elapsed = time.perf_counter() - started
                print(
                    f"{elapsed:6.1f} s  dispatches {dispatches:6d}  RSS {rss:7.1f} MB  "
                    f"Python heap {traced:6.2f} MB",
                    flush=True,
                )
    finally:
        for pool in pools:
            pool.shutdown()


if __name__ == "__main__":
    main()

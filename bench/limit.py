"""The in-process limit: what the model alone does on one core, with no HTTP at all.

Two contenders on the same weights and the same M3 monthly batches:

- **packed**: the exported TorchScript `model.ts`, exactly what the service runs
  (`pack_padded_sequence` inside);
- **padded**: an eager copy of the module (rebuilt from `metadata.json`'s `model_config`
  with the scripted module's `state_dict()`) whose forward runs the LSTM over the
  right-padded tensor, skipping packing. Its forecasts for short series differ (the
  LSTM also reads the padding), so it is a *cost* comparison only, for the benchmark.

    taskset -c 0 python -m bench.limit --model models/m3-monthly --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from load_tests.payloads import History, m3_monthly
from training.model import StackedLSTMForecaster, rebuild
from training.windows import pad_right

ModelFn = Callable[[Tensor, Tensor], Tensor]


class PaddedForecaster(StackedLSTMForecaster):
    """The same module with the LSTM run on the padded batch instead of a packed one."""

    def encode(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        batch = inputs.shape[0]
        h0 = self.h0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        c0 = self.c0.expand(-1, batch, -1).contiguous()  # (layers*dirs, B, H)
        _, (h_n, _) = self.lstm(inputs, (h0, c0))  # no packing: every row runs T steps
        return h_n[-1]  # (B, H); for short rows this state has also read the padding


def load_models(model_dir: Path) -> tuple[dict[str, Any], ModelFn, ModelFn]:
    """metadata, the scripted (packed) model and its eager padded twin with the same weights."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    scripted = torch.jit.load(str(model_dir / metadata["model_file"]), map_location="cpu")
    scripted.eval()
    padded = rebuild(metadata["model_config"], member=PaddedForecaster)
    padded.load_state_dict(scripted.state_dict())
    padded.eval()
    return metadata, scripted, padded


def make_batches(
    histories: Sequence[History], size: int, count: int, max_history: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """`count` random batches of `size` series: right-padded values (B, T) and lengths (B,)."""
    rng = random.Random(seed)
    out: list[tuple[Tensor, Tensor]] = []
    for _ in range(count):
        drawn = [np.asarray(rng.choice(histories).values[-max_history:]) for _ in range(size)]
        values, lengths = pad_right(drawn)  # (B, T) float32, (B,) int64
        out.append((torch.from_numpy(values), torch.from_numpy(lengths)))
    return out


@dataclass(frozen=True)
class LimitPoint:
    """One (mode, batch size) measurement, median over repetitions."""

    mode: str
    batch_size: int
    series_per_s: float
    cpu_ms_per_series: float
    ms_per_call: float
    reps: list[float]  # series/s of each repetition


def measure(
    fn: ModelFn, batches: Sequence[tuple[Tensor, Tensor]], seconds: float
) -> tuple[float, float, float]:
    """Run batches round-robin for about `seconds`: (series/s, CPU-ms/series, ms/call)."""
    calls = series = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    with torch.inference_mode():
        while True:
            values, lengths = batches[calls % len(batches)]
            fn(values, lengths)
            calls += 1
            series += values.shape[0]
            if time.perf_counter() >= deadline and calls >= 3:
                break
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return series / wall, 1000.0 * cpu / series, 1000.0 * wall / calls


def run(
    model_dir: Path, sizes: Sequence[int], seconds: float, reps: int, seed: int = 0
) -> dict[str, Any]:
    """Every (mode, size) point, warmed up first; medians of `reps` repetitions."""
    torch.set_num_threads(1)
    metadata, scripted, padded = load_models(model_dir)
    histories = m3_monthly()
    points: list[LimitPoint] = []
    for size in sizes:
        batches = make_batches(histories, size, 16, int(metadata["max_history"]), seed + size)
        for mode, fn in (("packed", scripted), ("padded", padded)):
            measure(fn, batches, min(0.5, seconds))  # warm-up: JIT profiling runs, allocator
            runs = [measure(fn, batches, seconds) for _ in range(reps)]
            points.append(
                LimitPoint(
                    mode=mode,
                    batch_size=size,
                    series_per_s=statistics.median(r[0] for r in runs),
                    cpu_ms_per_series=statistics.median(r[1] for r in runs),
                    ms_per_call=statistics.median(r[2] for r in runs),
                    reps=[r[0] for r in runs],
                )
            )
    return {
        "model": str(model_dir),
        "model_version": metadata.get("version"),
        "torch_threads": torch.get_num_threads(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "seconds_per_rep": seconds,
        "reps": reps,
        "points": [asdict(p) for p in points],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="In-process limit of the forecaster model.")
    parser.add_argument("--model", type=Path, default=Path("models/m3-monthly"))
    parser.add_argument("--sizes", default="1,8,32,64,128", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=1.5, help="per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--core", type=int, default=None, help="pin this process to one core")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    result = run(args.model, [int(s) for s in args.sizes.split(",")], args.seconds, args.reps)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(f"{'mode':<7} {'batch':>5} {'series/s':>10} {'CPU-ms/series':>14} {'ms/call':>8}")
    for p in result["points"]:
        print(
            f"{p['mode']:<7} {p['batch_size']:>5} {p['series_per_s']:>10.0f} "
            f"{p['cpu_ms_per_series']:>14.3f} {p['ms_per_call']:>8.2f}"
        )


if __name__ == "__main__":
    main()

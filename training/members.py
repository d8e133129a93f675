"""Training an ensemble's members: one after another, or side by side in worker
processes of one thread each.

A member of 2 x 32 units keeps one core about as busy as two: on the 2-core machine of
docs/EXPERIMENTS.md one thread trains 15.2 steps/s and two threads 16.4, while two
processes of one thread each train 14.6 steps/s apiece. So on a CPU the members train
side by side, as many at once as there are cores. Each member seeds itself, so the
weights are those of a run one member after another at the same threads per member
(tests/training/test_members.py); across thread counts float rounding may differ in
the last bit, as it may between any two machines.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from training.model import ModelConfig
from training.train import TrainConfig, TrainResult, fit


@dataclass(frozen=True)
class MemberTask:
    """Everything one member's training needs, sent to a worker as it is."""

    series: list[np.ndarray]
    model_config: ModelConfig
    train_config: TrainConfig
    desc: str
    companions: list[np.ndarray]
    progress: bool
    bar_position: int = 0


def available_cores() -> int:
    """The cores this process may run on (its affinity, where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_jobs(members: int, device: str, world: int) -> int:
    """Members trained at once: one per core on a CPU; one at a time under torchrun
    (its ranks already share the work) or where a GPU may train them."""
    if world > 1 or device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return 1
    return max(1, min(members, available_cores()))


def train_member(task: MemberTask) -> TrainResult:
    return fit(
        task.series,
        task.model_config,
        task.train_config,
        progress=task.progress,
        desc=task.desc,
        companions=task.companions,
        bar_position=task.bar_position,
    )


def train_members(tasks: list[MemberTask], jobs: int) -> list[TrainResult]:
    """Each task's trained member, in the order given; `jobs` at a time in worker
    processes of `cores // jobs` threads each, or in this process when `jobs` is 1."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) == 1:
        return [train_member(task) for task in tasks]
    # spawn, not fork: a forked child inherits torch's thread pools in whatever state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=start_worker,
        initargs=(threads_per_job(jobs), os.getpid()),
    ) as pool:
        return list(pool.map(train_member, tasks))


def start_worker(threads: int, parent: int) -> None:
    """A worker's set-up: its threads, and a watch that ends it once `parent` is gone. A
    fit stopped by a signal to its own process alone (a `timeout`, a service manager)
    would otherwise leave its workers training on, or waiting forever for work."""
    torch.set_num_threads(threads)
    threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()


def exit_when_orphaned(parent: int, poll_s: float = 1.0) -> None:
    """Ends this process as soon as its parent is no longer `parent` (it has died and
    the process was handed to another)."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


def threads_per_job(jobs: int) -> int:
    """The threads each member trains with when `jobs` train at once."""
    return torch.get_num_threads() if jobs == 1 else max(1, available_cores() // jobs)

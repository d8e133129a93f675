"""Members trained side by side in worker processes are the members trained one by one."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import torch

import training.members
from tests.training.test_cli import tiny_run
from training.cli import main
from training.members import MemberTask, default_jobs, train_members

ROOT = Path(__file__).resolve().parents[2]


def tasks_of_two() -> list[MemberTask]:
    series, config, train = tiny_run(epochs=3, refit=True)
    return [
        MemberTask(series, config, train, "a", [], progress=False),
        MemberTask(series, config, replace(train, seed=7), "b", [], progress=False,
                   bar_position=1),
    ]  # fmt: skip


@pytest.mark.slow
def test_members_trained_at_once_equal_members_trained_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards against parallel training that changes the ensemble (a shared seed, a
    member's result returned for another). Compared at one thread per member, as the two
    workers run on this 2-core machine: across thread counts float rounding may differ."""
    tasks = tasks_of_two()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_turn = train_members(tasks, jobs=1)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(training.members, "available_cores", lambda: 2)  # 1 thread each
    at_once = train_members(tasks, jobs=2)
    for alone, side_by_side in zip(in_turn, at_once, strict=True):
        assert alone.best_epoch == side_by_side.best_epoch
        assert [r["val_loss"] for r in alone.history] == [
            r["val_loss"] for r in side_by_side.history
        ]
        for model in ("model", "early_model"):
            ours, theirs = getattr(alone, model).state_dict(), getattr(side_by_side, model)
            for name, tensor in ours.items():
                assert torch.equal(tensor, theirs.state_dict()[name]), (model, name)
    # The two members differ (their own seeds): results were not mixed up or duplicated.
    first, second = (r.model.state_dict() for r in at_once)
    assert not torch.equal(first["head.0.weight"], second["head.0.weight"])


def test_default_jobs_is_one_per_core_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards against more workers than members or cores, and against parallel workers
    under torchrun or on a GPU, where one process already holds the device."""
    monkeypatch.setattr(training.members, "available_cores", lambda: 2)
    assert default_jobs(4, "cpu", world=1) == 2
    assert default_jobs(1, "cpu", world=1) == 1
    monkeypatch.setattr(training.members, "available_cores", lambda: 16)
    assert default_jobs(4, "cpu", world=1) == 4
    assert default_jobs(4, "cpu", world=2) == 1
    assert default_jobs(4, "cuda", world=1) == 1
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        train_members(tasks_of_two(), jobs=0)


def test_fit_refuses_jobs_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--dataset", "m3-yearly", "--jobs", "0"])
    assert exit_info.value.code == 2
    assert "--jobs: must be >= 1, got 0" in capsys.readouterr().err


# A parent that starts a worker as train_members does and then waits; it is killed.
ORPHAN_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from training.members import start_worker

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, context, start_worker, (1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_worker_ends_when_its_fit_is_killed(tmp_path: Path) -> None:
    """Guards against workers that outlive a fit stopped by a signal to it alone,
    training on or waiting forever for work."""
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    worker = psutil.Process(int(parent.stdout.readline()))
    try:
        parent.kill()
        parent.wait(timeout=10)
        worker.wait(timeout=10)  # psutil.TimeoutExpired if it stays
    finally:
        parent.kill()
        if worker.is_running():
            worker.kill()

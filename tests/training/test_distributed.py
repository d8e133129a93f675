"""torchrun + DistributedDataParallel (gloo on CPU) trains what one process trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.servers import free_port
from training.model import ModelConfig
from training.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[2]
rng = np.random.default_rng(0)
SERIES = [100 + np.cumsum(rng.normal(0, 3, 40 + k)) for k in range(10)]
# No dropout: its masks are drawn per rank, which one process cannot replay.
MODEL = ModelConfig(horizon=4, hidden=8, layers=2, dropout=0.0)
CONFIG = TrainConfig(
    epochs=2, steps_per_epoch=3, batch_size=8, min_history=6, max_history=40, patience=5
)


def torchrun(worker: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Two gloo ranks of tests/training/<worker> on loopback, writing into out."""
    return subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}",
            str(ROOT / "tests" / "training" / worker), str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_two_ranks_match_each_other_and_one_process(tmp_path: Path) -> None:
    """Guards against ranks drifting apart (gradients not averaged, different initial
    weights) and against sharding that changes what is learned: two gloo ranks must end
    with identical weights, equal to one process drawing the same two shards."""
    done = torchrun("ddp_worker.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    single = fit(
        SERIES, MODEL, TrainConfig(**{**CONFIG.to_dict(), "data_shards": 2}), progress=False
    )
    untrained = fit(
        SERIES,
        MODEL,
        TrainConfig(**{**CONFIG.to_dict(), "epochs": 1, "steps_per_epoch": 1}),
        progress=False,
    )
    for name, weights in single.model.state_dict().items():
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], weights, rtol=1e-4, atol=1e-5)
    moved = [
        not torch.equal(rank0[n], w) for n, w in untrained.model.state_dict().items() if "lstm" in n
    ]
    assert any(moved)  # the comparison is not between two untrained models


@pytest.mark.slow
def test_ranks_that_would_decide_differently_all_follow_rank_0(tmp_path: Path) -> None:
    """Guards against each rank deciding early stopping (or a refit's epochs) on its own: a
    rank that stopped while another went on would leave the other waiting in an
    all-reduce for ever."""
    done = torchrun("agree_worker.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "agreed0.txt").read_text() == "False"
    assert (tmp_path / "agreed1.txt").read_text() == "False"  # its own proposal was True
    # A refit's epoch count too: rank 1 proposed 8, rank 0 chose 7.
    assert (tmp_path / "epochs0.txt").read_text() == "7"
    assert (tmp_path / "epochs1.txt").read_text() == "7"


def test_torchrun_only_data_shards_outside_torchrun() -> None:
    with pytest.raises(ValueError, match="multiple of 3 shards"):
        fit(SERIES, MODEL, TrainConfig(**{**CONFIG.to_dict(), "data_shards": 3}), progress=False)

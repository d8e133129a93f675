"""Run by torchrun in test_distributed.py: each rank proposes its own early-stopping
decision (rank 1 the opposite of rank 0) and its own refit epoch count, and writes what
`agree` and `from_rank_zero` gave it."""

import sys
from pathlib import Path

import torch

from training import distributed

out = Path(sys.argv[1])
rank = distributed.current()
distributed.start(rank, torch.device("cpu"))
try:
    decided = distributed.agree(rank, rank.rank == 1, torch.device("cpu"))
    (out / f"agreed{rank.rank}.txt").write_text(str(decided))
    epochs = distributed.from_rank_zero(rank, 7 + rank.rank, torch.device("cpu"))
    (out / f"epochs{rank.rank}.txt").write_text(str(epochs))
finally:
    distributed.stop()

"""Run by torchrun in test_distributed.py: each rank proposes its own early-stopping
decision (rank 1 the opposite of rank 0) and writes what `agree` decided for it."""

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
finally:
    distributed.stop()

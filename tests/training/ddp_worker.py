"""Run by torchrun in test_distributed.py: train a few steps, save this rank's weights."""

import sys
from pathlib import Path

import torch

from tests.training.test_distributed import CONFIG, MODEL, SERIES
from training.distributed import current
from training.train import fit

out = Path(sys.argv[1])
result = fit(SERIES, MODEL, CONFIG, progress=False)
torch.save(result.model.state_dict(), out / f"rank{current().rank}.pt")

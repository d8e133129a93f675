"""The in-process measurement of BentoML's per-request layers runs and records both arrangements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.servers import ROOT


def test_both_arrangements_answer_and_are_timed(standin: Path, tmp_path: Path) -> None:
    out = tmp_path / "layers.json"
    command = [sys.executable, "-m", "bench.asgi_layers", "--requests", "50", "--reps", "2"]
    env = {**os.environ, "FORECASTER_MODELS": str(standin), "BENTOML_HOME": str(tmp_path)}
    done = subprocess.run(
        [*command, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    names = ["guard outside BentoML's layers", "guard inside them"]
    assert list(record["median_us"]) == names
    assert all(len(record["us_per_request"][n]) == 2 for n in names)
    assert "| guard inside them |" in done.stdout

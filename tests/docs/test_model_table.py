"""README's model table is what the shipped models' eval.json files say."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = {  # README's method column -> where its figures sit in an evaluation
    "**stacked LSTM ensemble (shipped)**": (),
    "AutoETS": ("peers", "AutoETS"),
    "AutoTheta": ("peers", "AutoTheta"),
    "Naive2": ("baselines", "naive2"),
    "seasonal naive": ("baselines", "seasonal_naive"),
}


def readme_rows() -> list[list[str]]:
    section = (ROOT / "README.md").read_text().split("\n## The model and how good it is\n")[1]
    lines = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("|")]
    # After the header and the |---| line.
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:]]


def figure(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(scale * value, fmt)


def test_readme_model_table_matches_every_shipped_eval_json() -> None:
    """Guards against README figures that no shipped model reproduces: every row is the
    eval.json of models/<set>/ written by the fit that exported it, to the digits shown."""
    rows = readme_rows()
    seen = set()
    for data_set, method, smape, mase, coverage, cpu in rows:
        evaluation = json.loads((ROOT / "models" / data_set / "eval.json").read_text())
        figures = evaluation
        for key in ROWS[method]:
            figures = figures[key]
        assert smape == figure(figures["smape"], ".2f"), (data_set, method)
        assert mase == figure(figures["mase"], ".3f"), (data_set, method)
        assert coverage == figure(figures.get("coverage_80"), ".1f", 100.0), (data_set, method)
        assert cpu == figure(figures.get("cpu_ms_per_series"), ".2f"), (data_set, method)
        seen.add((data_set, method))
    shipped = {p.parent.name for p in (ROOT / "models").glob("*/eval.json")}
    assert seen == {(s, m) for s in shipped for m in ROWS}

"""README's per-frequency model table, written from the shipped models' eval.json files.

`python -m training readme-table` rewrites the table after a retrain;
tests/docs/test_model_table.py checks that README holds what this module writes.
"""

from __future__ import annotations

import json
from pathlib import Path

SECTION = "\n## The model and how good it is\n"
HEADER = (
    "| set | method | sMAPE | MASE | 80% coverage | 95% coverage | CPU ms/series |",
    "|---|---|---|---|---|---|---|",
)
ROWS = {  # README's method column -> where its figures sit in an evaluation
    "**shipped model**": (),
    "LSTM ensemble alone": ("parts", "LSTM ensemble"),
    "Theta alone (in the module)": ("parts", "Theta"),
    "AutoETS": ("peers", "AutoETS"),
    "AutoTheta": ("peers", "AutoTheta"),
    "Naive2": ("baselines", "naive2"),
    "seasonal naive": ("baselines", "seasonal_naive"),
}


def figure(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(scale * value, fmt)


def table_rows(models: Path, data_sets: tuple[str, ...]) -> list[list[str]]:
    """One row per method per set that ships an eval.json, cells as README shows them."""
    rows = []
    for data_set in data_sets:
        path = models / data_set / "eval.json"
        if not path.exists():
            continue
        evaluation = json.loads(path.read_text())
        for method, keys in ROWS.items():
            if keys[:1] == ("parts",) and keys[1] not in evaluation.get("parts", {}):
                continue  # a part the model does not combine
            figures = evaluation
            for key in keys:
                figures = figures[key]
            rows.append(
                [
                    data_set,
                    method,
                    figure(figures["smape"], ".2f"),
                    figure(figures["mase"], ".3f"),
                    figure(figures.get("coverage_80"), ".1f", 100.0),
                    figure(figures.get("coverage_95"), ".1f", 100.0),
                    figure(figures.get("cpu_ms_per_series"), ".2f"),
                ]
            )
    return rows


def readme_rows(readme: str) -> list[list[str]]:
    """The table's body rows as README has them now."""
    lines = table_lines(readme)
    # After the header and the |---| line.
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:]]


def table_lines(readme: str) -> list[str]:
    """The first run of table lines in the model section."""
    section = readme.split(SECTION)[1].split("\n## ")[0]
    lines: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    return lines


def rewrite(readme: str, rows: list[list[str]]) -> str:
    """README with the model table replaced by `rows`."""
    old = "\n".join(table_lines(readme))
    new = "\n".join([*HEADER, *("| " + " | ".join(row) + " |" for row in rows)])
    head, tail = readme.split(SECTION, 1)
    return head + SECTION + tail.replace(old, new, 1)

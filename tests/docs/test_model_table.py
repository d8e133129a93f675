"""README's model table is what the shipped models' eval.json files say."""

from __future__ import annotations

import json
from pathlib import Path

from training.data import DATASETS
from training.model_table import ROWS, readme_rows, rewrite, table_rows

ROOT = Path(__file__).resolve().parents[2]


def test_readme_model_table_matches_every_shipped_eval_json() -> None:
    """Guards against README figures that no shipped model reproduces: every row is the
    eval.json of models/<set>/ written by the fit that exported it, to the digits shown
    (`python -m training readme-table` writes them)."""
    rows = readme_rows((ROOT / "README.md").read_text())
    assert rows == table_rows(ROOT / "models", DATASETS)
    expected = set()
    for path in (ROOT / "models").glob("*/eval.json"):
        parts = json.loads(path.read_text()).get("parts", {})
        # Every method, and each part alone where the model combines parts.
        expected |= {
            (path.parent.name, method)
            for method, keys in ROWS.items()
            if keys[:1] != ("parts",) or keys[1] in parts
        }
    assert {(row[0], row[1]) for row in rows} == expected


def test_rewrite_replaces_only_the_model_table(tmp_path: Path) -> None:
    """Guards against a rewrite that leaves stale rows or touches text around the table."""
    models = tmp_path / "models" / "m3-yearly"
    models.mkdir(parents=True)
    method = {"smape": 0.1, "mase": 0.2}
    evaluation = {
        "smape": 16.384,
        "mase": 2.7981,
        "coverage_80": 0.827,
        "coverage_95": 0.951,
        "cpu_ms_per_series": 0.123,
        "peers": {"AutoETS": method, "AutoTheta": method},
        "baselines": {"naive2": method, "seasonal_naive": method},
    }
    (models / "eval.json").write_text(json.dumps(evaluation))
    readme = (
        "intro\n\n## The model and how good it is\n\ntext\n\n"
        "| set | method | sMAPE | MASE | 80% coverage | 95% coverage | CPU ms/series |\n"
        "|---|---|---|---|---|---|---|\n"
        "| m3-yearly | AutoETS | 1.00 | 1.000 | – | – | – |\n"
        "\nafter | not a row\n\n## Next\n| x |\n"
    )
    rows = table_rows(tmp_path / "models", ("m3-monthly", "m3-yearly"))
    written = rewrite(readme, rows)
    assert readme_rows(written) == rows
    assert rows[0] == ["m3-yearly", "**shipped model**", "16.38", "2.798", "82.7", "95.1", "0.12"]
    assert len(rows) == len(ROWS) - 2  # no parts: the two part rows are left out
    parts = {"LSTM ensemble": {**method, "coverage_80": 0.8}, "Theta": method}
    (models / "eval.json").write_text(json.dumps({**evaluation, "parts": parts}))
    with_parts = table_rows(tmp_path / "models", ("m3-yearly",))
    assert [row[1] for row in with_parts] == list(ROWS)
    assert with_parts[1] == ["m3-yearly", "LSTM ensemble alone", "0.10", "0.200", "80.0", "–", "–"]
    assert written.endswith("\n\nafter | not a row\n\n## Next\n| x |\n")
    assert written.startswith("intro\n\n## The model and how good it is\n\ntext\n\n| set |")

"""docs/API.md's reference tables say what the code does: errors, metrics, settings."""

from __future__ import annotations

import re
from pathlib import Path

from annotated_types import Ge, Gt
from prometheus_client.metrics import MetricWrapperBase
from pydantic import SecretStr

from service import errors, metrics
from service.settings import Settings

API = Path(__file__).resolve().parents[2] / "docs" / "API.md"


def table(heading: str) -> list[list[str]]:
    """The body rows of the first table under `## heading`, cells stripped."""
    section = API.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    # Split on pipes not escaped as `\|` (used inside cells for |value|).
    rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return rows[2:]  # after the header and the |---| line


def code(cell: str) -> str:
    """The text of a cell that is one `code span`."""
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"expected one `code` span, got {cell!r}"
    return match[1]


def test_error_table_matches_the_status_table() -> None:
    """Guards against a reason added to (or renumbered in) errors.STATUS but not documented,
    or a documented reason the service never answers."""
    documented = {(code(row[1]), int(row[0])) for row in table("Errors")}
    assert documented == set(errors.STATUS.items())


def test_metric_table_matches_the_registry() -> None:
    """Guards against a metric renamed, retyped or relabelled in service/metrics.py while
    the dashboard's authors read the old name here."""
    registered = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            kind = value._type
            name = value._name + ("_total" if kind == "counter" else "")
            registered[name] = (kind, tuple(value._labelnames))
    documented = {}
    for row in table("Metrics"):
        match = re.fullmatch(r"`(\w+)(?:\{([\w,]+)\})?`", row[0])
        assert match, row[0]
        labels = tuple(match[2].split(",")) if match[2] else ()
        documented[match[1]] = (row[1], labels)
    assert documented == registered


def default_value(cell: str) -> object:
    """A settings table default as a Python value: `true`, `20`, `1e15`, empty, `text`."""
    if cell == "empty":
        return ""
    text = code(cell)
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def test_settings_table_matches_the_settings_class() -> None:
    """Guards against a setting added, renamed, re-defaulted or re-bounded in
    service/settings.py while this table still tells operators the old one."""
    fields = Settings.model_fields
    rows = table("Settings")
    assert [code(row[0]) for row in rows] == [f"FORECASTER_{name.upper()}" for name in fields]
    for row, (name, field) in zip(rows, fields.items(), strict=True):
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        assert default_value(row[1]) == default, name
        bounds = [f"≥ {m.ge:g}" for m in field.metadata if isinstance(m, Ge)]
        bounds += [f"> {m.gt:g}" for m in field.metadata if isinstance(m, Gt)]
        assert row[2] == (bounds[0] if bounds else "–"), name


def test_tables_are_found() -> None:
    """Guards against the checks above passing vacuously on a renamed heading."""
    assert len(table("Errors")) >= len(errors.STATUS)
    assert len(table("Metrics")) >= 10
    assert len(table("Settings")) == len(Settings.model_fields)

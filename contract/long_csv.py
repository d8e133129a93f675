"""The long-format CSV that training (`training.data`) and the batch client
(`client.table`) both read, row by row.

A header names at least `series_id`, `timestamp` and `value`, in any order; other
columns are ignored. Every row has the header's number of fields and a `series_id`.
Timestamps are integers or ISO-8601 dates/times (`2024-01`, `2024-01-31`,
`2024-01-31T12:00`), values finite floats. Lines are 1-based, the header is line 1.

Standard library only, like `contract.frequency`, so the client can read the format
without `training/`. What a reader does with a problem differs (training stops, the
client refuses one series), so cell parsers raise ValueError stating the rule and the
value received, and the callers add where it happened.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol, TypeVar

REQUIRED_COLUMNS = ("series_id", "timestamp", "value")

# ASCII digits only: fromisoformat takes no others, so a month in other digits must not
# parse here and then fail as a series' start.
_YEAR_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")

Timestamp = int | datetime
Kind = Literal["integer", "naive", "aware"]  # naive: no UTC offset; aware: one
_Step = TypeVar("_Step", int, timedelta)


class CsvReader(Protocol):
    """What `csv.reader` returns, as the readers use it."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class ColumnError(ValueError):
    """A required column is missing from the header (`count` 0) or named more than once."""

    def __init__(self, column: str, count: int, names: list[str]) -> None:
        self.column, self.count, self.names = column, count, names
        super().__init__(
            f"column {column!r} appears {count} times"
            if count
            else f"missing column {column!r}; header must include "
            f"{', '.join(REQUIRED_COLUMNS)}, got {', '.join(map(repr, names))}"
        )


def column_indices(header: list[str]) -> dict[str, int]:
    """Positions of the required columns, names stripped; extra columns are ignored.

    Raises ColumnError for the first required column not named exactly once.
    """
    names = [name.strip() for name in header]
    indices: dict[str, int] = {}
    for column in REQUIRED_COLUMNS:
        positions = [i for i, name in enumerate(names) if name == column]
        if len(positions) != 1:
            raise ColumnError(column, len(positions), names)
        indices[column] = positions[0]
    return indices


@dataclass(frozen=True)
class Row:
    """One data row's required fields, stripped, and the lines it spans."""

    line: int  # where it starts
    end: int  # where it ends: a quoted field may span lines
    series_id: str
    timestamp: str
    value: str


def data_rows(
    path: Path,
    reader: CsvReader,
    header: list[str],
    columns: dict[str, int],
    error: type[Exception],
) -> Iterator[Row]:
    """The rows after the header, blank lines skipped.

    Raises `error` naming the file and line for a row whose number of fields is not the
    header's, or whose series_id is empty.
    """
    end_of_previous = reader.line_num
    for row in reader:
        # A quoted field may span lines; the row starts right after the previous one ended.
        line = end_of_previous + 1
        end_of_previous = reader.line_num
        if not row:
            continue  # blank lines (often a trailing one) carry no data
        if len(row) != len(header):
            raise error(
                f"{path}, line {line}: row must have {len(header)} fields like the header, "
                f"got {len(row)}"
            )
        sid = row[columns["series_id"]].strip()
        if not sid:
            raise error(f"{path}, line {line}: series_id must not be empty")
        timestamp, value = row[columns["timestamp"]].strip(), row[columns["value"]].strip()
        yield Row(line, end_of_previous, sid, timestamp, value)


def iso_text(raw: str) -> str:
    """`raw` as ISO 8601 writes it: a month, "2024-01", is its first day, "2024-01-01"."""
    return f"{raw}-01" if _YEAR_MONTH.match(raw) else raw


def parse_timestamp(raw: str) -> Timestamp:
    """An integer or an ISO-8601 date/time; a month ("2024-01") is its first day.

    Raises ValueError stating the rule and `raw`.
    """
    if not raw:
        raise ValueError("timestamp must not be empty")
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        # fromisoformat does not take "YYYY-MM", the usual way to write a month.
        return datetime.fromisoformat(iso_text(raw))
    except ValueError:
        raise ValueError(
            f"timestamp must be an integer or an ISO-8601 date/time, got {raw!r}"
        ) from None


def timestamp_kind(stamp: Timestamp) -> Kind:
    """Which kind `stamp` is; a series (or file) keeps to one, or sorting mixes them."""
    if isinstance(stamp, int):
        return "integer"
    return "naive" if stamp.tzinfo is None else "aware"


def parse_value(raw: str) -> float:
    """A finite float. Raises ValueError stating the rule and `raw`."""
    if not raw:
        raise ValueError("value must not be empty")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"value must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"value must be finite, got {raw!r}")
    return value


def usual_step(steps: Sequence[_Step]) -> _Step:
    """The step most of `steps` are, the smallest of a tie: the one a gap or an odd
    point breaks, rather than whichever comes first."""
    counts = Counter(steps)
    return min(counts, key=lambda step: (-counts[step], step))

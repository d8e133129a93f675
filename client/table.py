"""The batch command's files: the long-format input read as a stream of series, and the
long-format forecasts written one series at a time.

Input is the training CSV format, read by `contract.long_csv`: a header naming at least
`series_id`, `timestamp` and `value`, in any order, other columns ignored; timestamps
integers or ISO-8601 dates/times; line numbers 1-based with the header on line 1. One
more rule, so that a file of any size streams: **the rows of each series are
contiguous** (in any time order among themselves). A series that shows up again after
another one stops the command, before a forecast of half its history is written.

Each series is sorted by time and must be equally spaced: integers by their most
common step, dates and times by one step of the frequency (`contract.frequency`).

A row that breaks the structure (wrong number of fields, no `series_id`, not UTF-8)
stops the command too (`BatchError`); a bad value or timestamp only refuses its own
series (`InputSeries.problem`), which is reported and skipped.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from client.results import SeriesForecast
from contract.frequency import LONG_NAMES, Frequency, Start, parse_start, step_timestamps
from contract.long_csv import (
    REQUIRED_COLUMNS,
    ColumnError,
    CsvReader,
    Timestamp,
    column_indices,
    data_rows,
    iso_text,
    parse_timestamp,
    parse_value,
    timestamp_kind,
    usual_step,
)


class BatchError(Exception):
    """The command cannot go on: one line naming the file and line, or the service's error."""


@dataclass
class InputSeries:
    """One series of the input file, its values in time order."""

    index: int  # position among the file's series, 0-based
    id: str
    line: int  # the line of its first row in the file
    values: list[float] = field(default_factory=list)
    start: str | None = None  # date/time series of no known frequency: `start` to send
    origin: Start | None = None  # date/time series of a known frequency: its first step
    frequency: Frequency | None = None
    last: int | None = None  # integer series: its last timestamp and its step
    step: int | None = None
    problem: str | None = None  # why it cannot be sent; None when it can
    end_offset: int = 0  # bytes of the file read up to the end of its last row

    def next_stamps(self, count: int) -> list[str] | None:
        """The `count` timestamps after its last one; None when only the service knows
        them (a date series of no known frequency, sent with its `start`)."""
        if self.last is not None and self.step is not None:
            return [str(self.last + k * self.step) for k in range(1, count + 1)]
        if self.origin is not None and self.frequency is not None:
            return step_timestamps(self.origin, self.frequency, len(self.values), count)
        return None


_Point = tuple[Timestamp, float, str, int]  # (timestamp, value, as written, line)


@dataclass
class _Rows:
    """The rows of one series as read, before they become an `InputSeries`."""

    series: InputSeries
    points: list[_Point]
    last_line: int = 0


def _finish(rows: _Rows, frequency: Frequency | None) -> InputSeries:
    """Sort the rows by time and check that they are equally spaced."""
    s = rows.series
    if s.problem is not None:
        return s
    points = rows.points
    kinds = {timestamp_kind(p[0]) for p in points}
    if len(kinds) > 1:
        s.problem = f"timestamps must all be of one kind, got {' and '.join(sorted(kinds))}"
        return s
    points.sort(key=lambda p: p[0])
    for a, b in itertools.pairwise(points):
        if a[0] == b[0]:
            s.problem = f"timestamp {b[2]!r} appears twice (lines {a[3]} and {b[3]})"
            return s
    s.values = [p[1] for p in points]
    first = points[0][0]
    if not isinstance(first, int):
        return _dated(s, points, frequency)
    stamps = [t for t, *_ in points if isinstance(t, int)]  # all of them: one kind
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    s.step = usual_step(steps) if steps else 1
    s.last = stamps[-1]
    for i, step in enumerate(steps):
        if step != s.step:
            s.problem = (
                f"timestamps must be equally spaced (step {s.step}), got {stamps[i]} then "
                f"{stamps[i + 1]} (line {points[i + 1][3]})"
            )
            return s
    return s


def _dated(s: InputSeries, points: list[_Point], frequency: Frequency | None) -> InputSeries:
    """A date/time series: with a frequency, its steps checked and known; without, its
    `start` for the service."""
    written = points[0][2]
    # contract's start is a date or a datetime; "2024-01", a month, is its first day.
    start = parse_start(iso_text(written))
    if frequency is None:
        s.start = str(start)
        return s
    try:
        expected = step_timestamps(start, frequency, 0, len(points))
    except ValueError as exc:
        s.problem = str(exc)
        return s
    for (stamp, _, raw, line), text in zip(points, expected, strict=True):
        if stamp != parse_timestamp(text):
            s.problem = (
                f"timestamps must step by one {LONG_NAMES[frequency].lower()} ({frequency}) "
                f"from {written}: expected {text}, got {raw} (line {line})"
            )
            return s
    s.origin, s.frequency = start, frequency
    return s


def read_series(path: Path, frequency: Frequency | None = None) -> Iterator[InputSeries]:
    """The series of a long-format CSV, in file order, each as soon as its rows end.

    Date/time series must step by `frequency` (the model's, or the one asked for); with
    none known, their timestamps are the service's to give.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BatchError(f"{path}: cannot open file: {exc.strerror or exc}") from exc
    position = 0

    def lines() -> Iterator[str]:
        nonlocal position
        for number, raw in enumerate(handle, start=1):
            position += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BatchError(f"{path}, line {number}: not UTF-8 text: {exc.reason}") from None
            yield text.removeprefix("\ufeff") if number == 1 else text

    with handle:
        reader = csv.reader(lines())
        try:
            yield from _rows_to_series(path, reader, lambda: position, frequency)
        except csv.Error as exc:
            raise BatchError(f"{path}, line {reader.line_num}: not a valid CSV: {exc}") from exc


def _rows_to_series(
    path: Path, reader: CsvReader, offset: Callable[[], int], frequency: Frequency | None
) -> Iterator[InputSeries]:
    header = next(reader, None)
    if header is None:
        raise BatchError(f"{path}: file is empty; expected a header {','.join(REQUIRED_COLUMNS)}")
    try:
        columns = column_indices(header)
    except ColumnError as exc:
        got = "missing" if not exc.count else f"appears {exc.count} times"
        raise BatchError(
            f"{path}, line 1: column {exc.column!r} {got}; the header must name each of "
            f"{', '.join(REQUIRED_COLUMNS)} once, got {', '.join(map(repr, exc.names))}"
        ) from None
    seen: dict[str, int] = {}  # series id -> the line its rows ended on
    current: _Rows | None = None
    for row in data_rows(path, reader, header, columns, BatchError):
        line, sid = row.line, row.series_id
        if current is None or sid != current.series.id:
            if current is not None:
                seen[current.series.id] = current.last_line
                yield _finish(current, frequency)
            if sid in seen:
                raise BatchError(
                    f"{path}, line {line}: series {sid!r} appears again after other series "
                    f"(its rows ended on line {seen[sid]}); the rows of each series must be "
                    "contiguous: sort the file by series_id"
                )
            current = _Rows(InputSeries(index=len(seen), id=sid, line=line), [])
        try:
            stamp, value = parse_timestamp(row.timestamp), parse_value(row.value)
        except ValueError as exc:
            if current.series.problem is None:
                current.series.problem = f"{exc} (line {line})"
        else:
            current.points.append((stamp, value, row.timestamp, line))
        current.last_line = row.end
        current.series.end_offset = offset()
    if current is None:
        raise BatchError(f"{path}: file has a header but no data rows")
    yield _finish(current, frequency)


def level_name(level: float) -> str:
    """How the service names a level in `intervals` ("lo-80"): 80 and 80.0 -> "80"."""
    return f"{level:g}"


class ForecastWriter:
    """Writes `series_id,timestamp,point,q<q>...,lo-<l>,hi-<l>...`, one row per step."""

    def __init__(self, handle: TextIO, quantiles: Sequence[str], levels: Sequence[str]) -> None:
        self.quantiles = list(quantiles)
        self.bounds = [f"{side}-{level}" for level in levels for side in ("lo", "hi")]
        self._csv = csv.writer(handle, lineterminator="\n")
        self._csv.writerow(
            ["series_id", "timestamp", "point", *(f"q{q}" for q in self.quantiles), *self.bounds]
        )

    def write(self, series: InputSeries, forecast: SeriesForecast) -> int:
        """The rows of one series' forecast; their number. Floats are written by `repr`,
        so reading them back gives exactly the numbers the service answered."""
        h = len(forecast.point)
        stamps = series.next_stamps(h) or forecast.timestamps
        if stamps is None or len(stamps) != h:
            raise BatchError(
                f"the service answered series {series.id!r} without {h} timestamps "
                f"(got {stamps!r}); does it take a series' `start`?"
            )
        columns = [forecast.point]
        try:
            columns += [forecast.quantiles[q] for q in self.quantiles]
            if self.bounds:
                columns += [(forecast.intervals or {})[b] for b in self.bounds]
        except KeyError as exc:
            raise BatchError(
                f"the service's answer for series {series.id!r} lacks {exc.args[0]!r}; it has "
                f"quantiles {sorted(forecast.quantiles)} and intervals "
                f"{sorted(forecast.intervals or {})}"
            ) from None
        for step, stamp in enumerate(stamps):
            self._csv.writerow([series.id, stamp, *(repr(c[step]) for c in columns)])
        return h

"""The long-format CSV's rows and cells, as training and the batch client both read them."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from contract import long_csv


def rows(text: str, error: type[Exception] = ValueError) -> list[long_csv.Row]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    columns = long_csv.column_indices(header)
    return list(long_csv.data_rows(Path("f.csv"), reader, header, columns, error))


def test_columns_are_found_in_any_order_stripped_and_extra_ones_ignored() -> None:
    """Guards against a header that names the columns in another order, pads them with
    spaces or carries a `unit` column failing to load."""
    assert long_csv.column_indices([" value", "unit", "timestamp ", "series_id"]) == {
        "series_id": 3,
        "timestamp": 2,
        "value": 0,
    }


@pytest.mark.parametrize(
    ("header", "column", "count", "message"),
    [
        (
            ["series_id", "timestamp", "valu"],
            "value",
            0,
            "missing column 'value'; header must include series_id, timestamp, value, "
            "got 'series_id', 'timestamp', 'valu'",
        ),
        (
            ["series_id", "timestamp", "series_id", "value"],
            "series_id",
            2,
            "column 'series_id' appears 2 times",
        ),
    ],
)
def test_a_column_missing_or_twice_is_named_with_its_count(
    header: list[str], column: str, count: int, message: str
) -> None:
    """Guards against a misspelt column being silently ignored as an extra one, and against
    a column named twice reading whichever comes first."""
    with pytest.raises(long_csv.ColumnError) as caught:
        long_csv.column_indices(header)
    assert (caught.value.column, caught.value.count, str(caught.value)) == (column, count, message)


def test_rows_know_the_lines_they_span_and_blank_lines_are_skipped() -> None:
    """Guards against line numbers that drift after a blank line or a quoted field over two
    lines, which would point a user at the wrong row."""
    assert rows('series_id,timestamp,value\n a ,1, 2 \n\n"b\nc",2,3\nd,3,4\n') == [
        long_csv.Row(2, 2, "a", "1", "2"),
        long_csv.Row(4, 5, "b\nc", "2", "3"),
        long_csv.Row(6, 6, "d", "3", "4"),
    ]


class _Refusal(Exception):
    pass


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a,1\n", "f.csv, line 2: row must have 3 fields like the header, got 2"),
        ("a,1,1\n  ,2,2\n", "f.csv, line 3: series_id must not be empty"),
    ],
)
def test_a_broken_row_raises_the_callers_error(body: str, message: str) -> None:
    """Guards against a row error escaping as some other class than the reader's own
    (training's DataError, the client's BatchError), which its caller would not catch."""
    with pytest.raises(_Refusal) as caught:
        rows("series_id,timestamp,value\n" + body, _Refusal)
    assert str(caught.value) == message


def test_timestamps_parse_to_one_of_three_kinds() -> None:
    """Guards against "2024-01" (a month) being refused, and against naive and aware
    date-times counting as one kind (sorting them together raises TypeError)."""
    parsed = [long_csv.parse_timestamp(raw) for raw in ("-3", "2024-01", "2024-01-31T12:00+02:00")]
    assert parsed == [
        -3,
        datetime(2024, 1, 1),
        datetime(2024, 1, 31, 12, tzinfo=timezone(timedelta(hours=2))),
    ]
    assert [long_csv.timestamp_kind(t) for t in parsed] == ["integer", "naive", "aware"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "timestamp must not be empty"),
        ("2024-13", "timestamp must be an integer or an ISO-8601 date/time, got '2024-13'"),
        # A month in other digits: ISO 8601 dates take ASCII digits only.
        ("٢٠٢٤-٠١", "timestamp must be an integer or an ISO-8601 date/time, got '٢٠٢٤-٠١'"),
    ],
)
def test_a_bad_timestamp_states_the_rule_and_the_text(raw: str, message: str) -> None:
    """Guards against an empty or impossible timestamp loading, and against a month in
    non-ASCII digits parsing here, then failing uncaught as the client's series start
    (contract.frequency.parse_start takes ASCII digits only)."""
    with pytest.raises(ValueError) as caught:
        long_csv.parse_timestamp(raw)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "value must not be empty"),
        ("1,5", "value must be a number, got '1,5'"),
        ("-inf", "value must be finite, got '-inf'"),
    ],
)
def test_a_bad_value_states_the_rule_and_the_text(raw: str, message: str) -> None:
    """Guards against an empty cell or an infinity loading as a number."""
    with pytest.raises(ValueError) as caught:
        long_csv.parse_value(raw)
    assert str(caught.value) == message


def test_the_usual_step_is_the_most_common_and_the_smallest_of_a_tie() -> None:
    """Guards against the first step (which may itself be the gap) setting the spacing, and
    against a tie resolved by file order."""
    assert long_csv.usual_step([2, 1, 1, 3]) == 1
    assert long_csv.usual_step([3, 2, 3, 2]) == 2
    day, week = timedelta(days=1), timedelta(weeks=1)
    assert long_csv.usual_step([week, day]) == day

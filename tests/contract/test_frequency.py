"""Frequencies and forecast timestamps: calendar steps, offsets kept, spellings accepted."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.frequency import (
    ACCEPTED,
    LONG_NAMES,
    Frequency,
    Start,
    model_frequency,
    parse_frequency,
    parse_start,
    step_timestamps,
)


def steps(start: str, frequency: Frequency, first: int, count: int) -> list[str]:
    return step_timestamps(parse_start(start), frequency, first, count)


def test_monthly_from_a_month_end_steps_to_month_ends() -> None:
    """Guards against 2020-01-31 + 1 month landing on 2020-03-02 (day overflow) or on the
    29th forever after February (repeated adding)."""
    assert steps("2020-01-31", Frequency.M, 0, 5) == [
        "2020-01-31",
        "2020-02-29",
        "2020-03-31",
        "2020-04-30",
        "2020-05-31",
    ]
    assert steps("2019-01-31", Frequency.M, 1, 2) == ["2019-02-28", "2019-03-31"]


def test_monthly_from_a_day_before_the_month_end_keeps_its_day() -> None:
    """Guards against a clipped day (Feb 29) drifting into every later month, and against
    the 30th being taken for a month end."""
    assert steps("2020-01-30", Frequency.M, 0, 4) == [
        "2020-01-30",
        "2020-02-29",
        "2020-03-30",
        "2020-04-30",
    ]
    assert steps("2020-01-30", Frequency.M, 5, 1) == ["2020-06-30"]
    assert steps("2020-01-30", Frequency.M, 6, 1) == ["2020-07-30"]


def test_quarterly_steps_three_calendar_months() -> None:
    """Guards against quarters taken as 90 days, or a quarter end losing its month end."""
    assert steps("2019-12-31", Frequency.Q, 0, 5) == [
        "2019-12-31",
        "2020-03-31",
        "2020-06-30",
        "2020-09-30",
        "2020-12-31",
    ]
    assert steps("2020-02-15", Frequency.Q, 0, 4) == [
        "2020-02-15",
        "2020-05-15",
        "2020-08-15",
        "2020-11-15",
    ]


def test_yearly_from_a_leap_day() -> None:
    """Guards against 2020-02-29 + 1 year raising (no 2021-02-29) or becoming March 1st."""
    assert steps("2020-02-29", Frequency.Y, 0, 5) == [
        "2020-02-29",
        "2021-02-28",
        "2022-02-28",
        "2023-02-28",
        "2024-02-29",
    ]


def test_the_kserve_examples() -> None:
    """Guards against an off-by-one at the forecast's first step: the KServe API's daily
    series of 7 points from 2025-06-05T13:10:00Z forecasts from 2025-06-12T13:10:00Z, its
    hourly one of 5 points from 18:10, both with "Z" kept."""
    assert steps("2025-06-05T13:10:00Z", Frequency.D, 7, 2) == [
        "2025-06-12T13:10:00Z",
        "2025-06-13T13:10:00Z",
    ]
    assert steps("2025-06-05T13:10:00Z", Frequency.H, 5, 2) == [
        "2025-06-05T18:10:00Z",
        "2025-06-05T19:10:00Z",
    ]


@pytest.mark.parametrize(
    ("start", "frequency", "expected"),
    [
        ("2025-06-05T13:10:00Z", Frequency.W, ["2025-06-12T13:10:00Z", "2025-06-19T13:10:00Z"]),
        (
            "2025-06-05T23:30:00+02:00",
            Frequency.H,
            ["2025-06-06T00:30:00+02:00", "2025-06-06T01:30:00+02:00"],
        ),
        (
            "2025-12-31T23:59:30-05:00",
            Frequency.T,
            ["2026-01-01T00:00:30-05:00", "2026-01-01T00:01:30-05:00"],
        ),
        ("2025-06-05T13:10:00", Frequency.D, ["2025-06-06T13:10:00", "2025-06-07T13:10:00"]),
        ("2025-06-05T13:10:59", Frequency.S, ["2025-06-05T13:11:00", "2025-06-05T13:11:01"]),
        (
            "2025-01-31T08:00:00+00:00",
            Frequency.M,
            ["2025-02-28T08:00:00+00:00", "2025-03-31T08:00:00+00:00"],
        ),
        ("2024-02-26", Frequency.W, ["2024-03-04", "2024-03-11"]),
        ("2024-02-28", Frequency.D, ["2024-02-29", "2024-03-01"]),
    ],
)
def test_a_datetime_keeps_its_time_and_offset(
    start: str, frequency: Frequency, expected: list[str]
) -> None:
    """Guards against timestamps converted to UTC or naive, "Z" turned into "+00:00" (or
    "+00:00" into "Z"), and dates turned into datetimes."""
    assert steps(start, frequency, 1, 2) == expected


def test_a_date_start_with_a_sub_daily_frequency_is_midnight() -> None:
    """Guards against hourly steps from a date collapsing onto the same date string."""
    assert steps("2020-01-31", Frequency.H, 23, 2) == ["2020-01-31T23:00:00", "2020-02-01T00:00:00"]
    assert steps("2020-01-31", Frequency.T, 1, 1) == ["2020-01-31T00:01:00"]


def test_steps_before_the_start_and_none_at_all() -> None:
    """Guards against a negative step (the history's own timestamps) being refused or
    counted from the wrong end, and count 0 giving a step anyway."""
    assert steps("2020-03-31", Frequency.M, -2, 3) == ["2020-01-31", "2020-02-29", "2020-03-31"]
    assert steps("2020-03-31", Frequency.M, 4, 0) == []
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        steps("2020-03-31", Frequency.M, 0, -1)


def test_steps_past_year_9999_are_a_value_error() -> None:
    """Guards against an OverflowError (a 500) where the caller expects ValueError (a 4xx)."""
    with pytest.raises(ValueError, match="outside years 1 to 9999"):
        steps("9999-06-30", Frequency.Y, 1, 1)
    with pytest.raises(ValueError, match="outside years 1 to 9999"):
        steps("9999-12-30", Frequency.D, 5, 1)


def test_every_code_long_name_and_adjective_is_parsed_in_any_case() -> None:
    """Guards against a spelling the error message offers but the parser refuses."""
    for frequency in Frequency:
        for text in (frequency.value, frequency.value.lower(), LONG_NAMES[frequency]):
            assert parse_frequency(text) is frequency
        assert parse_frequency(LONG_NAMES[frequency].lower()) is frequency
    adjectives = {
        "hourly": Frequency.H,
        "Daily": Frequency.D,
        "WEEKLY": Frequency.W,
        "monthly": Frequency.M,
        "quarterly": Frequency.Q,
        "yearly": Frequency.Y,
        "annual": Frequency.Y,
    }
    for text, frequency in adjectives.items():
        assert parse_frequency(text) is frequency
    assert all(parse_frequency(text) in Frequency for text in ACCEPTED)


@pytest.mark.parametrize("text", ["", "X", "months", "secondly", "1M", "dai"])
def test_unknown_frequency_text_lists_what_is_accepted(text: str) -> None:
    """Guards against a bare "invalid frequency" that leaves the client guessing."""
    with pytest.raises(ValueError) as info:
        parse_frequency(text)
    assert str(info.value) == (
        f"unknown frequency {text!r}: use one of S, T, H, D, W, M, Q, Y, SECOND, MINUTE, "
        "HOUR, DAY, WEEK, MONTH, QUARTER, YEAR, hourly, daily, weekly, monthly, quarterly, "
        "yearly, annual (any case)"
    )


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("monthly", Frequency.M),
        ("quarterly", Frequency.Q),
        ("yearly", Frequency.Y),
        ("M", Frequency.M),
        ("other", None),
        ("custom", None),
        ("", None),
        (None, None),
    ],
)
def test_model_frequency(metadata: str | None, expected: Frequency | None) -> None:
    """Guards against a model without a fixed frequency ("other", a CSV's label) being
    given one, or a shipped monthly model being given none."""
    assert model_frequency(metadata) is expected


def test_parse_start_forms() -> None:
    """Guards against a date start parsed as a datetime (steps written with a time) and
    "Z" not being remembered."""
    assert parse_start("2020-01-31") == Start(parse_start("2020-01-31T00:00").moment, True)
    assert str(parse_start("2020-01-31")) == "2020-01-31"
    assert str(parse_start("2025-06-05T13:10:00Z")) == "2025-06-05T13:10:00Z"
    assert str(parse_start("2025-06-05T13:10:00+00:00")) == "2025-06-05T13:10:00+00:00"
    assert str(parse_start(" 2025-06-05T13:10+02:00")) == "2025-06-05T13:10:00+02:00"
    assert parse_start("2025-06-05T13:10:00+02:00").moment.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize("text", ["", "yesterday", "2020-13-01", "2020-02-30", "05/06/2025"])
def test_bad_start_names_the_accepted_forms(text: str) -> None:
    """Guards against a start the parser cannot read passing silently or failing with
    Python's own "Invalid isoformat string"."""
    with pytest.raises(ValueError) as info:
        parse_start(text)
    assert str(info.value) == (
        f"start {text!r} is not an ISO 8601 date (2020-01-31) or datetime "
        "(2025-06-05T13:10:00Z, 2025-06-05T13:10:00+02:00, or 2025-06-05T13:10:00 "
        "without an offset)"
    )


starts = st.one_of(
    st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat),
    st.builds(
        lambda d, h, m, offset: f"{d.isoformat()}T{h:02d}:{m:02d}:00{offset}",
        st.dates(date(1900, 1, 1), date(2100, 12, 31)),
        st.integers(0, 23),
        st.integers(0, 59),
        st.sampled_from(["", "Z", "+02:00", "-05:30"]),
    ),
)


@given(
    start=starts,
    frequency=st.sampled_from(Frequency),
    first=st.integers(-300, 300),
    count=st.integers(1, 30),
    data=st.data(),
)
def test_each_step_is_computed_from_the_start(
    start: str, frequency: Frequency, first: int, count: int, data: st.DataObject
) -> None:
    """Guards against drift: step k of a run equals that step asked for alone, so a
    forecast's timestamps do not depend on where the run began."""
    k = data.draw(st.integers(0, count - 1))
    parsed = parse_start(start)
    assert (
        step_timestamps(parsed, frequency, first, count)[k]
        == (step_timestamps(parsed, frequency, first + k, 1)[0])
    )

"""M3 and the other bundled sets' loading, and CSV loading, including every way a CSV file
can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import (
    DATASETS,
    NEAR_WINDOW_DISTANCE,
    DataError,
    SeriesSet,
    aggregate,
    load_bundled,
    load_companions,
    load_csv,
    load_m3,
    unit_windows,
    window_shapes,
)


def write(tmp_path: Path, text: str, name: str = "sales.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path, horizon: int = 2, min_train_length: int = 1) -> str:
    """The DataError message of loading `path`; fails the test if none is raised."""
    with pytest.raises(DataError) as info:
        load_csv(path, horizon=horizon, season_length=1, min_train_length=min_train_length)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_load_m3_monthly_official_split() -> None:
    """Guards against a wrong subset, horizon or split (e.g. test points left in train)."""
    m3 = load_m3("m3-monthly")
    assert (m3.name, m3.frequency, m3.horizon, m3.season_length) == (
        "m3-monthly",
        "monthly",
        18,
        12,
    )
    assert len(m3) == 1428 and len(set(m3.ids)) == 1428
    lengths = [x.shape[0] for x in m3.train]
    assert (min(lengths), max(lengths)) == (48, 126)
    assert all(y.shape == (18,) and y.dtype == np.float64 for y in m3.test)
    assert all(x.dtype == np.float64 and x.ndim == 1 for x in m3.train)
    assert m3.ids[0] == "N1402"
    assert m3.train[0][:3].tolist() == [2640.0, 2640.0, 2160.0]


@pytest.mark.parametrize(
    ("dataset", "count", "horizon", "season_length"),
    [("m3-quarterly", 756, 8, 4), ("m3-yearly", 645, 6, 1), ("m3-other", 174, 8, 1)],
)
def test_load_m3_other_subsets(dataset: str, count: int, horizon: int, season_length: int) -> None:
    """Guards against a wrong horizon or season length for the smaller subsets."""
    m3 = load_m3(dataset)
    assert (len(m3), m3.horizon, m3.season_length) == (count, horizon, season_length)
    assert m3.test_matrix().shape == (count, horizon)


def test_window_shapes_ignore_shift_and_positive_scale() -> None:
    """Guards against missing an M3 series held by a companion in other units."""
    values = np.array([3.0, 5.0, 4.0, 9.0, 9.0, 1.0, 2.0, 7.0, 6.0, 5.0])
    assert window_shapes(values) == window_shapes(50.0 * values - 7.0)
    assert len(window_shapes(values)) == 3  # three 8-point windows, all varied
    assert window_shapes(values).isdisjoint(window_shapes(-values))  # a flip is not a match
    assert window_shapes(np.full(12, 4.0)) == set()  # flat windows have no shape
    assert window_shapes(values[:7]) == set()


def test_companions_leave_out_every_series_that_is_in_m3() -> None:
    """Guards against training on M3's own test points: M3 N2504 is M1 MNC1 times 50."""
    m3 = load_m3("m3-monthly")
    n2504 = np.concatenate([m3.train[m3.ids.index("N2504")], m3.test[m3.ids.index("N2504")]])
    companions, dropped = load_companions("m3-monthly")
    assert dropped > 0 and len(companions) > 800
    assert not any(len(c) == len(n2504) and np.allclose(50.0 * c, n2504) for c in companions)
    m3_shapes: set[bytes] = set()
    for history, future in zip(m3.train, m3.test, strict=True):
        m3_shapes |= window_shapes(np.concatenate([history, future]))
    assert all(window_shapes(c).isdisjoint(m3_shapes) for c in companions)
    assert load_companions("m3-other") == ([], 0)


def test_aggregate_averages_blocks_that_end_at_the_last_point() -> None:
    """Guards against blocks aligned to the start, which would drop the newest points."""
    values = np.arange(1.0, 12.0)  # 11 points: the first two make no whole block of 3
    np.testing.assert_array_equal(aggregate(values, 3), [4.0, 7.0, 10.0])
    assert aggregate(values, 12).shape == (0,)


def test_averaged_companions_leave_out_near_copies_of_m3() -> None:
    """Guards against training the yearly model on M3 quarterly N0933, whose yearly
    averages are M3 yearly N0249 (test part included) up to rounding, and on any other
    finer series whose averages come near an M3 yearly window at any alignment."""
    m3 = load_m3("m3-yearly")
    quarterly = load_m3("m3-quarterly")
    n0933 = quarterly.train[quarterly.ids.index("N0933")]
    n0249 = np.concatenate([m3.train[m3.ids.index("N0249")], m3.test[m3.ids.index("N0249")]])
    copy = aggregate(n0933, 4)
    # The copy is real but not exact: no rounded window shape is shared at this alignment.
    assert window_shapes(copy).isdisjoint(window_shapes(n0249))
    nearest = np.abs(unit_windows(copy)[:, None] - unit_windows(n0249)).max(-1)
    assert nearest.min() < NEAR_WINDOW_DISTANCE / 10

    same_frequency, _ = load_companions("m3-yearly")
    joined, dropped = load_companions("m3-yearly", aggregated=True)
    averaged = joined[len(same_frequency) :]
    assert len(averaged) > 2000 and dropped > 100
    assert not any(len(c) == len(copy) and np.allclose(c, copy) for c in averaged)
    wholes = [np.concatenate(parts) for parts in zip(m3.train, m3.test, strict=True)]
    m3_windows = np.concatenate([unit_windows(whole) for whole in wholes])
    for series in averaged[::25]:  # a sample: every pair of windows is (W, M, 8)
        windows = unit_windows(series)
        if len(windows):
            gaps = np.abs(windows[:, None] - m3_windows[None]).max(-1)
            assert gaps.min() >= NEAR_WINDOW_DISTANCE
    only_averaged, _ = load_companions("m3-yearly", aggregated=True, same_frequency=False)
    assert len(only_averaged) == len(averaged)
    plain, plain_dropped = load_companions("m3-monthly")
    monthly, monthly_dropped = load_companions("m3-monthly", aggregated=True)
    assert (len(monthly), monthly_dropped) == (len(plain), plain_dropped)  # nothing is finer


def test_load_m3_unknown_dataset() -> None:
    """Guards against a typo loading something else or an opaque KeyError."""
    with pytest.raises(ValueError, match="unknown dataset 'm3-weekly'; choose one of m3-monthly"):
        load_m3("m3-weekly")
    assert DATASETS == ("m3-monthly", "m3-quarterly", "m3-yearly", "m3-other")


def test_load_csv_order_sort_and_split(tmp_path: Path) -> None:
    """Guards against reordering series, splitting before sorting, or choking on extra columns.

    Series b appears first; rows are out of time order; an extra `unit` column is ignored.
    """
    path = write(
        tmp_path,
        "value,unit,timestamp,series_id\n"
        "3,kg,2024-03-01,b\n"
        "1,kg,2024-01-01,b\n"
        "10,kg,2024-01,a\n"
        "2,kg,2024-02-01,b\n"
        "4,kg,2024-04-01,b\n"
        "\n"
        "20,kg,2024-02,a\n"
        "30,kg,2024-03,a\n",
    )
    data = load_csv(path, horizon=1, season_length=1, min_train_length=2)
    assert isinstance(data, SeriesSet)
    assert (data.name, data.frequency, data.horizon, data.season_length) == (
        "sales",
        "custom",
        1,
        1,
    )
    assert data.ids == ["b", "a"]
    assert [x.tolist() for x in data.train] == [[1.0, 2.0, 3.0], [10.0, 20.0]]
    assert [y.tolist() for y in data.test] == [[4.0], [30.0]]
    assert data.train[0].dtype == np.float64


def test_load_csv_integer_timestamps_sort_numerically(tmp_path: Path) -> None:
    """Guards against sorting timestamps as strings ("10" before "9")."""
    rows = "".join(f"s,{t},{t}\n" for t in (10, 9, 8, 11, 7))
    data = load_csv(write(tmp_path, "series_id,timestamp,value\n" + rows), 2, 1, min_train_length=3)
    assert data.train[0].tolist() == [7.0, 8.0, 9.0]
    assert data.test[0].tolist() == [10.0, 11.0]


def test_missing_file(tmp_path: Path) -> None:
    """Guards against a raw FileNotFoundError traceback instead of a one-line message."""
    path = tmp_path / "nope.csv"
    assert load_error(path) == f"{path}: cannot open file: No such file or directory"


def test_empty_file(tmp_path: Path) -> None:
    """Guards against an empty file loading as an empty data set."""
    path = write(tmp_path, "")
    assert load_error(path) == (
        f"{path}: file is empty; expected a header line series_id,timestamp,value"
    )


def test_header_only(tmp_path: Path) -> None:
    """Guards against a header-only file loading as an empty data set."""
    path = write(tmp_path, "series_id,timestamp,value\n")
    assert load_error(path) == f"{path}: file has a header but no data rows"


def test_missing_column(tmp_path: Path) -> None:
    """Guards against a misspelt column being ignored as an extra one, or a KeyError."""
    path = write(tmp_path, "series_id,timestamp,valeu\na,1,1\n")
    assert load_error(path) == (
        f"{path}, line 1: missing column 'value'; header must include series_id, timestamp, "
        "value, got 'series_id', 'timestamp', 'valeu'"
    )


def test_non_numeric_value(tmp_path: Path) -> None:
    """Guards against a bad value's message missing its line or series."""
    path = write(tmp_path, "series_id,timestamp,value\na,1,1\na,2,2\nb,1,abc\n")
    assert load_error(path) == f"{path}, line 4, series 'b': value must be a number, got 'abc'"


def test_empty_value(tmp_path: Path) -> None:
    """Guards against an empty cell loading as 0 or NaN."""
    path = write(tmp_path, "series_id,timestamp,value\na,1,\n")
    assert load_error(path) == f"{path}, line 2, series 'a': value must not be empty"


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-Infinity"])
def test_non_finite_value(tmp_path: Path, raw: str) -> None:
    """Guards against float() letting NaN and infinities through into training."""
    path = write(tmp_path, f"series_id,timestamp,value\na,1,1\na,2,{raw}\n")
    assert load_error(path) == f"{path}, line 3, series 'a': value must be finite, got '{raw}'"


def test_duplicate_timestamp(tmp_path: Path) -> None:
    """Guards against a duplicated observation silently lengthening the series."""
    path = write(
        tmp_path,
        "series_id,timestamp,value\na,2024-01-01,1\nb,2024-01-01,1\na,2024-01-01,2\n",
    )
    assert load_error(path) == (
        f"{path}, line 4, series 'a': timestamps must be unique within a series, "
        "got '2024-01-01' again (first on line 2)"
    )


def test_duplicate_timestamp_written_differently(tmp_path: Path) -> None:
    """Guards against comparing timestamps as text: 2024-01 and 2024-01-01 are one month."""
    path = write(tmp_path, "series_id,timestamp,value\na,2024-01,1\na,2024-01-01,2\n")
    assert "line 3, series 'a': timestamps must be unique" in load_error(path)


def test_series_too_short(tmp_path: Path) -> None:
    """Guards against a series too short to split being loaded (or dropped) silently."""
    rows = "a,1,1\na,2,1\na,3,1\na,4,1\nb,1,1\nb,2,1\nb,3,1\n"
    path = write(tmp_path, "series_id,timestamp,value\n" + rows)
    assert load_error(path, horizon=2, min_train_length=2) == (
        f"{path}, line 6, series 'b': series must have at least min_train_length + horizon "
        "= 2 + 2 = 4 points, got 3"
    )


def test_mixed_timestamp_kinds(tmp_path: Path) -> None:
    """Guards against a TypeError from comparing integers with dates while sorting."""
    path = write(tmp_path, "series_id,timestamp,value\na,1,1\nb,2024-01-01,1\n")
    assert load_error(path) == (
        f"{path}, line 3, series 'b': timestamps must all be of one kind (integer, as on "
        "line 2), got ISO date/time without UTC offset '2024-01-01'"
    )


def test_bad_timestamp(tmp_path: Path) -> None:
    """Guards against an unparseable timestamp being sorted as text."""
    path = write(tmp_path, "series_id,timestamp,value\na,1/2/2024,1\n")
    assert load_error(path) == (
        f"{path}, line 2, series 'a': timestamp must be an integer or an ISO-8601 date/time, "
        "got '1/2/2024'"
    )


def test_wrong_field_count(tmp_path: Path) -> None:
    """Guards against a short row shifting values into the wrong columns."""
    path = write(tmp_path, "series_id,timestamp,value\na,1,1\na,2\n")
    assert load_error(path) == f"{path}, line 3: row must have 3 fields like the header, got 2"


def test_empty_series_id(tmp_path: Path) -> None:
    """Guards against rows without a series merging into a nameless series."""
    path = write(tmp_path, "series_id,timestamp,value\n,1,1\n")
    assert load_error(path) == f"{path}, line 2: series_id must not be empty"


def test_line_numbers_count_multiline_quoted_fields(tmp_path: Path) -> None:
    """Guards against csv record numbers being reported instead of file line numbers."""
    path = write(tmp_path, 'series_id,timestamp,value,note\na,1,1,"two\nlines"\na,2,x,ok\n')
    assert load_error(path) == f"{path}, line 4, series 'a': value must be a number, got 'x'"


def spaced(tmp_path: Path, *stamps: str) -> Path:
    """A one-series file `a` with these timestamps, in this order, values 1, 2, ..."""
    rows = "".join(f"a,{stamp},{k}\n" for k, stamp in enumerate(stamps, start=1))
    return write(tmp_path, "series_id,timestamp,value\n" + rows)


@pytest.mark.parametrize(
    "stamps",
    [
        ("2020-01-31", "2020-02-29", "2020-03-31", "2020-04-30", "2020-06-30"),
        ("2020-01", "2020-02", "2020-03", "2020-04", "2020-06"),
        ("2020-01-01", "2020-04-01", "2020-07-01", "2020-10-01", "2021-04-01"),
        ("2020-03-31", "2020-06-30", "2020-09-30", "2020-12-31", "2021-06-30"),
        ("2019-01-01", "2020-01-01", "2021-01-01", "2022-01-01", "2024-01-01"),
        ("2020-12-31", "2021-12-31", "2022-12-31", "2023-12-31", "2025-12-31"),
        ("2020-02-28", "2020-02-29", "2020-03-01", "2020-03-02", "2020-03-04"),
        (
            "2020-03-29T00:00",
            "2020-03-29T01:00",
            "2020-03-29T02:00",
            "2020-03-29T03:00",
            "2020-03-29T05:00",
        ),
        (
            "2020-03-29T00:00+01:00",
            "2020-03-29T01:00+01:00",
            "2020-03-29T03:00+02:00",
            "2020-03-29T04:00+02:00",
            "2020-03-29T06:00+02:00",
        ),
        ("1", "2", "3", "4", "6"),
        ("1990", "1995", "2000", "2005", "2015"),
    ],
    ids=[
        "month-ends",
        "year-months",
        "quarter-starts",
        "quarter-ends",
        "years",
        "year-ends",
        "days-over-a-leap-day",
        "hours",
        "hours-across-dst",
        "integers",
        "every-5",
    ],
)
def test_equally_spaced_series_load_and_a_gap_is_named(
    tmp_path: Path, stamps: tuple[str, ...]
) -> None:
    """Guards against rejecting regular calendar series (month-ends, quarters, years,
    daily over a leap day, hourly across a change of UTC offset), or letting a missing
    point through: the first four stamps load, and the fifth comes one step late."""
    data = load_csv(spaced(tmp_path, *stamps[:4]), horizon=1, season_length=1, min_train_length=1)
    assert data.train[0].tolist() == [1.0, 2.0, 3.0] and data.test[0].tolist() == [4.0]
    path = spaced(tmp_path, *stamps)
    assert load_error(path).startswith(
        f"{path}, line 6, series 'a': timestamps must be equally spaced"
    )
    assert load_error(path).endswith(
        f"got '{stamps[4]}' after '{stamps[3]}' on line 5: a gap of 1 missing point"
    )


def test_gap_in_months(tmp_path: Path) -> None:
    """Guards against a missing month going unnoticed (it would shift every season)."""
    path = spaced(tmp_path, "2020-01-31", "2020-02-29", "2020-05-31", "2020-06-30")
    assert load_error(path) == (
        f"{path}, line 4, series 'a': timestamps must be equally spaced (the series steps by "
        "1 month), got '2020-05-31' after '2020-02-29' on line 3: a gap of 2 missing points"
    )


def test_gap_in_quarters_reported_on_the_later_rows_line(tmp_path: Path) -> None:
    """Guards against naming the wrong row when the file is not in time order."""
    path = write(
        tmp_path,
        "series_id,timestamp,value\n"
        "b,2020-01-01,1\nb,2020-01-02,2\nb,2020-01-03,3\n"
        "a,2021-01-01,4\na,2020-01-01,1\na,2020-04-01,2\na,2020-07-01,3\n",
    )
    assert load_error(path) == (
        f"{path}, line 5, series 'a': timestamps must be equally spaced (the series steps by "
        "1 quarter), got '2021-01-01' after '2020-07-01' on line 8: a gap of 1 missing point"
    )


def test_mixed_integer_step(tmp_path: Path) -> None:
    """Guards against a step that is no multiple of the usual one (a point out of place)."""
    path = spaced(tmp_path, "0", "2", "4", "7", "9")
    assert load_error(path) == (
        f"{path}, line 5, series 'a': timestamps must be equally spaced (the series steps by "
        "2), got '7' after '4' on line 4: a step of 3"
    )


def test_mixed_step_shorter_than_usual(tmp_path: Path) -> None:
    """Guards against an extra half-hour point being taken for the series' step."""
    path = spaced(
        tmp_path,
        "2024-01-01T00:00",
        "2024-01-01T01:00",
        "2024-01-01T01:30",
        "2024-01-01T02:30",
        "2024-01-01T03:30",
    )
    assert load_error(path) == (
        f"{path}, line 4, series 'a': timestamps must be equally spaced (the series steps by "
        "1 hour), got '2024-01-01T01:30' after '2024-01-01T01:00' on line 3: a step of 30 minutes"
    )


def test_first_step_may_be_the_gap(tmp_path: Path) -> None:
    """Guards against taking the first step as the series' step: daily data missing its
    second day is one gap, not a run of mixed steps."""
    path = spaced(tmp_path, "2024-01-01", "2024-01-03", "2024-01-04", "2024-01-05")
    assert load_error(path) == (
        f"{path}, line 3, series 'a': timestamps must be equally spaced (the series steps by "
        "1 day), got '2024-01-03' after '2024-01-01' on line 2: a gap of 1 missing point"
    )


def test_monthly_dates_off_their_day(tmp_path: Path) -> None:
    """Guards against a monthly series with one date on another day passing as monthly."""
    path = spaced(tmp_path, "2020-01-31", "2020-02-29", "2020-03-30", "2020-04-30")
    assert load_error(path) == (
        f"{path}, line 4, series 'a': dates stepping by months must all fall on month-ends, "
        "like '2020-01-31' on line 2, got '2020-03-30'"
    )
    path = spaced(tmp_path, "2020-01-15", "2020-02-15", "2020-03-16")
    assert load_error(path) == (
        f"{path}, line 4, series 'a': dates stepping by months must all fall on day 15 of the "
        "month, like '2020-01-15' on line 2, got '2020-03-16'"
    )
    path = spaced(tmp_path, "2020-01-01", "2020-02-01", "2020-03-01T12:00")
    assert load_error(path) == (
        f"{path}, line 4, series 'a': dates stepping by months must all fall on the time of "
        "day 00:00:00, like '2020-01-01' on line 2, got '2020-03-01T12:00'"
    )


def test_spacing_is_checked_per_series(tmp_path: Path) -> None:
    """Guards against comparing steps across series: each may start, and step, on its own."""
    path = write(
        tmp_path,
        "series_id,timestamp,value\n"
        "a,1,1\nb,100,1\na,2,2\nb,110,2\na,3,3\nb,120,3\nc,5,1\nc,6,2\nc,7,3\n",
    )
    data = load_csv(path, horizon=1, season_length=1, min_train_length=2)
    assert data.ids == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("dataset", "count", "horizon", "season_length"),
    [
        ("m1-monthly", 617, 18, 12),
        ("m1-quarterly", 203, 8, 4),
        ("m1-yearly", 181, 6, 1),
        ("tourism-monthly", 366, 24, 12),
        ("tourism-quarterly", 427, 8, 4),
        ("tourism-yearly", 518, 4, 1),
    ],
)
def test_load_bundled_sets_with_their_own_horizons(
    dataset: str, count: int, horizon: int, season_length: int
) -> None:
    """Guards against a bundled set written out with another competition's horizon."""
    series = load_bundled(dataset)
    assert (len(series), series.horizon, series.season_length) == (count, horizon, season_length)
    assert series.test_matrix().shape == (count, horizon)
    assert load_bundled("m3-yearly").ids == load_m3("m3-yearly").ids
    with pytest.raises(ValueError, match="unknown dataset 'm2-monthly'; choose one of m3-monthly"):
        load_bundled("m2-monthly")

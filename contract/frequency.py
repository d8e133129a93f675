"""Frequencies (the KServe time-series API's codes) and the timestamps of forecast steps.

Standard library only, so a client can use it without the service's dependencies.
Step `i` of a series is computed from its start directly, never by adding one step to
the previous one: month ends stay month ends and clipped days do not drift.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from types import MappingProxyType


class Frequency(enum.StrEnum):
    """The KServe time-series API's frequency codes (a str: `f"{Frequency.M}"` is "M")."""

    S = "S"
    T = "T"
    H = "H"
    D = "D"
    W = "W"
    M = "M"
    Q = "Q"
    Y = "Y"


# The KServe API's long names for the codes.
LONG_NAMES: Mapping[Frequency, str] = MappingProxyType(
    {
        Frequency.S: "SECOND",
        Frequency.T: "MINUTE",
        Frequency.H: "HOUR",
        Frequency.D: "DAY",
        Frequency.W: "WEEK",
        Frequency.M: "MONTH",
        Frequency.Q: "QUARTER",
        Frequency.Y: "YEAR",
    }
)

# The adjectives a model's metadata (and people) use; "secondly" and "minutely" are not words.
ADJECTIVES: Mapping[str, Frequency] = MappingProxyType(
    {
        "hourly": Frequency.H,
        "daily": Frequency.D,
        "weekly": Frequency.W,
        "monthly": Frequency.M,
        "quarterly": Frequency.Q,
        "yearly": Frequency.Y,
        "annual": Frequency.Y,
    }
)

# Every accepted spelling, as written in error messages (matched case-insensitively).
ACCEPTED: tuple[str, ...] = (
    *(f.value for f in Frequency),
    *LONG_NAMES.values(),
    *ADJECTIVES,
)
_BY_SPELLING: Mapping[str, Frequency] = MappingProxyType(
    {
        **{f.value.lower(): f for f in Frequency},
        **{name.lower(): f for f, name in LONG_NAMES.items()},
        **ADJECTIVES,
    }
)

_MONTHS_PER_STEP: Mapping[Frequency, int] = MappingProxyType(
    {Frequency.M: 1, Frequency.Q: 3, Frequency.Y: 12}
)
_FIXED_STEP: Mapping[Frequency, timedelta] = MappingProxyType(
    {
        Frequency.S: timedelta(seconds=1),
        Frequency.T: timedelta(minutes=1),
        Frequency.H: timedelta(hours=1),
        Frequency.D: timedelta(days=1),
        Frequency.W: timedelta(weeks=1),
    }
)
_SUB_DAILY = frozenset({Frequency.S, Frequency.T, Frequency.H})


def parse_frequency(text: str) -> Frequency:
    """The frequency `text` names: a code, a KServe long name or an adjective, in any case.

    Raises ValueError listing the accepted spellings.
    """
    found = _BY_SPELLING.get(text.strip().lower())
    if found is None:
        raise ValueError(f"unknown frequency {text!r}: use one of {', '.join(ACCEPTED)} (any case)")
    return found


def model_frequency(metadata_frequency: str | None) -> Frequency | None:
    """The frequency a model's metadata names ("monthly" -> M, or a code), None if it names none.

    "other", "", None and any unknown word (a CSV user's label) mean the model has no
    fixed frequency.
    """
    if not metadata_frequency:
        return None
    try:
        return parse_frequency(metadata_frequency)
    except ValueError:
        return None


@dataclass(frozen=True)
class Start:
    """A series' first timestamp (step 0) and how its steps are to be written.

    `moment` is naive or carries a fixed UTC offset; a plain date is its midnight.
    """

    moment: datetime
    is_date: bool = False  # written as a date ("2020-01-31"): steps of a day or more stay dates
    zulu: bool = False  # the offset was written "Z": steps write "Z" rather than "+00:00"

    def format(self, moment: datetime, as_date: bool) -> str:
        """`moment` written in this start's form: a date, or a datetime with its offset."""
        if as_date:
            return moment.date().isoformat()
        text = moment.isoformat()
        return text[: -len("+00:00")] + "Z" if self.zulu and text.endswith("+00:00") else text

    def __str__(self) -> str:
        return self.format(self.moment, self.is_date)


START_FORMS = (
    "an ISO 8601 date (2020-01-31) or datetime (2025-06-05T13:10:00Z, "
    "2025-06-05T13:10:00+02:00, or 2025-06-05T13:10:00 without an offset)"
)


def parse_start(text: str) -> Start:
    """A series' start from an ISO 8601 date or datetime (naive, "Z" or "+hh:mm").

    Raises ValueError naming the accepted forms.
    """
    stripped = text.strip()
    try:
        return Start(datetime.combine(date.fromisoformat(stripped), time()), is_date=True)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"start {text!r} is not {START_FORMS}") from None
    return Start(moment, zulu=stripped.endswith("Z") and moment.utcoffset() == timedelta(0))


def is_month_end(moment: datetime) -> bool:
    """Whether `moment` falls on the last day of its month."""
    return moment.day == calendar.monthrange(moment.year, moment.month)[1]


def month_index(moment: datetime) -> int:
    """Months since January of year 0: consecutive months differ by 1."""
    return moment.year * 12 + moment.month - 1


def _add_months(moment: datetime, months: int) -> datetime:
    """`moment` `months` calendar months on: a month end stays a month end, other days
    keep their number, clipped to the target month's length."""
    year, month = divmod(month_index(moment) + months, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError(f"{months} months from {moment.date()} is outside years 1 to 9999")
    length = calendar.monthrange(year, month)[1]
    day = length if is_month_end(moment) else min(moment.day, length)
    return moment.replace(year=year, month=month, day=day)


def step_timestamps(start: Start, frequency: Frequency, first: int, count: int) -> list[str]:
    """ISO timestamps of steps `first` .. `first + count - 1`; step 0 is `start` itself.

    M, Q and Y step 1, 3 and 12 calendar months (see `_add_months`); W, D, H, T and S
    are fixed durations. A date start gives dates, except with H, T or S, where it is
    midnight and gives datetimes; a datetime keeps its time and offset.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    as_date = start.is_date and frequency not in _SUB_DAILY
    months = _MONTHS_PER_STEP.get(frequency)
    moments: list[datetime] = []
    for i in range(first, first + count):
        if months is not None:
            moments.append(_add_months(start.moment, i * months))
            continue
        try:
            moments.append(start.moment + i * _FIXED_STEP[frequency])
        except OverflowError:
            raise ValueError(
                f"step {i} of {frequency.value} from {start} is outside years 1 to 9999"
            ) from None
    return [start.format(moment, as_date) for moment in moments]

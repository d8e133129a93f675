"""The body of `POST /forecast`, built from what a caller gives and nothing more.

Only the options a caller gave are sent, so the same client talks to a server that does
not know the newer ones (`levels`, `model`, `frequency`, a series' `start`) as long as
they are not asked for. Each series is encoded on its own (`encode_series`) so that a
batch can count a chunk's bytes exactly before it joins them (`encode_body`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeAlias


class SeriesObject(Protocol):
    """Anything with `values` (and optionally `id`, `start`, `frequency` attributes)."""

    @property
    def values(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class Series:
    """One history to forecast: values oldest first, equally spaced."""

    values: Sequence[float]
    id: str | None = None
    start: str | date | None = None  # the first value's timestamp: "2024-01-31", a datetime
    frequency: str | None = None  # "M", "D", ...; the request's or the model's by default


SeriesLike: TypeAlias = Sequence[float] | Mapping[str, Any] | SeriesObject
_FIELDS = ("id", "values", "start", "frequency")


def _number(value: Any) -> float:
    # Refused here rather than coerced: the service itself refuses "1.5" and true.
    if isinstance(value, str | bool) or value is None:
        raise TypeError(f"series values must be numbers, got {value!r}")
    return float(value)


def series_item(series: SeriesLike) -> dict[str, Any]:
    """The JSON object of one series: `values` as floats, and whichever of `id`, `start`,
    `frequency` it has."""
    if isinstance(series, Mapping):
        unknown = set(series) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown series fields {sorted(unknown)}; allowed: {_FIELDS}")
        fields = {k: series.get(k) for k in _FIELDS}
    elif hasattr(series, "values") and not isinstance(series, Sequence):
        fields = {k: getattr(series, k, None) for k in _FIELDS}
    else:
        fields = {k: None for k in _FIELDS} | {"values": series}
    values = fields["values"]
    if values is None:
        raise TypeError("a series needs values")
    item: dict[str, Any] = {"values": [_number(v) for v in values]}
    if fields["id"] is not None:
        item["id"] = str(fields["id"])
    start = fields["start"]
    if start is not None:
        item["start"] = start.isoformat() if isinstance(start, date) else str(start)
    if fields["frequency"] is not None:
        item["frequency"] = str(fields["frequency"])
    return item


def options(
    horizon: int | None = None,
    quantiles: Sequence[float] | None = None,
    levels: Sequence[float] | None = None,
    model: str | None = None,
    frequency: str | None = None,
) -> dict[str, Any]:
    """The request's fields besides `series`: those given, and only those."""
    given: dict[str, Any] = {
        "horizon": horizon,
        "quantiles": None if quantiles is None else [float(q) for q in quantiles],
        "levels": None if levels is None else list(levels),
        "model": model,
        "frequency": frequency,
    }
    return {k: v for k, v in given.items() if v is not None}


def encode_series(series: SeriesLike) -> bytes:
    """One series as compact JSON (floats written round-trip exact, by `repr`)."""
    return json.dumps(series_item(series), separators=(",", ":")).encode()


def encode_body(series: Sequence[bytes], fields: Mapping[str, Any]) -> bytes:
    """The whole body from series already encoded and the other fields; its length is
    `body_size([len(s) for s in series], fields)`."""
    rest = json.dumps(dict(fields), separators=(",", ":")).encode()[1:-1]
    return b'{"series":[' + b",".join(series) + b"]" + (b"," + rest if rest else b"") + b"}"


def body_size(series_sizes: Sequence[int], fields: Mapping[str, Any]) -> int:
    """The byte length `encode_body` gives for series of these encoded lengths."""
    return len(encode_body([b""], fields)) + sum(series_sizes) + max(len(series_sizes) - 1, 0)

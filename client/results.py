"""Typed views of what the service answers: forecasts and model cards.

Each `from_json` takes the decoded JSON of one answer; a field this client does not know
is ignored (the card keeps all of them in `raw`), and a field that is optional in the API
(`timestamps`, `intervals`, a card's `limits`) is None when the answer has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


@dataclass(frozen=True)
class ModelRef:
    """Which model answered."""

    name: str
    version: str


@dataclass(frozen=True)
class SeriesForecast:
    """The forecast of one series: `horizon` steps of the median and of each quantile."""

    id: str
    point: list[float]
    quantiles: dict[str, list[float]]  # keyed as the service writes them: "0.1"
    history_used: int
    truncated: bool
    timestamps: list[str] | None = None  # only when the series was sent with `start`
    intervals: dict[str, list[float]] | None = None  # "lo-80", "hi-80"; only with `levels`

    def quantile(self, q: float) -> list[float]:
        """The forecast of quantile `q` (KeyError when it was not asked for)."""
        return self.quantiles[str(float(q))]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesForecast:
        timestamps = data.get("timestamps")
        intervals = data.get("intervals")
        return cls(
            id=str(data["id"]),
            point=_floats(data["point"]),
            quantiles={str(k): _floats(v) for k, v in data["quantiles"].items()},
            history_used=int(data["history_used"]),
            truncated=bool(data["truncated"]),
            timestamps=None if timestamps is None else [str(t) for t in timestamps],
            intervals=None
            if intervals is None
            else {str(k): _floats(v) for k, v in intervals.items()},
        )


@dataclass(frozen=True)
class ForecastResult:
    """A 200 from `POST /forecast`: one `SeriesForecast` per series sent, in order."""

    model: ModelRef
    horizon: int
    quantiles: list[float]
    forecasts: list[SeriesForecast]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForecastResult:
        return cls(
            model=ModelRef(str(data["model"]["name"]), str(data["model"]["version"])),
            horizon=int(data["horizon"]),
            quantiles=_floats(data["quantiles"]),
            forecasts=[SeriesForecast.from_json(f) for f in data["forecasts"]],
        )


@dataclass(frozen=True)
class Limits:
    """What one request may hold on this server (None: the card does not say)."""

    max_series_per_request: int | None = None
    max_points_per_request: int | None = None
    max_body_bytes: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        def number(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        return cls(
            number("max_series_per_request"),
            number("max_points_per_request"),
            number("max_body_bytes"),
        )


@dataclass(frozen=True)
class ModelCard:
    """`GET /model` or `GET /models/{name}`: what a client needs to know about one model."""

    name: str
    version: str
    horizon: int
    quantiles: list[float]
    frequency: str | None
    min_history: int
    max_history: int
    limits: Limits
    raw: dict[str, Any]  # the whole card, fields this client does not read included

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        frequency = data.get("frequency")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            horizon=int(data["horizon"]),
            quantiles=_floats(data["quantiles"]),
            frequency=None if frequency is None else str(frequency),
            min_history=int(data["min_history"]),
            max_history=int(data["max_history"]),
            limits=Limits.from_json(data.get("limits") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class ModelList:
    """`GET /models`: the default model's name and every served model's card."""

    default: str
    models: list[ModelCard]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelList:
        return cls(str(data["default"]), [ModelCard.from_json(m) for m in data["models"]])

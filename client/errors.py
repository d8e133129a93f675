"""`ForecastError`: every failure the client reports, with the service's reason and detail.

The service answers every error as `{"error": reason, "message": one line, "detail":
[{"loc", "rule", "message", "value"}, ...]}`; the client keeps those fields as they came.
Failures that never reached an answer (no connection, a timeout) have `status` None and
the reason `unreachable` or `timeout`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

# `series[3].values[5]` -> 3: the detail entries that name one series of the request.
_SERIES_LOC = re.compile(r"^series\[(\d+)\](?:\.(.*))?$")
# Rules that say the request does not fit this server, whichever series carries them: a
# field this server does not know is a version mismatch, not a fault of that series.
REQUEST_RULES = frozenset({"extra_forbidden"})


@dataclass(frozen=True)
class ErrorDetail:
    """One broken rule: where (`series[2].values[5]`), which rule, and the value received."""

    loc: str
    rule: str
    message: str
    value: Any = None

    def series_index(self) -> int | None:
        """The index of the series this rule names, or None for a request-wide rule."""
        match = _SERIES_LOC.match(self.loc)
        return int(match[1]) if match else None

    def field(self) -> str:
        """The location inside its series (`values[5]`); the whole `loc` otherwise."""
        match = _SERIES_LOC.match(self.loc)
        return (match[2] or "series") if match else self.loc


class ForecastError(Exception):
    """The service refused a request, failed, or could not be reached."""

    def __init__(
        self,
        status: int | None,
        reason: str,
        message: str,
        detail: Sequence[ErrorDetail] = (),
    ) -> None:
        where = f"{status} {reason}" if status is not None else reason
        super().__init__(f"{where}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.detail = list(detail)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ForecastError:
        """The error a non-2xx answer carries; any body that is not the service's JSON
        shape (a proxy's HTML page) becomes `http_<status>` with its first line."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
            text = response.text.strip().splitlines()
            line = text[0][:200] if text else response.reason_phrase
            return cls(status, f"http_{status}", line or f"HTTP {status}")
        detail = [
            ErrorDetail(
                loc=str(d.get("loc", "")),
                rule=str(d.get("rule", "")),
                message=str(d.get("message", "")),
                value=d.get("value"),
            )
            for d in body.get("detail") or []
            if isinstance(d, dict)
        ]
        return cls(status, body["error"], str(body.get("message", "")), detail)

    def refused_series(self) -> dict[int, list[ErrorDetail]] | None:
        """For a 422 whose every broken rule names one series: those rules by series index.

        None when the request as a whole is at fault (a `horizon` out of range, too many
        series, a field the server does not know), so that dropping series cannot help.
        """
        if self.status != 422 or not self.detail:
            return None
        by_series: dict[int, list[ErrorDetail]] = {}
        for d in self.detail:
            index = d.series_index()
            if index is None or d.rule in REQUEST_RULES:
                return None
            by_series.setdefault(index, []).append(d)
        return by_series

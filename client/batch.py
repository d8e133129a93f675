"""Forecast every series of a long-format CSV through the service, in bounded memory.

The pipeline: `read_series` streams the input one series at a time; `chunks` packs them,
in order, into requests that keep the model card's limits (series, points and body bytes
per request); `concurrency` threads send chunks while the main thread keeps at most
`2 * concurrency` of them in flight and writes each one's forecasts as soon as it and
every chunk before it are answered (a reorder buffer of that many chunks). Memory grows
with the chunk window and the set of series ids seen, not with the file.

A series the service refuses (a 422 naming `series[i]`) is reported and dropped, and the
rest of its chunk is sent again; a chunk too big for the server (413, or a 422 on
`series` as a whole) is split in two. Any other error stops the command.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from client.api import Client
from client.errors import ErrorDetail, ForecastError
from client.progress import Progress
from client.request import body_size, encode_body, encode_series
from client.results import ModelCard, SeriesForecast
from client.table import BatchError, ForecastWriter, InputSeries, level_name, read_series
from contract.frequency import model_frequency, parse_frequency

DEFAULT_CHUNK_SERIES = 100  # when the model card states no limit
# Rules of a 422 about the request's size as a whole: fewer series per request can help.
_SIZE_RULES = frozenset({"max_series", "max_points"})


@dataclass(frozen=True)
class Budget:
    """The most one request may hold: series, history points and body bytes."""

    max_series: int
    max_points: int | None = None
    max_bytes: int | None = None

    @classmethod
    def for_card(cls, card: ModelCard, chunk_size: int | None) -> Budget:
        """The card's limits; `chunk_size` lowers the series per request further."""
        limit = card.limits.max_series_per_request
        sizes = [n for n in (chunk_size, limit) if n is not None]
        series = min(sizes) if sizes else DEFAULT_CHUNK_SERIES
        return cls(series, card.limits.max_points_per_request, card.limits.max_body_bytes)


@dataclass
class Chunk:
    """Series sent in one request (each with its JSON), and series refused before sending."""

    items: list[tuple[InputSeries, bytes]] = field(default_factory=list)
    local: list[InputSeries] = field(default_factory=list)  # refused by their own rows

    @property
    def last(self) -> InputSeries | None:
        candidates = [s for s, _ in self.items[-1:]] + self.local[-1:]
        return max(candidates, key=lambda s: s.index, default=None)


def chunks(
    series: Iterable[InputSeries], budget: Budget, fields: Mapping[str, Any]
) -> Iterator[Chunk]:
    """Consecutive series packed greedily, in order, into chunks within `budget`; a series
    over the budget on its own goes alone (the service then says why it refuses it)."""
    empty = body_size([], fields)  # the body without any series
    chunk = Chunk()
    points = size = 0  # of the chunk so far; size: its series' JSON and the commas between
    for s in series:
        if s.problem is not None:
            chunk.local.append(s)
            continue
        encoded = encode_series({"id": s.id, "values": s.values, "start": s.start})
        grown = size + len(encoded) + (1 if chunk.items else 0)
        fits = len(chunk.items) < budget.max_series
        fits &= budget.max_points is None or points + len(s.values) <= budget.max_points
        fits &= budget.max_bytes is None or empty + grown <= budget.max_bytes
        if chunk.items and not fits:
            yield chunk
            chunk, points, grown = Chunk(), 0, len(encoded)
        chunk.items.append((s, encoded))
        points += len(s.values)
        size = grown
    if chunk.items or chunk.local:
        yield chunk


@dataclass
class Outcome:
    """What became of one chunk: forecasts in input order, refusals with their reasons."""

    answers: list[tuple[InputSeries, SeriesForecast]] = field(default_factory=list)
    refused: list[tuple[InputSeries, str]] = field(default_factory=list)
    requests: int = 0


def _describe(details: Sequence[ErrorDetail]) -> str:
    return "; ".join(f"{d.field()}: {d.message} ({d.rule})" for d in details)


def _too_big(error: ForecastError) -> bool:
    if error.status == 413:
        return True
    return (
        error.status == 422
        and bool(error.detail)
        and all(d.loc == "series" and d.rule in _SIZE_RULES for d in error.detail)
    )


def send_chunk(client: Client, chunk: Chunk, fields: Mapping[str, Any]) -> Outcome:
    """Forecast a chunk, dropping the series the service refuses; raises what it cannot
    attribute to series (`ForecastError`, `BatchError`)."""
    outcome = Outcome(refused=[(s, s.problem or "") for s in chunk.local])
    _send(client, chunk.items, fields, outcome)
    outcome.refused.sort(key=lambda r: r[0].index)
    return outcome


def _send(
    client: Client,
    items: list[tuple[InputSeries, bytes]],
    fields: Mapping[str, Any],
    outcome: Outcome,
) -> None:
    while items:
        outcome.requests += 1
        try:
            result = client.forecast_body(encode_body([e for _, e in items], fields))
        except ForecastError as error:
            refused = error.refused_series()
            if refused is not None and all(0 <= i < len(items) for i in refused):
                outcome.refused += [(items[i][0], _describe(refused[i])) for i in refused]
                items = [item for i, item in enumerate(items) if i not in refused]
                continue
            if _too_big(error) and len(items) > 1:
                half = len(items) // 2
                _send(client, items[:half], fields, outcome)
                items = items[half:]
                continue
            if _too_big(error):
                outcome.refused.append((items[0][0], f"{error.reason}: {error.message}"))
                return
            raise
        got, sent = [f.id for f in result.forecasts], [s.id for s, _ in items]
        if got != sent:
            raise BatchError(
                f"the service answered {len(got)} forecasts for {len(sent)} series, or in "
                f"another order (first sent {sent[:3]}, answered {got[:3]})"
            )
        outcome.answers += [(s, f) for (s, _), f in zip(items, result.forecasts, strict=True)]
        return


@dataclass
class Report:
    """What a batch run did."""

    series: int = 0  # read from the input
    written: int = 0  # with forecasts in the output
    refused: int = 0
    rows: int = 0
    requests: int = 0
    seconds: float = 0.0


def run(
    client: Client,
    csv_path: Path,
    out_path: Path,
    card: ModelCard,
    fields: Mapping[str, Any],
    *,
    chunk_size: int | None = None,
    concurrency: int = 4,
    err: TextIO,
    progress: bool = False,
) -> Report:
    """Forecast every series of `csv_path` into `out_path` (written whole or not at all:
    a failed run leaves no output file). Refusals go to `err` as they are met."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    started = time.monotonic()
    budget = Budget.for_card(card, chunk_size)
    levels = [level_name(level) for level in fields.get("levels", [])]
    quantiles = [str(q) for q in card.quantiles]
    if "quantiles" in fields:
        quantiles = [str(float(q)) for q in fields["quantiles"]]
    try:
        frequency = (
            parse_frequency(fields["frequency"])
            if "frequency" in fields
            else model_frequency(card.frequency)
        )
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    report = Report()
    bar = Progress(csv_path.stat().st_size, err, progress)
    partial = out_path.with_name(f".{out_path.name}.partial")
    window: deque[tuple[Chunk, concurrent.futures.Future[Outcome]]] = deque()
    pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="forecast")

    def finish(chunk: Chunk, outcome: Outcome) -> None:
        report.requests += outcome.requests
        for s, reason in outcome.refused:
            bar.say(f"refused: series {s.id!r} (line {s.line}): {reason}")
        report.refused += len(outcome.refused)
        for s, forecast in outcome.answers:
            report.rows += writer.write(s, forecast)
        report.written += len(outcome.answers)
        report.series += len(chunk.items) + len(chunk.local)
        last = chunk.last
        bar.update(last.end_offset if last else 0, report.series, report.refused)

    try:
        with partial.open("w", newline="") as handle:
            writer = ForecastWriter(handle, quantiles, levels)
            for chunk in chunks(read_series(csv_path, frequency), budget, fields):
                while len(window) >= 2 * concurrency:
                    finish(*_result(window.popleft()))
                window.append((chunk, pool.submit(send_chunk, client, chunk, fields)))
            while window:
                finish(*_result(window.popleft()))
        os.replace(partial, out_path)
        bar.update(csv_path.stat().st_size, report.series, report.refused, force=True)
    except BaseException:
        for _, future in window:
            future.cancel()
        partial.unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report.seconds = time.monotonic() - started
    return report


def _result(
    pending: tuple[Chunk, concurrent.futures.Future[Outcome]],
) -> tuple[Chunk, Outcome]:
    chunk, future = pending
    return chunk, future.result()

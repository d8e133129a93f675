"""The client, BentoML's own clients and `python -m client forecast` against a real
`bentoml serve` on the tiny model (tests/client/conftest.py)."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
import pytest

from bench.metrics import labelled, scrape
from bench.servers import Server
from client import AsyncClient, Client, ForecastError
from client.__main__ import main
from contract.frequency import Frequency, parse_start, step_timestamps
from tests.client.conftest import TOKEN
from tests.service.conftest import Reference
from tests.service.tiny_model import HORIZON, MAX_HISTORY, MIN_HISTORY, NAME, QUANTILES, VERSION

pytestmark = pytest.mark.slow

POINT = QUANTILES.index(0.5)


def history(rng: random.Random, length: int) -> list[float]:
    level = rng.uniform(10, 1000)
    return [round(level * (1 + 0.1 * rng.gauss(0, 1)), 4) for _ in range(length)]


def test_a_forecast_equals_the_model_run_alone(server: Server, reference: Reference) -> None:
    """Guards against a client that garbles values on the way (rounding, reordering) or
    pairs forecasts with the wrong series."""
    rng = random.Random(3)
    histories = [history(rng, n) for n in (4, 17, 40, 9)]
    with Client(server.url, token=TOKEN) as service:
        result = service.forecast(
            [{"id": f"h{i}", "values": v} for i, v in enumerate(histories)], horizon=4
        )
    assert (result.model.name, result.model.version) == (NAME, VERSION)
    assert (result.horizon, result.quantiles) == (4, list(QUANTILES))
    for i, (values, forecast) in enumerate(zip(histories, result.forecasts, strict=True)):
        expected = reference(values)[:4]  # (4, Q)
        assert forecast.id == f"h{i}"
        assert forecast.point == expected[:, POINT].tolist()
        assert [forecast.quantile(q) for q in QUANTILES] == expected.T.tolist()
        assert (forecast.history_used, forecast.truncated) == (len(values), False)


def test_without_the_token_the_401_is_raised_at_once(server: Server) -> None:
    """Guards against a missing token read as a retryable failure, or as anything but 401."""
    sleeps: list[float] = []
    with Client(server.url, sleep=sleeps.append) as service, pytest.raises(ForecastError) as e:
        service.forecast([[1.0, 2.0, 3.0, 4.0]])
    assert (e.value.status, e.value.reason, sleeps) == (401, "unauthorized", [])


def test_a_refused_series_is_named_by_its_index(server: Server) -> None:
    """Guards against the client losing the service's field path, which the batch command
    needs to drop exactly the refused series."""
    with Client(server.url, token=TOKEN) as service, pytest.raises(ForecastError) as e:
        service.forecast([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]])
    assert (e.value.status, e.value.reason) == (422, "validation_error")
    assert e.value.message == "series[1].values: history needs at least 4 points, got 2"
    assert list((e.value.refused_series() or {}).keys()) == [1]


def test_model_cards(server: Server) -> None:
    """Guards against the card the batch command sizes its chunks by being misread."""
    with Client(server.url, token=TOKEN) as service:
        card = service.model()
        listed = service.models()
        named = service.model(NAME)
        with pytest.raises(ForecastError) as e:
            service.model("no-such-model")
    assert card == named == listed.models[0]
    assert listed.default == NAME
    assert (card.name, card.version, card.horizon) == (NAME, VERSION, HORIZON)
    assert (card.min_history, card.max_history) == (MIN_HISTORY, MAX_HISTORY)
    limits = card.limits
    assert (limits.max_series_per_request, limits.max_points_per_request) == (64, 1500)
    assert limits.max_body_bytes == 16384
    assert (e.value.status, e.value.reason) == (404, "unknown_model")


def test_intervals_and_timestamps(server: Server) -> None:
    """Guards against `levels` or a series' `start` being dropped by the client, and
    against answers whose new fields the typed results lose."""
    values = history(random.Random(4), 12)
    with Client(server.url, token=TOKEN) as service:
        [f] = service.forecast([{"values": values, "start": "2024-01-31"}], levels=[80]).forecasts
    assert f.intervals == {"lo-80": f.quantile(0.1), "hi-80": f.quantile(0.9)}
    assert f.timestamps == step_timestamps(parse_start("2024-01-31"), Frequency.M, 12, HORIZON)
    assert f.timestamps[:2] == ["2025-01-31", "2025-02-28"]


def plain(answer: Any) -> Any:
    """BentoML's clients answer a pydantic model or a dict; the JSON form of either."""
    return answer.model_dump(exclude_none=True) if hasattr(answer, "model_dump") else answer


def test_bentoml_clients_get_the_same_numbers_as_this_client(server: Server) -> None:
    """Guards against /forecast working for this client only: BentoML's Sync and Async
    HTTP clients (which read the OpenAPI spec) must reach it with the same answer."""
    series = [{"id": "a", "values": history(random.Random(5), 14)}]
    with Client(server.url, token=TOKEN) as service:
        ours = service.forecast(series, horizon=3)
    with bentoml.SyncHTTPClient(server.url, token=TOKEN) as sync_client:
        synced = plain(sync_client.forecast(series=series, horizon=3))

    async def call() -> Any:
        async with bentoml.AsyncHTTPClient(server.url, token=TOKEN) as async_client:
            return plain(await async_client.forecast(series=series, horizon=3))

    awaited = asyncio.run(call())

    async def ours_async() -> Any:
        async with AsyncClient(server.url, token=TOKEN) as service:
            return await service.forecast(series, horizon=3)

    for answer in (synced, awaited):
        [forecast] = answer["forecasts"]
        assert forecast["id"] == "a"
        assert forecast["point"] == ours.forecasts[0].point
        assert forecast["quantiles"] == ours.forecasts[0].quantiles
        assert answer["horizon"] == 3
    assert asyncio.run(ours_async()) == ours


def requests_by_code(server: Server) -> Counter[str]:
    counts: Counter[str] = Counter()
    for labels, value in labelled(scrape(server), "forecaster_requests_total"):
        counts[labels["code"]] += int(value)
    return counts


def write_history_csv(path: Path, n: int, bad: int, seed: int) -> list[dict[str, Any]]:
    """`n` series in long format, columns in an odd order with an extra one, each
    series' rows shuffled; series `bad` has 2 points. Returns each series as written."""
    rng = random.Random(seed)
    ids = [f"s{k:05d}" for k in rng.sample(range(n), n)]  # not in sorted order
    written: list[dict[str, Any]] = []
    line = 1
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(["value", "note", "series_id", "timestamp"])
        for i in range(n):
            length = 2 if i == bad else rng.randint(MIN_HISTORY, MAX_HISTORY)
            values = history(rng, length)
            first, step = rng.randint(-100, 1000), rng.choice([1, 7, 12])
            stamps = [first + k * step for k in range(length)]
            order = rng.sample(range(length), length)
            written.append(
                {"id": ids[i], "values": values, "last": stamps[-1], "step": step, "line": line + 1}
            )
            for k in order:
                out.writerow([repr(values[k]), "x", ids[i], stamps[k]])
            line += length
    return written


def test_the_csv_command_forecasts_10000_series_in_order_and_reports_the_bad_one(
    server: Server, reference: Reference, tmp_path: Path
) -> None:
    """Guards against the batch command losing, reordering or mispairing forecasts
    (chunks answered out of order, a refused series shifting the others), against a bad
    series costing its neighbours their forecasts, and against floats rounded on the way
    (the written numbers are the model's float32 outputs exactly)."""
    n, bad = 10_000, 4321
    source, target = tmp_path / "history.csv", tmp_path / "forecasts.csv"
    series = write_history_csv(source, n, bad, seed=11)
    before = requests_by_code(server)
    err = io.StringIO()
    started = time.monotonic()
    argv = ["forecast", "--url", server.url, "--token", TOKEN, "--csv", str(source)]
    status = main([*argv, "--out", str(target), "--concurrency", "4", "--progress"], err=err)
    seconds = time.monotonic() - started
    after = requests_by_code(server)
    report = err.getvalue()
    assert status == 1, report
    refused = series[bad]
    assert (
        f"refused: series {refused['id']!r} (line {refused['line']}): values: history needs "
        "at least 4 points, got 2 (min_history)\n"
    ) in report
    summary = report.splitlines()[-1]
    match = re.fullmatch(
        rf"forecast: 9999 of 10000 series written to {re.escape(str(target))} \(59994 rows\), "
        rf"1 refused, (\d+) requests to {NAME} {VERSION}, [\d.]+ s",
        summary,
    )
    assert match, summary
    # One 422 for the chunk with the bad series, then its rest again; nothing split or retried.
    sent = int(match[1])
    assert after - before == Counter({"200": sent - 1, "422": 1})

    with target.open() as handle:
        rows = list(csv.reader(handle))
    columns = ["series_id", "timestamp", "point", *(f"q{q}" for q in QUANTILES)]
    assert rows[0] == columns
    expected = [s for i, s in enumerate(series) if i != bad]
    assert [r[0] for r in rows[1::HORIZON]] == [s["id"] for s in expected]
    for k, s in enumerate(expected):
        block = rows[1 + k * HORIZON : 1 + (k + 1) * HORIZON]
        assert [r[0] for r in block] == [s["id"]] * HORIZON
        assert [int(r[1]) for r in block] == [s["last"] + j * s["step"] for j in range(1, 7)]
        got = np.array([[float(x) for x in r[2:]] for r in block])  # (H, 1 + Q)
        want = reference(s["values"])  # (H, Q) float32
        assert got[:, 0].tolist() == want[:, POINT].tolist(), s["id"]
        assert got[:, 1:].tolist() == want.tolist(), s["id"]
    assert seconds < 60


def test_the_csv_command_on_dated_series_with_intervals(server: Server, tmp_path: Path) -> None:
    """Guards against dated series' forecast timestamps drifting off month ends, a gap in
    a series' dates passing unnoticed, and interval columns that are not the service's."""
    rng = random.Random(6)
    ends = [f"{y}-{m:02d}-{[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]}"
            for y in (2023, 2024) for m in range(1, 13)]  # fmt: skip
    ends[1] = "2023-02-28"
    good = {"a": history(rng, 10), "b": history(rng, 24)}
    lines = ["series_id,timestamp,value"]
    lines += [f"a,{ends[k]},{v}" for k, v in enumerate(good["a"])]
    lines += ["gap,2023-01-31,1", "gap,2023-02-28,2", "gap,2023-04-30,3", "gap,2023-05-31,4"]
    lines += [f"b,{ends[k]},{v}" for k, v in enumerate(good["b"])]
    source, target = tmp_path / "dated.csv", tmp_path / "out.csv"
    source.write_text("\n".join(lines) + "\n")
    err = io.StringIO()
    argv = ["forecast", "--url", server.url, "--csv", str(source), "--out", str(target)]
    status = main([*argv, "--token", TOKEN, "--levels", "80", "--horizon", "3"], err=err)
    assert status == 1, err.getvalue()
    assert err.getvalue().splitlines()[0] == (
        "refused: series 'gap' (line 12): timestamps must step by one month (M) from "
        "2023-01-31: expected 2023-03-31, got 2023-04-30 (line 14)"
    )
    with Client(server.url, token=TOKEN) as service:
        answers = service.forecast(
            [{"values": good["a"], "start": ends[0]}, {"values": good["b"], "start": ends[0]}],
            horizon=3,
            levels=[80],
        ).forecasts
    rows = list(csv.DictReader(target.open()))
    header = ["series_id", "timestamp", "point", "q0.1", "q0.5", "q0.9", "lo-80", "hi-80"]
    assert list(rows[0]) == header
    assert [(r["series_id"], r["timestamp"]) for r in rows] == [
        ("a", "2023-11-30"),
        ("a", "2023-12-31"),
        ("a", "2024-01-31"),
        ("b", "2025-01-31"),
        ("b", "2025-02-28"),
        ("b", "2025-03-31"),
    ]
    for name, answer in zip("ab", answers, strict=True):
        mine = [r for r in rows if r["series_id"] == name]
        assert [r["timestamp"] for r in mine] == answer.timestamps
        assert answer.intervals is not None
        for column in ("lo-80", "hi-80"):
            assert [float(r[column]) for r in mine] == answer.intervals[column]
        assert [float(r["point"]) for r in mine] == answer.point


def test_a_command_error_exits_2_and_writes_nothing(server: Server, tmp_path: Path) -> None:
    """Guards against a wrong token or model read as "every series refused", and a
    partial output left behind."""
    source = tmp_path / "in.csv"
    source.write_text("series_id,timestamp,value\na,1,1\na,2,2\na,3,3\na,4,4\n")
    target = tmp_path / "out.csv"
    argv = ["forecast", "--url", server.url, "--csv", str(source), "--out", str(target)]
    for extra, message in (
        ([], "error: 401 unauthorized: "),
        (["--token", TOKEN, "--model", "nope"], "error: 404 unknown_model: "),
        (["--token", TOKEN, "--horizon", "99"], "error: 422 validation_error: horizon"),
    ):
        err = io.StringIO()
        assert main(argv + extra + ["--retries", "0"], err=err) == 2
        assert err.getvalue().startswith(message), err.getvalue()
        assert not target.exists()
    with httpx.Client() as plain_http:  # the server is still fine
        assert plain_http.get(f"{server.url}/readyz").status_code == 200

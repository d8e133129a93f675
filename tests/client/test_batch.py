"""The batch command's parts without a server: reading, chunking, refusals, ordering."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import client.batch
from client import Client, ModelCard
from client.batch import Budget, Chunk, chunks, run, send_chunk
from client.request import encode_body
from client.table import BatchError, InputSeries, read_series
from contract.frequency import Frequency

MIN_HISTORY = 4
CARD: dict[str, Any] = {
    "name": "stub",
    "version": "1",
    "horizon": 3,
    "quantiles": [0.1, 0.5, 0.9],
    "frequency": "monthly",
    "min_history": MIN_HISTORY,
    "max_history": 40,
    "limits": {"max_series_per_request": 5, "max_points_per_request": 1000},
}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_rows_are_sorted_in_time_and_each_series_knows_its_first_line(tmp_path: Path) -> None:
    """Guards against forecasting a series from rows in file order rather than time order,
    and against line numbers that drift (header, blank lines, a quoted field over 2 lines)."""
    path = write(
        tmp_path / "in.csv",
        "\ufeffvalue,series_id,note,timestamp\n"
        "3,a,x,30\n1,a,x,10\n2,a,x,20\n"
        "\n"
        '5,b,"two\nlines",2\n4,b,,1\n',
    )
    a, b = read_series(path)
    assert (a.id, a.index, a.line, a.values, a.last, a.step) == ("a", 0, 2, [1.0, 2.0, 3.0], 30, 10)
    assert (b.id, b.index, b.line, b.values, b.last, b.step) == ("b", 1, 6, [4.0, 5.0], 2, 1)
    assert a.next_stamps(3) == ["40", "50", "60"]
    assert b.end_offset == path.stat().st_size


def test_a_series_that_comes_back_after_another_stops_the_command(tmp_path: Path) -> None:
    """Guards against forecasting half a series' history when the file is not grouped by
    series (its first block would be sent before its second is read)."""
    path = write(tmp_path / "in.csv", "series_id,timestamp,value\na,1,1\nb,1,1\na,2,2\n")
    with pytest.raises(BatchError) as caught:
        list(read_series(path))
    assert str(caught.value) == (
        f"{path}, line 4: series 'a' appears again after other series (its rows ended on "
        "line 2); the rows of each series must be contiguous: sort the file by series_id"
    )


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ("s,1,1\ns,2,x\ns,3,3\n", "value must be a number, got 'x' (line 3)"),
        ("s,1,1\ns,2,nan\n", "value must be finite, got 'nan' (line 3)"),
        ("s,1,1\ns,1,2\n", "timestamp '1' appears twice (lines 2 and 3)"),
        (
            "s,1,1\ns,2,2\ns,3,3\ns,5,5\n",
            "timestamps must be equally spaced (step 1), got 3 then 5 (line 5)",
        ),
        ("s,1,1\ns,2024-01-31,2\n", "timestamps must all be of one kind, got integer and naive"),
        (
            "s,2024-13,1\n",
            "timestamp must be an integer or an ISO-8601 date/time, got '2024-13' (line 2)",
        ),
        (
            "s,2024-01-31,1\ns,2024-02-29,2\ns,2024-04-30,3\n",
            "timestamps must step by one month (M) from 2024-01-31: expected 2024-03-31, "
            "got 2024-04-30 (line 4)",
        ),
    ],
)
def test_a_bad_row_refuses_only_its_series(tmp_path: Path, rows: str, problem: str) -> None:
    """Guards against one bad value stopping a 100,000-series run, or passing unnoticed
    (a gap in the timestamps would shift every forecast timestamp after it)."""
    path = write(tmp_path / "in.csv", "series_id,timestamp,value\n" + rows + "ok,1,1\nok,2,2\n")
    bad, ok = read_series(path, Frequency.M)
    assert bad.problem == problem
    assert ok.problem is None


def test_dated_series_step_by_the_frequency_or_go_with_their_start(tmp_path: Path) -> None:
    """Guards against month-end series drifting to the 28th, "2024-01" months refused as a
    start, and dated series sent without `start` when no frequency is known."""
    path = write(
        tmp_path / "in.csv",
        "series_id,timestamp,value\n"
        "e,2024-02-29,2\ne,2024-01-31,1\ne,2024-03-31,3\n"
        "m,2024-01,1\nm,2024-02,2\n",
    )
    e, m = read_series(path, Frequency.M)
    assert e.values == [1.0, 2.0, 3.0]
    assert e.next_stamps(2) == ["2024-04-30", "2024-05-31"]
    assert m.next_stamps(1) == ["2024-03-01"]
    assert e.start is None
    e, m = read_series(path, None)
    assert (e.start, m.start) == ("2024-01-31", "2024-01-01")
    assert e.next_stamps(2) is None


def series(index: int, length: int) -> InputSeries:
    return InputSeries(index, f"s{index}", index + 2, [float(index)] * length, last=0, step=1)


def test_chunks_keep_every_limit_exactly_and_are_full() -> None:
    """Guards against chunks the server refuses (413, too many points) and against
    needlessly small ones: each chunk's body fits, and the next series would not have."""
    rng = random.Random(0)
    items = [series(i, rng.randint(1, 60)) for i in range(300)]
    fields = {"horizon": 3}
    budget = Budget(max_series=20, max_points=400, max_bytes=2000)
    got = list(chunks(iter(items), budget, fields))
    assert [s for c in got for s, _ in c.items] == items
    for chunk, following in itertools.pairwise(got):
        sent = [s for s, _ in chunk.items]
        body = encode_body([e for _, e in chunk.items], fields)
        assert json.loads(body)["series"] == [{"id": s.id, "values": s.values} for s in sent]
        assert len(sent) <= 20 and sum(len(s.values) for s in sent) <= 400 and len(body) <= 2000
        grown = [*chunk.items, following.items[0]]
        too_big = len(encode_body([e for _, e in grown], fields)) > 2000
        assert len(grown) > 20 or sum(len(s.values) for s, _ in grown) > 400 or too_big


def test_a_series_over_the_budget_alone_goes_alone_and_local_refusals_ride_along() -> None:
    """Guards against an endless loop (or a lost series) when one series alone breaks the
    budget, and against series refused while reading vanishing from the report."""
    bad = InputSeries(1, "bad", 3, problem="value must be a number")
    got = list(chunks(iter([series(0, 5), bad, series(2, 50), series(3, 5)]), Budget(10, 20), {}))
    assert [[s.id for s, _ in c.items] for c in got] == [["s0"], ["s2"], ["s3"]]
    assert [s.id for s in got[0].local] == ["bad"]


def stub_server(
    requests: list[dict[str, Any]], delay: float = 0.0, too_big_over: int | None = None
) -> httpx.MockTransport:
    """Answers like the service: each series' point is its sum plus the step; a series
    shorter than MIN_HISTORY is refused by index, all of them in one 422."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        if delay:
            time.sleep(random.uniform(0, delay))
        sent = body["series"]
        if too_big_over is not None and len(sent) > too_big_over:
            return httpx.Response(413, json={"error": "body_too_large", "message": "too big"})
        short = [i for i, s in enumerate(sent) if len(s["values"]) < MIN_HISTORY]
        if short:
            detail = [
                {
                    "loc": f"series[{i}].values",
                    "rule": "min_history",
                    "message": f"history needs at least {MIN_HISTORY} points, "
                    f"got {len(sent[i]['values'])}",
                    "value": len(sent[i]["values"]),
                }
                for i in short
            ]
            return httpx.Response(
                422, json={"error": "validation_error", "message": "m", "detail": detail}
            )
        h = body.get("horizon", 3)
        forecasts = []
        for s in sent:
            point = [sum(s["values"]) + k for k in range(h)]
            spread = {"0.1": -1, "0.5": 0, "0.9": 1}
            forecasts.append(
                {
                    "id": s["id"],
                    "point": point,
                    "quantiles": {q: [p + d for p in point] for q, d in spread.items()},
                    "history_used": len(s["values"]),
                    "truncated": False,
                }
            )
        answer = {"model": {"name": "stub", "version": "1"}, "horizon": h}
        answer |= {"quantiles": [0.1, 0.5, 0.9], "forecasts": forecasts}
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


def test_refused_series_are_dropped_and_the_rest_of_the_chunk_is_sent_again() -> None:
    """Guards against one bad series costing its whole chunk its forecasts, and against
    forecasts paired with the wrong series after the drop."""
    requests: list[dict[str, Any]] = []
    items = [series(0, 5), series(1, 2), series(2, 6), series(3, 1), series(4, 4)]
    chunk = next(chunks(iter(items), Budget(10), {}))
    with Client("http://stub", transport=stub_server(requests)) as service:
        outcome = send_chunk(service, chunk, {})
    assert [[s["id"] for s in r["series"]] for r in requests] == [
        ["s0", "s1", "s2", "s3", "s4"],
        ["s0", "s2", "s4"],
    ]
    assert [(s.id, f.id, f.point[0]) for s, f in outcome.answers] == [
        ("s0", "s0", 0.0),
        ("s2", "s2", 12.0),
        ("s4", "s4", 16.0),
    ]
    assert [(s.id, why) for s, why in outcome.refused] == [
        ("s1", "values: history needs at least 4 points, got 2 (min_history)"),
        ("s3", "values: history needs at least 4 points, got 1 (min_history)"),
    ]
    assert outcome.requests == 2


def test_a_chunk_too_big_for_the_server_is_split_until_it_fits() -> None:
    """Guards against a card whose limits understate the server's (or a proxy's body
    limit) failing the whole run with 413s."""
    requests: list[dict[str, Any]] = []
    chunk = next(chunks(iter([series(i, 4) for i in range(5)]), Budget(10), {}))
    with Client("http://stub", transport=stub_server(requests, too_big_over=2)) as service:
        outcome = send_chunk(service, chunk, {})
    assert [len(r["series"]) for r in requests] == [5, 2, 3, 1, 2]
    assert [s.id for s, _ in outcome.answers] == ["s0", "s1", "s2", "s3", "s4"]


def test_a_request_wide_refusal_stops_the_run() -> None:
    """Guards against a horizon the model cannot give being reported as every series refused."""

    def handle(request: httpx.Request) -> httpx.Response:
        detail = [{"loc": "horizon", "rule": "horizon_range", "message": "m", "value": 99}]
        body = {"error": "validation_error", "message": "horizon: m", "detail": detail}
        return httpx.Response(422, json=body)

    chunk = Chunk(items=next(chunks(iter([series(0, 5)]), Budget(10), {})).items)
    service = Client("http://stub", transport=httpx.MockTransport(handle))
    with service, pytest.raises(client.ForecastError, match="422 validation_error: horizon: m"):
        send_chunk(service, chunk, {"horizon": 99})


def test_answers_are_written_in_input_order_with_a_bounded_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against output in completion order (chunks answered out of order), against
    reading the whole file before writing anything (memory growing with the file), and
    against more requests in flight than --concurrency."""
    rng = random.Random(1)
    lengths = [rng.choice([2, 4, 5, 8]) for _ in range(200)]
    lines = ["series_id,timestamp,value"]
    lines += [f"id{i},{t},{i + t}" for i, n in enumerate(lengths) for t in range(n)]
    source = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    read = 0
    real = client.batch.read_series

    def counted(path: Path, frequency: Frequency | None = None) -> Iterator[InputSeries]:
        nonlocal read
        for s in real(path, frequency):
            read += 1
            yield s

    monkeypatch.setattr(client.batch, "read_series", counted)
    requests: list[dict[str, Any]] = []
    read_when_sent: list[tuple[int, int]] = []  # (series read so far, requests answered so far)
    in_flight = peak = answered = 0
    lock = threading.Lock()
    inner = stub_server(requests, delay=0.01)

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak, answered
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            read_when_sent.append((read, answered))
        try:
            return inner.handle_request(request)
        finally:
            with lock:
                in_flight -= 1
                answered += 1

    err = io.StringIO()
    out = tmp_path / "out.csv"
    with Client("http://stub", transport=httpx.MockTransport(handle)) as service:
        card = ModelCard.from_json(CARD)
        report = run(service, source, out, card, {}, chunk_size=5, concurrency=3, err=err)
    short = [i for i, n in enumerate(lengths) if n < MIN_HISTORY]
    rows = list(csv.DictReader(out.open()))
    written = [r["series_id"] for r in rows[::3]]
    assert written == [f"id{i}" for i in range(200) if i not in short]
    assert [r["timestamp"] for r in rows[:3]] == [str(lengths[0] + k) for k in range(3)]
    assert err.getvalue().splitlines() == [
        f"refused: series 'id{i}' (line {2 + sum(lengths[:i])}): values: history needs at "
        "least 4 points, got 2 (min_history)"
        for i in short
    ]
    assert (report.series, report.written, report.refused) == (200, 200 - len(short), len(short))
    assert peak <= 3
    # At most 2 * concurrency chunks of 5 unwritten, plus the one being packed.
    assert all(r <= (a + 2 * 3 + 1) * 5 for r, a in read_when_sent)
    assert not (tmp_path / ".out.csv.partial").exists()


def test_a_failed_run_leaves_no_output(tmp_path: Path) -> None:
    """Guards against a half-written forecasts file that looks like a finished one."""
    source = write(tmp_path / "in.csv", "series_id,timestamp,value\na,1,1\nb,1,1\na,2,1\n")
    out = tmp_path / "out.csv"
    with Client("http://stub", transport=stub_server([])) as service, pytest.raises(BatchError):
        run(service, source, out, ModelCard.from_json(CARD), {}, err=io.StringIO())
    assert list(tmp_path.iterdir()) == [source]

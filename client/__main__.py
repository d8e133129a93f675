"""`python -m client forecast`: forecast every series of a long-format CSV file.

    .venv/bin/python -m client forecast --url http://127.0.0.1:3000 \\
        --csv history.csv --out forecasts.csv
    .venv/bin/python -m client forecast --url http://127.0.0.1:3000 --token "$TOKEN" \\
        --csv history.csv --out forecasts.csv --model m3-monthly --horizon 12 \\
        --levels 80 95 --chunk-size 128 --concurrency 8 --frequency M

The input is the training CSV format (columns `series_id`, `timestamp`, `value` in any
order, other columns ignored; timestamps integers or ISO dates/times), with the rows of
each series contiguous. The output has one row per series and step, series in input
order:

    series_id,timestamp,point,q0.1,q0.5,q0.9,lo-80,hi-80,lo-95,hi-95

(`lo-`/`hi-` columns only with `--levels`). `timestamp` continues the input's integers
(last + k * step) for an integer series. A date series must step by one `--frequency`
(default: the model card's), checked row by row, and its forecast timestamps continue
it (`contract.frequency.step_timestamps`, as the service computes them; "2024-01" is
the month's first day); with no frequency known at all, it is sent with its first
timestamp as `start` and the service's timestamps are written.

Each series refused, by the service (a 422 naming it) or by its own rows (a bad value,
a duplicate or missing timestamp), is reported on stderr by id and first line, with the
reason; the others are still forecast. The last line on stderr sums up the run. Exit
status: 0 every series forecast, 1 some refused, 2 the command failed (unreadable
input, an error not about one series: a wrong token, an unknown model, a horizon out of
range, the service unreachable after `--retries`); a failed run writes no output file.

`--url` and `--token` default to `$FORECASTER_URL` and `$FORECASTER_API_TOKEN` (a token
in the environment stays out of the process list).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from client.api import Client
from client.batch import run
from client.errors import ForecastError
from client.request import options
from client.table import BatchError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m client", description="Forecaster client.")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser("forecast", help="forecast every series of a long-format CSV")
    p.add_argument(
        "--url",
        default=os.environ.get("FORECASTER_URL"),
        help="the service's URL (default: $FORECASTER_URL)",
    )
    p.add_argument("--csv", type=Path, required=True, help="input: long-format history CSV")
    p.add_argument("--out", type=Path, required=True, help="output: long-format forecasts CSV")
    p.add_argument("--model", help="the served model to ask (default: the server's default)")
    p.add_argument(
        "--token",
        default=os.environ.get("FORECASTER_API_TOKEN"),
        help="bearer token (default: $FORECASTER_API_TOKEN)",
    )
    p.add_argument("--horizon", type=_positive, help="steps to forecast (default: the model's)")
    p.add_argument("--levels", type=float, nargs="+", help="prediction intervals, e.g. 80 95")
    p.add_argument("--frequency", help="the series' frequency, e.g. M (default: the model's)")
    p.add_argument(
        "--chunk-size",
        type=_positive,
        help="series per request (default and most: what the model card's limits allow)",
    )
    p.add_argument("--concurrency", type=_positive, default=4, help="requests in flight")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request attempt")
    p.add_argument("--retries", type=int, default=5, help="retries on 503 or no connection")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    return top


def main(argv: Sequence[str] | None = None, err: TextIO | None = None) -> int:
    """Run the command; its exit status."""
    err = err or sys.stderr
    args = parser().parse_args(argv)
    if not args.url:
        print("error: --url is required (or set FORECASTER_URL)", file=err)
        return 2
    fields = options(
        horizon=args.horizon, levels=args.levels, model=args.model, frequency=args.frequency
    )
    progress = err.isatty() if args.progress is None else args.progress
    try:
        with Client(args.url, args.token, timeout=args.timeout, retries=args.retries) as client:
            card = client.model(args.model)
            report = run(
                client,
                args.csv,
                args.out,
                card,
                fields,
                chunk_size=args.chunk_size,
                concurrency=args.concurrency,
                err=err,
                progress=progress,
            )
    except (ForecastError, BatchError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    print(
        f"forecast: {report.written} of {report.series} series written to {args.out} "
        f"({report.rows} rows), {report.refused} refused, {report.requests} requests "
        f"to {card.name} {card.version}, {report.seconds:.1f} s",
        file=err,
    )
    return 1 if report.refused else 0


if __name__ == "__main__":
    sys.exit(main())

"""Locust load test of the forecaster service with real M3 monthly histories.

Two kinds of users, no think time to speak of (closed loop): most send one series per
request, a few send bulk requests of many series; every answer is checked (status, one
forecast per series with the ids in order, `horizon` finite values, quantiles) and marked
failed with the reason otherwise. `RampShape` ramps the users up in steps, holds the
peak, then stops, so runs are repeatable.

`make load` starts the service, runs this file and stops the service (load_tests/run_load.py).
Against a service already running on port 3000:

    FORECASTER_LOAD_USERS=32 FORECASTER_LOAD_SECONDS=60 .venv/bin/locust \\
        -f load_tests/locustfile.py --headless --host http://127.0.0.1:3000 \\
        --run-time 75s --csv load_tests/results/tmp/load

Settings (environment): FORECASTER_LOAD_USERS peak users (32), FORECASTER_LOAD_SECONDS
length of the shape (60), FORECASTER_LOAD_BULK_SERIES series per bulk request (64).
"""

from __future__ import annotations

import json
import os
import random

from locust import FastHttpUser, LoadTestShape, between, task

from load_tests.payloads import Payload, check_forecast, payload_pool

PEAK_USERS = int(os.environ.get("FORECASTER_LOAD_USERS", "32"))
SECONDS = float(os.environ.get("FORECASTER_LOAD_SECONDS", "60"))
BULK_SERIES = int(os.environ.get("FORECASTER_LOAD_BULK_SERIES", "64"))
HEADERS = {"Content-Type": "application/json"}

SINGLE = payload_pool(1, 512, seed=1)
BULK = payload_pool(BULK_SERIES, 16, seed=2)


class ForecastUser(FastHttpUser):
    """Posts payloads from a pool and checks each answer; subclasses pick the pool."""

    abstract = True
    wait_time = between(0.0, 0.02)
    pool: list[Payload] = SINGLE
    name = "/forecast"
    horizon = 18

    def on_start(self) -> None:
        # The horizon to expect comes from the served model itself.
        with self.client.get("/model", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"GET /model answered {resp.status_code}")
                return
            self.horizon = int(json.loads(resp.content)["horizon"])
        self.rng = random.Random()

    def post(self) -> None:
        payload = self.rng.choice(self.pool)
        with self.client.post(
            "/forecast", data=payload.body, headers=HEADERS, name=self.name, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                text = (resp.text or "")[:200]
                resp.failure(f"HTTP {resp.status_code}: {text}")
                return
            try:
                answer = json.loads(resp.content)
            except ValueError as exc:
                resp.failure(f"answer is not JSON: {exc}")
                return
            problem = check_forecast(answer, payload.ids, self.horizon)
            if problem is not None:
                resp.failure(problem)
            else:
                resp.success()


class SingleSeriesUser(ForecastUser):
    """One M3 history per request: the latency-sensitive client."""

    weight = 9
    pool = SINGLE
    name = "/forecast [1 series]"

    @task
    def forecast(self) -> None:
        self.post()


class BulkUser(ForecastUser):
    """BULK_SERIES histories per request: the batch client."""

    weight = 1
    pool = BULK
    name = f"/forecast [{BULK_SERIES} series]"

    @task
    def forecast(self) -> None:
        self.post()


class RampShape(LoadTestShape):
    """Four equal steps up to PEAK_USERS over the first 40 % of SECONDS, then hold; stop."""

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        if run_time >= SECONDS:
            return None
        ramp = 0.4 * SECONDS
        step = min(4, int(run_time / (ramp / 4)) + 1)
        users = max(1, round(PEAK_USERS * step / 4))
        return users, float(PEAK_USERS)

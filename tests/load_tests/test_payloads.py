"""Payload building and the answer check shared by locust, the benchmark and TorchServe."""

from __future__ import annotations

import json
from typing import Any

from load_tests.payloads import History, check_forecast, encode, m3_monthly, payload_pool

H = 3


def answer(ids: list[str], horizon: int = H) -> dict[str, Any]:
    return {
        "forecasts": [
            {
                "id": i,
                "point": [1.0] * horizon,
                "quantiles": {"0.1": [0.5] * horizon, "0.9": [2.0] * horizon},
            }
            for i in ids
        ]
    }


def test_m3_monthly_is_the_real_data_set() -> None:
    histories = m3_monthly()
    lengths = [len(h.values) for h in histories]
    assert len(histories) == 1428
    assert (min(lengths), max(lengths)) == (48, 126)


def test_pool_is_reproducible_and_ids_unique_within_a_body() -> None:
    """Guards against a bulk body whose duplicate ids would hide answers put out of order."""
    histories = [History("a", (1.0, 2.0)), History("b", (3.0,))]
    first = payload_pool(5, 3, seed=7, histories=histories)
    again = payload_pool(5, 3, seed=7, histories=histories)
    assert [p.body for p in first] == [p.body for p in again]
    for payload in first:
        assert len(set(payload.ids)) == 5
        body = json.loads(payload.body)
        assert [s["id"] for s in body["series"]] == list(payload.ids)


def test_encode_is_compact_json_of_the_values() -> None:
    payload = encode([History("x", (1.0, 2.5))])
    assert payload.body == b'{"series":[{"id":"x","values":[1.0,2.5]}]}'
    assert payload.ids == ("x",)


def test_a_valid_answer_passes() -> None:
    assert check_forecast(answer(["a", "b"]), ["a", "b"], H) is None


def test_answers_in_the_wrong_order_fail() -> None:
    """Guards against the bug the service must never have: another series' forecast."""
    assert check_forecast(answer(["b", "a"]), ["a", "b"], H) == (
        "forecasts[0].id is 'b', expected 'a'"
    )


def test_missing_forecast_fails() -> None:
    assert check_forecast(answer(["a"]), ["a", "b"], H) == "expected 2 forecasts, got 1"


def test_wrong_horizon_fails() -> None:
    assert check_forecast(answer(["a"], horizon=2), ["a"], H) == (
        "forecasts[0].point is not 3 finite numbers"
    )


def test_nan_in_a_quantile_fails() -> None:
    bad = answer(["a"])
    bad["forecasts"][0]["quantiles"]["0.9"][1] = float("nan")
    assert check_forecast(bad, ["a"], H) == "forecasts[0].quantiles['0.9'] is not 3 finite numbers"


def test_error_body_fails() -> None:
    assert check_forecast({"error": "overloaded"}, ["a"], H) == "answer has no 'forecasts' list"

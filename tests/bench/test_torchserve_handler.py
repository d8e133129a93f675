"""The TorchServe handler, called in-process the way TorchServe's worker calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.torchserve.handler import Forecaster
from load_tests.payloads import check_forecast, payload_pool


class FakeContext:
    """The one part of ts.context.Context the handler uses."""

    def __init__(self) -> None:
        self.status: dict[int, tuple[int, str]] = {}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status[idx] = (code, phrase)


@pytest.fixture(scope="module")
def handler(standin: Path) -> Forecaster:
    return Forecaster(str(standin))


def alone(standin: Path, values: list[float]) -> np.ndarray:
    module = torch.jit.load(str(standin / "model.ts")).eval()
    with torch.inference_mode():
        out = module(torch.tensor([values], dtype=torch.float32), torch.tensor([len(values)]))
    return out.numpy()[0]  # (H, Q)


def test_batch_of_requests_answered_in_order_with_each_series_own_forecast(
    handler: Forecaster, standin: Path
) -> None:
    """Guards against a batch answer handed to the wrong request (or the wrong series)."""
    payloads = payload_pool(1, 2, seed=3) + payload_pool(3, 1, seed=4)
    data: list[dict[str, Any]] = [{"body": json.loads(p.body)} for p in payloads]
    data[1] = {"body": payloads[1].body}  # TorchServe hands over bytes when it cannot decode
    replies = handler.handle_batch(data, FakeContext())
    for payload, reply in zip(payloads, replies, strict=True):
        answer = json.loads(reply)
        assert check_forecast(answer, payload.ids, 18) is None
        first = json.loads(payload.body)["series"][0]["values"]
        expected = alone(standin, first)[:, 1]
        np.testing.assert_allclose(answer["forecasts"][0]["point"], expected, rtol=1e-5)


def test_a_bad_request_gets_422_and_the_others_are_still_answered(handler: Forecaster) -> None:
    good = payload_pool(1, 1, seed=5)[0]
    context = FakeContext()
    replies = handler.handle_batch(
        [{"body": {"series": [{"values": [1.0] * 5}]}}, {"body": json.loads(good.body)}], context
    )
    assert context.status == {0: (422, "Unprocessable Entity")}
    assert json.loads(replies[0]) == {
        "error": "validation_error",
        "message": "series[0].values needs at least 12 numbers",
    }
    assert check_forecast(json.loads(replies[1]), good.ids, 18) is None


def test_long_history_is_cut_to_max_history(handler: Forecaster) -> None:
    reply = handler.handle_batch([{"body": {"series": [{"values": [5.0] * 200}]}}], FakeContext())
    forecast = json.loads(reply[0])["forecasts"][0]
    assert (forecast["history_used"], forecast["truncated"]) == (126, True)

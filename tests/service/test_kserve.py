"""`POST /v1/timeseries/forecast`: KServe's time-series protocol against a real server."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from bench.metrics import sample, scrape
from bench.servers import Server
from tests.service.conftest import References

pytestmark = pytest.mark.slow

PATH = "/v1/timeseries/forecast"


def spec_example(model: str) -> dict[str, Any]:
    """The request example of the KServe time-series API reference, naming `model` (its
    frequencies, D and H, are both served by a model without a fixed frequency)."""
    return {
        "model": model,
        "inputs": [
            {
                "type": "univariate_time_series",
                "name": "stock_price",
                "series": [120, 122, 125, 127, 130, 133, 135],
                "frequency": "D",
                "start_timestamp": "2025-06-05T13:10:00Z",
            },
            {
                "type": "univariate_time_series",
                "name": "humidity",
                "series": [33, 34, 35, 36, 37],
                "frequency": "H",
                "start_timestamp": "2025-06-05T13:10:00Z",
            },
        ],
        "options": {"horizon": 4, "quantiles": [0.1, 0.5, 0.9], "other_options": "value"},
        "metadata": {"request_id": "user_defined_request_id", "other_data": "value"},
        "other_properties": "value",
    }


def post(server: Server, body: Any) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{server.url}{PATH}", content=content, timeout=30)


def assert_envelope(body: dict[str, Any], status: str, model: str) -> None:
    assert set(body) >= {"id", "created_at", "status", "error", "model", "outputs"}
    assert isinstance(body["id"], str) and body["id"].startswith("fc_") and len(body["id"]) > 10
    assert isinstance(body["created_at"], int) and abs(body["created_at"] - time.time()) < 60
    assert (body["status"], body["model"]) == (status, model)


def test_the_spec_example_is_answered_field_by_field(
    served: Server, references: References
) -> None:
    """Guards against a field missing, misnamed or mis-typed against the KServe reference,
    a forecast that is not the model's own, and a start_timestamp that is not the step
    after the history (the reference's own example: 2025-06-12T13:10:00Z daily)."""
    request = spec_example("tiny-any")
    response = post(served, request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_envelope(body, "completed", "tiny-any")
    assert body["error"] is None
    assert body["metadata"] == request["metadata"]
    starts = ["2025-06-12T13:10:00Z", "2025-06-05T18:10:00Z"]
    ids = set()
    assert len(body["outputs"]) == 2
    for item, output, start in zip(request["inputs"], body["outputs"], starts, strict=True):
        assert set(output) == {"type", "id", "status", "content"}
        assert (output["type"], output["status"]) == ("time_series_forecast", "completed")
        ids.add(output["id"])
        [content] = output["content"]
        assert set(content) == {
            "type",
            "name",
            "mean_forecast",
            "frequency",
            "start_timestamp",
            "quantiles",
        }
        assert content["type"] == "univariate_time_series"
        assert (content["name"], content["frequency"]) == (item["name"], item["frequency"])
        assert content["start_timestamp"] == start
        expected = references["tiny-any"]([float(v) for v in item["series"]])[:4]  # (4, Q)
        np.testing.assert_allclose(content["mean_forecast"], expected[:, 1], rtol=1e-5)
        assert list(content["quantiles"]) == ["0.1", "0.5", "0.9"]
        for column, q in enumerate(("0.1", "0.5", "0.9")):
            np.testing.assert_allclose(content["quantiles"][q], expected[:, column], rtol=1e-5)
    assert len(ids) == 2  # each output its own id


def test_a_bad_input_fails_only_its_own_output(served: Server, references: References) -> None:
    """Guards against one bad series (multivariate, too short, NaN, a frequency the model
    does not serve) failing a whole KServe request, or shifting the others' answers."""
    good = {
        "type": "univariate_time_series",
        "name": "ok",
        "series": [5.0, 6, 7, 8, 9],
        "frequency": "M",
    }
    inputs = [
        {**good, "type": "multivariate_time_series", "name": "multi", "series": [[1, 2]] * 5},
        {**good, "name": "short", "series": [1.0, 2.0]},
        good,
        {**good, "name": "nan", "series": [1.0, 2.0, "NaN", 4.0]},
        {**good, "name": "quarterly", "frequency": "Q"},
    ]
    before = scrape(served)
    response = post(served, {"model": "tiny", "inputs": inputs, "options": {"horizon": 2}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_envelope(body, "partial", "tiny")
    statuses = [o["status"] for o in body["outputs"]]
    assert statuses == ["error", "error", "completed", "error", "error"]
    errors = [o["error"] for o in body["outputs"] if o["status"] == "error"]
    assert [(e["code"], e["param"]) for e in errors] == [
        ("univariate", "inputs[0].type"),
        ("min_history", "inputs[1].series"),
        ("float_type", "inputs[3].series[2]"),
        ("model_frequency", "inputs[4].frequency"),
    ]
    assert errors[1]["message"] == "inputs[1].series: history needs at least 4 points, got 2"
    assert errors[3]["message"] == (
        "inputs[4].frequency: frequency Q does not match model 'tiny', whose frequency is M"
    )
    assert all(e["type"] == "invalid_request_error" for e in errors)
    assert all(o["content"] == [] for o in body["outputs"] if o["status"] == "error")
    [content] = body["outputs"][2]["content"]
    expected = references["tiny"](good["series"])[:2]
    np.testing.assert_allclose(content["mean_forecast"], expected[:, 1], rtol=1e-5)
    assert "quantiles" not in content and content["start_timestamp"] is None
    after = scrape(served)
    for name, want in [("forecaster_forecast_series_total", 1)]:
        got = sample(after, name, '{model="tiny"}') - sample(before, name, '{model="tiny"}')
        assert got == want


def test_request_level_faults_are_4xx_in_the_kserve_shape(served: Server) -> None:
    """Guards against KServe clients getting an error shape they cannot read, or a 200
    for a request none of whose inputs could be forecast."""
    unknown = post(served, {**spec_example("nope"), "options": {"horizon": 4}})
    assert unknown.status_code == 404
    body = unknown.json()
    assert_envelope(body, "error", "nope")
    assert body["error"]["code"] == "unknown_model"
    assert "'tiny', 'tiny-any', 'tiny-q'" in body["error"]["message"]
    too_far = post(served, {**spec_example("tiny-any"), "options": {"horizon": 7}})
    assert too_far.status_code == 422
    error = too_far.json()["error"]
    assert (error["code"], error["param"]) == ("horizon_range", "options.horizon")
    all_bad = spec_example("tiny")  # D and H: the monthly model serves neither
    failed = post(served, all_bad)
    assert failed.status_code == 422
    body = failed.json()
    assert_envelope(body, "error", "tiny")
    assert [o["error"]["param"] for o in body["outputs"]] == [
        "inputs[0].frequency",
        "inputs[1].frequency",
    ]
    # The first input's fault, its location named once.
    assert body["error"]["message"] == (
        "inputs[0].frequency: frequency D does not match model 'tiny', whose frequency is M "
        "(and 1 more)"
    )
    not_json = post(served, "{")
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "malformed_json"

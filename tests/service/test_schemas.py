"""Unit tests of request validation: every rule names its field path, its rule and the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.errors import ClientError, format_loc, json_safe
from service.schemas import Limits, parse_request

LIMITS = Limits(
    horizon=6,
    quantiles=(0.1, 0.5, 0.9),
    min_history=4,
    max_history=40,
    max_series=3,
    max_points=50,
    max_abs_value=1e6,
)
OK = [1.0, 2.0, 3.0, 4.0, 5.0]


def rejected(body: bytes | str) -> ClientError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(ClientError) as info:
        parse_request(raw, LIMITS)
    return info.value


def first(err: ClientError) -> dict[str, Any]:
    return err.detail[0].to_dict()


def test_minimal_body_is_accepted() -> None:
    request = parse_request(b'{"series": [{"values": [1, 2, 3, 4]}]}', LIMITS)
    assert request.series[0].values == [1.0, 2.0, 3.0, 4.0]
    assert request.horizon is None and request.quantiles is None


@pytest.mark.parametrize("body", ['{"series": [', "not json", "", '{"series": [{"values": [1,]}]}'])
def test_malformed_json_is_400(body: str) -> None:
    err = rejected(body)
    assert (err.status, err.reason) == (400, "malformed_json")
    assert err.message.startswith("request body is not valid JSON: ")


@pytest.mark.parametrize(
    ("token", "shown"), [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity")]
)
def test_non_finite_tokens_are_422_at_their_exact_path(token: str, shown: str) -> None:
    """Guards against NaN/Infinity slipping into the model (NaN forecasts for a whole batch)."""
    ok = '{"values": [1, 2, 3, 4]}'
    err = rejected(f'{{"series": [{ok}, {ok}, {{"values": [1, 2, 3, 4, 5, {token}]}}]}}')
    assert (err.status, err.reason) == (422, "validation_error")
    assert first(err) == {
        "loc": "series[2].values[5]",
        "rule": "finite_number",
        "message": "Input should be a finite number",
        "value": shown,
    }
    assert err.message == "series[2].values[5]: Input should be a finite number"


@pytest.mark.parametrize(
    ("values", "loc", "rule", "value"),
    [
        ("[1, 2, null, 4]", "series[0].values[2]", "float_type", None),
        ('[1, 2, "3", 4]', "series[0].values[2]", "float_type", "3"),
        ("[1, 2, true, 4]", "series[0].values[2]", "float_type", True),
        ('"1,2,3"', "series[0].values", "list_type", "1,2,3"),
        ("[]", "series[0].values", "too_short", "[]"),
        ("[1, 2, 3]", "series[0].values", "min_history", 3),
        ("[1, 2, 3, 1e300]", "series[0].values[3]", "max_abs_value", 1e300),
    ],
)
def test_bad_values_are_422(values: str, loc: str, rule: str, value: Any) -> None:
    err = rejected(f'{{"series": [{{"values": {values}}}]}}')
    assert err.status == 422
    got = first(err)
    assert (got["loc"], got["rule"], got["value"]) == (loc, rule, value)


def test_too_short_history_says_the_minimum_and_the_length() -> None:
    err = rejected('{"series": [{"values": [1, 2]}]}')
    assert err.message == "series[0].values: history needs at least 4 points, got 2"


@pytest.mark.parametrize(
    ("extra", "loc", "rule", "message"),
    [
        ('"horizon": 7', "horizon", "horizon_range", "between 1 and the model's horizon 6"),
        ('"horizon": 0', "horizon", "horizon_range", "between 1 and the model's horizon 6"),
        ('"horizon": "3"', "horizon", "int_type", "valid integer"),
        ('"quantiles": [0.1, 0.3]', "quantiles[1]", "known_quantile", "[0.1, 0.5, 0.9]"),
        ('"quantiles": []', "quantiles", "min_length", "must not be empty"),
        ('"horizn": 3', "horizn", "extra_forbidden", "Extra inputs are not permitted"),
    ],
)
def test_options_the_model_does_not_have_are_422(
    extra: str, loc: str, rule: str, message: str
) -> None:
    err = rejected(f'{{"series": [{{"values": [1, 2, 3, 4]}}], {extra}}}')
    got = first(err)
    assert (err.status, got["loc"], got["rule"]) == (422, loc, rule)
    assert message in got["message"]


def test_too_many_series_and_points_are_422() -> None:
    four = json.dumps({"series": [{"values": OK}] * 4})
    err = rejected(four)
    assert first(err) == {
        "loc": "series",
        "rule": "max_series",
        "message": "at most 3 series per request, got 4",
        "value": 4,
    }
    big = json.dumps({"series": [{"values": [1.0] * 30}, {"values": [1.0] * 21}]})
    assert first(rejected(big))["message"] == "at most 50 history points per request, got 51"


def test_every_broken_rule_is_listed() -> None:
    err = rejected('{"series": [{"values": [1]}, {"values": [1, 2]}], "horizon": 9}')
    assert [d.loc for d in err.detail] == ["horizon", "series[0].values", "series[1].values"]
    assert err.message.endswith("(and 2 more)")


def test_empty_series_list_and_non_object_body_are_422() -> None:
    assert first(rejected('{"series": []}'))["loc"] == "series"
    assert first(rejected("[1, 2]"))["rule"] == "model_type"
    assert first(rejected("{}"))["rule"] == "missing"


def test_error_body_is_strict_json() -> None:
    """Guards against a NaN echoed back as a bare NaN token, which clients cannot parse."""
    err = rejected('{"series": [{"values": [1, 2, 3, NaN]}]}')
    body = json.loads(err.body())
    assert body["error"] == "validation_error"
    assert body["detail"][0]["value"] == "NaN"


def test_format_loc_and_json_safe() -> None:
    assert format_loc(("series", 2, "values", 5)) == "series[2].values[5]"
    assert format_loc(()) == "body"
    assert json_safe(float("-inf")) == "-Infinity"
    assert len(json_safe("x" * 500)) == 80

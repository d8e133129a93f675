"""Unit tests of request validation: every rule names its field path, its rule and the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.frequency import Frequency
from service.errors import ClientError, format_loc, json_safe
from service.schemas import ForecastRequest, Limits, check_request, parse_request

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


def parse(raw: bytes, limits: Limits = LIMITS) -> ForecastRequest:
    """The body as the guard takes it: structure first, then the model's limits."""
    return check_request(parse_request(raw), limits)


def rejected(body: bytes | str, limits: Limits = LIMITS) -> ClientError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(ClientError) as info:
        parse(raw, limits)
    return info.value


def first(err: ClientError) -> dict[str, Any]:
    return err.detail[0].to_dict()


def test_minimal_body_is_accepted() -> None:
    request = parse(b'{"series": [{"values": [1, 2, 3, 4]}]}')
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


MONTHLY = Limits(
    horizon=6,
    quantiles=(0.05, 0.1, 0.5, 0.9, 0.95),
    min_history=4,
    max_history=40,
    max_series=3,
    max_points=50,
    max_abs_value=1e6,
    frequency=Frequency.M,
    model="m3-monthly",
)


def test_frequencies_are_read_in_codes_and_long_names() -> None:
    body = {
        "series": [
            {"values": OK, "start": "2020-01-31", "frequency": "month"},
            {"values": OK, "start": "2020-01-31T00:00:00Z"},
        ],
        "frequency": "M",
    }
    request = parse(json.dumps(body).encode(), MONTHLY)
    assert [s.frequency for s in request.series] == [Frequency.M, None]
    assert request.frequency is Frequency.M


def test_a_frequency_the_model_does_not_serve_is_422_naming_both() -> None:
    """Guards against a quarterly series forecast by a monthly model as if it were monthly."""
    body = {"series": [{"values": OK}, {"values": OK, "frequency": "Q"}]}
    assert first(rejected(json.dumps(body), MONTHLY)) == {
        "loc": "series[1].frequency",
        "rule": "model_frequency",
        "message": "frequency Q does not match model 'm3-monthly', whose frequency is M",
        "value": "Q",
    }
    err = rejected(json.dumps({"series": [{"values": OK}], "frequency": "hourly"}), MONTHLY)
    assert (err.status, first(err)["loc"], first(err)["value"]) == (422, "frequency", "H")


def test_an_unknown_frequency_or_start_is_422_with_its_rule() -> None:
    err = rejected(json.dumps({"series": [{"values": OK, "frequency": "fortnightly"}]}), MONTHLY)
    assert (first(err)["loc"], first(err)["rule"], first(err)["value"]) == (
        "series[0].frequency",
        "frequency",
        "fortnightly",
    )
    err = rejected(json.dumps({"series": [{"values": OK, "start": "31/01/2020"}]}), MONTHLY)
    assert (first(err)["loc"], first(err)["rule"], first(err)["value"]) == (
        "series[0].start",
        "iso_timestamp",
        "31/01/2020",
    )


def test_a_start_needs_a_frequency_when_the_model_has_none() -> None:
    """Guards against timestamps stepped by a guessed frequency."""
    err = rejected(json.dumps({"series": [{"values": OK, "start": "2020-01-31"}]}))
    assert first(err) == {
        "loc": "series[0].frequency",
        "rule": "frequency_required",
        "message": "a start needs a frequency: model 'model' has none, so send one",
        "value": None,
    }
    daily = {"series": [{"values": OK, "start": "2020-01-31", "frequency": "D"}]}
    parse(json.dumps(daily).encode())


def test_levels_are_those_the_quantiles_bound() -> None:
    """Guards against an interval built from quantiles the model does not have."""
    assert MONTHLY.levels() == [80.0, 90.0]
    assert MONTHLY.interval(80) == (1, 3) and MONTHLY.interval(90.0) == (0, 4)
    parse(json.dumps({"series": [{"values": OK}], "levels": [80, 90]}).encode(), MONTHLY)
    assert first(rejected(json.dumps({"series": [{"values": OK}], "levels": [95]}), MONTHLY)) == {
        "loc": "levels[0]",
        "rule": "known_level",
        "message": "level not served by this model's quantiles; choose from [80.0, 90.0]",
        "value": 95.0,
    }
    for outside in (0, 100, -5):
        err = rejected(json.dumps({"series": [{"values": OK}], "levels": [outside]}), MONTHLY)
        assert first(err) == {
            "loc": "levels[0]",
            "rule": "level_range",
            "message": "a level is a percentage between 0 and 100",
            "value": outside,
        }

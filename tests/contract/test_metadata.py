"""metadata.json's schema: shipped files pass unchanged, each rule refuses a broken copy
with its message, and every writer's output reads back to the same bytes."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from bench.standin import write_standin
from contract.metadata import (
    MetadataError,
    ModelMetadata,
    dump_metadata,
    parse_metadata,
    read_metadata,
    write_metadata,
)
from tests.service.tiny_model import write_tiny_artifact
from training.export import ModelFacts, export_model
from training.model import ModelConfig, StackedLSTMForecaster

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "models").glob("*/metadata.json"))


def test_the_four_models_are_shipped() -> None:
    """Guards against the shipped-file tests below passing because they found no file."""
    assert [p.parent.name for p in SHIPPED] == [
        "m3-monthly",
        "m3-other",
        "m3-quarterly",
        "m3-yearly",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_metadata_validates_and_writes_back_byte_for_byte(path: Path) -> None:
    """Guards against a schema that refuses a model already shipped, or that loses,
    renames, reorders or reformats a key when it writes one (the JSON must not change)."""
    metadata = read_metadata(path)
    assert dump_metadata(metadata) == path.read_text()
    assert metadata.to_dict() == json.loads(path.read_text())
    assert metadata.architecture == json.loads(path.read_text())["model_config"]


def shipped_dict() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (ROOT / "models" / "m3-monthly" / "metadata.json").read_text()
    )
    return result


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"schema_version": 2}, "schema_version 2 != 1 (this code reads schema 1 only)"),
        ({"schema_version": True}, "schema_version must be the integer 1, got True"),
        ({"schema_version": "1"}, "schema_version must be the integer 1, got '1'"),
        ({"horizon": "18"}, "horizon: Input should be a valid integer (got '18')"),
        ({"horizon": 18.0}, "horizon: Input should be a valid integer (got 18.0)"),
        ({"horizon": 0}, "horizon: Input should be greater than or equal to 1 (got 0)"),
        ({"quantiles": []}, "quantiles must not be empty"),
        ({"quantiles": "0.5"}, "quantiles: Input should be a valid array (got '0.5')"),
        (
            {"quantiles": [0.1, "0.5", 0.9]},
            "quantiles.1: Input should be a valid number (got '0.5')",
        ),
        ({"quantiles": [0.0, 0.5, 0.9]}, "quantiles must each lie in (0, 1), got [0.0, 0.5, 0.9]"),
        ({"quantiles": [0.1, 0.5, 1.0]}, "quantiles must each lie in (0, 1), got [0.1, 0.5, 1.0]"),
        (
            {"quantiles": [0.1, 0.5, 0.5]},
            "quantiles must be strictly increasing, got [0.1, 0.5, 0.5]",
        ),
        (
            {"quantiles": [0.9, 0.5, 0.1]},
            "quantiles must be strictly increasing, got [0.9, 0.5, 0.1]",
        ),
        (
            {"quantiles": [0.1, 0.5, 0.9], "point_quantile_index": 3},
            "point_quantile_index 3 is outside quantiles [0.1, 0.5, 0.9] (0 to 2)",
        ),
        (
            {"quantiles": [0.1, 0.5, 0.9], "point_quantile_index": -1},
            "point_quantile_index -1 is outside quantiles [0.1, 0.5, 0.9] (0 to 2)",
        ),
        (
            {"quantiles": [0.1, 0.5, 0.9], "point_quantile_index": 0},
            "point_quantile_index 0 does not point at 0.5: quantiles[0] is 0.1",
        ),
        (
            {"quantiles": [0.1, 0.4, 0.9], "point_quantile_index": 1},
            "point_quantile_index 1 does not point at 0.5: quantiles[1] is 0.4",
        ),
        (
            {"min_history": 0},
            "need 1 <= min_history <= max_history, got min_history 0 and max_history 126",
        ),
        (
            {"min_history": 127},
            "need 1 <= min_history <= max_history, got min_history 127 and max_history 126",
        ),
        ({"season_length": 0}, "season_length: Input should be greater than or equal to 1 (got 0)"),
        ({"frequency": None}, "frequency: Input should be a valid string (got None)"),
        ({"model_config": []}, "model_config: Input should be an object (got [])"),
        (
            {"model_file": "../other/model.ts"},
            "model_file must be a file name in the artifact's directory, got '../other/model.ts'",
        ),
        (
            {"model_sha256": ""},
            "model_sha256 must be 64 lowercase hex digits (SHA-256 of model_file), got ''",
        ),
        ({"extra": 1}, "key 'extra' is not in schema 1 (unknown keys are refused)"),
    ],
)
def test_each_rule_refuses_a_broken_copy_with_its_message(
    tmp_path: Path, change: dict[str, Any], rule: str
) -> None:
    """Guards against a broken metadata.json being served (wrong columns labelled, a
    point forecast that is not the median, a model file outside its folder, a schema it
    does not know) or refused with a message that does not say which rule."""
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({**shipped_dict(), **change}))
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert str(info.value) == f"{path}: {rule}"


def test_a_missing_key_and_every_broken_rule_are_named(tmp_path: Path) -> None:
    """Guards against a message that names only the first of several problems, or none."""
    broken = {**shipped_dict(), "horizon": "18", "quantiles": []}
    del broken["name"]
    assert_refused(
        json.dumps(broken),
        "m/metadata.json: key 'name' missing; horizon: Input should be a valid integer "
        "(got '18'); quantiles must not be empty",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "m/metadata.json is not JSON: EOF while parsing a value at line 1 column 0"),
        ('{"name": ', "m/metadata.json is not JSON: EOF while parsing a value at line 1 column 9"),
        ("[1, 2]", "m/metadata.json must hold a JSON object"),
    ],
)
def test_text_that_is_not_a_metadata_object(text: str, message: str) -> None:
    """Guards against a truncated file surfacing as a bare pydantic dump."""
    assert_refused(text, message)


def assert_refused(text: str, message: str) -> None:
    with pytest.raises(MetadataError) as info:
        parse_metadata(text, "m/metadata.json")
    assert str(info.value) == message


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    """Guards against an OSError without the path the operator has to fix."""
    with pytest.raises(MetadataError, match=f"^cannot read {tmp_path / 'nope.json'}: "):
        read_metadata(tmp_path / "nope.json")


def test_a_long_value_is_cut_in_the_message() -> None:
    """Guards against a wrongly typed object (a whole evaluation list) flooding the log line."""
    broken = {**shipped_dict(), "evaluation": list(range(1000))}
    with pytest.raises(MetadataError) as info:
        parse_metadata(json.dumps(broken))
    message = str(info.value)
    assert message.startswith("metadata.json: evaluation: Input should be an object")
    assert message.endswith("...)") and len(message) < 200


def test_metadata_is_frozen_and_replace_validates() -> None:
    """Guards against a reader changing the metadata it was handed, and against a copy
    made with changes skipping the rules (pydantic's model_copy does)."""
    metadata = parse_metadata(json.dumps(shipped_dict()))
    with pytest.raises(ValidationError, match="frozen"):
        metadata.horizon = 3  # type: ignore[misc]
    assert metadata.replace(horizon=3).horizon == 3
    assert metadata.horizon == 18
    with pytest.raises(ValidationError, match=r"does not point at 0\.5"):
        metadata.replace(point_quantile_index=metadata.point_quantile_index + 1)


def assert_round_trips(directory: Path) -> ModelMetadata:
    path = directory / "metadata.json"
    metadata = read_metadata(path)
    assert path.read_text() == dump_metadata(metadata)
    assert (
        metadata.model_sha256 == hashlib.sha256((directory / "model.ts").read_bytes()).hexdigest()
    )
    rewritten = directory / "rewritten.json"
    write_metadata(metadata, rewritten)
    assert rewritten.read_bytes() == path.read_bytes()
    return metadata


def test_the_tiny_test_model_round_trips(tmp_path: Path) -> None:
    """Guards against the tests' own model drifting from the contract the service reads."""
    metadata = assert_round_trips(write_tiny_artifact(tmp_path / "tiny"))
    assert (metadata.name, metadata.horizon, metadata.quantiles) == ("tiny", 6, (0.1, 0.5, 0.9))


def test_the_benchmark_stand_in_round_trips(tmp_path: Path) -> None:
    """Guards against the stand-in the benchmarks and load tests serve drifting from it."""
    metadata = assert_round_trips(write_standin(tmp_path / "standin", hidden=8, layers=1))
    assert (metadata.name, metadata.horizon, metadata.max_history) == ("standin", 18, 126)


def test_an_export_round_trips(tmp_path: Path) -> None:
    """Guards against training writing metadata.json that the schema (and so the service)
    refuses, or that reads back different from what export_model returned."""
    torch.manual_seed(0)
    config = ModelConfig(horizon=2, hidden=8)
    facts = ModelFacts("tiny", 1, "other", 3, 30, {"seed": 0}, {"smape": 12.5})
    model = StackedLSTMForecaster(config).eval()
    returned = export_model(model, config, tmp_path / "tiny", facts, register=False)
    metadata = assert_round_trips(tmp_path / "tiny")
    assert metadata.to_dict() == returned
    assert ModelConfig.from_dict(metadata.architecture) == config


def test_an_export_that_breaks_the_contract_writes_nothing(tmp_path: Path) -> None:
    """Guards against export publishing a model whose metadata the service will refuse."""
    torch.manual_seed(0)
    config = ModelConfig(horizon=2, hidden=8)
    facts = ModelFacts("tiny", 0, "other", 3, 30, {}, {})  # season_length 0
    model = StackedLSTMForecaster(config).eval()
    with pytest.raises(ValidationError, match="season_length\n  Input should be greater than"):
        export_model(model, config, tmp_path / "tiny", facts, register=False)
    assert list(tmp_path.iterdir()) == []


def hand_built_metadata(path: Path) -> list[int]:
    """Lines of dict literals in `path` holding both "schema_version" and "model_sha256"."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if {"schema_version", "model_sha256"} <= keys:
                lines.append(node.lineno)
    return lines


def test_no_metadata_is_written_by_hand_outside_the_contract() -> None:
    """Guards against a new writer building metadata.json as a plain dict, which a
    change to the schema would not fail."""
    tops = [
        top
        for top in ROOT.iterdir()
        if top.is_dir() and not top.name.startswith(".") and top.name != "contract"
    ]
    found = {
        str(path.relative_to(ROOT)): lines
        for top in tops
        for path in top.rglob("*.py")
        if (lines := hand_built_metadata(path))
    }
    assert "training" in {top.name for top in tops} and found == {}

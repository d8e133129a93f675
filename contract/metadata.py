"""`metadata.json`, the model artifact's contract (docs/ARTIFACT.md), as one pydantic model.

Every writer (training/export.py, the stand-ins in bench/ and tests/) builds a
`ModelMetadata` and writes it with `write_metadata`; every reader (service/artifact.py,
training/export.py's `load_exported`) goes through `read_metadata`. A change here
changes them all at once.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION: Final = 1
METADATA_FILE = "metadata.json"
MODEL_FILE = "model.ts"
POINT_QUANTILE = 0.5
_SHA256 = re.compile(r"[0-9a-f]{64}")


class MetadataError(ValueError):
    """A metadata.json that cannot be read or breaks the contract; one line naming the
    file and the rule broken."""


class ModelMetadata(BaseModel):
    """The keys of metadata.json, in the order written; docs/ARTIFACT.md says what each means.

    Strict: a key of the wrong JSON type (`"6"` for 6, `true` for 1) is refused, not coerced,
    and so is a key the schema does not have.
    """

    # The key `model_config` is pydantic's own attribute name: it is `architecture` here.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    schema_version: Literal[1]
    name: str
    version: str
    created: str
    horizon: int = Field(ge=1)
    quantiles: tuple[float, ...]
    point_quantile_index: int
    season_length: int = Field(ge=1)
    frequency: str
    min_history: int
    max_history: int
    architecture: dict[str, Any] = Field(alias="model_config")
    training: dict[str, Any]
    evaluation: dict[str, Any]
    torch_version: str
    source_commit: str
    model_file: str
    model_sha256: str

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_schema(cls, value: object) -> object:
        if type(value) is not int:  # also refuses `true`, which Python takes for 1
            raise ValueError(f"schema_version must be the integer {SCHEMA_VERSION}, got {value!r}")
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} != {SCHEMA_VERSION} (this code reads schema "
                f"{SCHEMA_VERSION} only)"
            )
        return value

    @field_validator("quantiles", mode="before")
    @classmethod
    def _list_as_tuple(cls, value: object) -> object:
        # A JSON array arrives as a list from json.loads; strict mode alone takes only tuples.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("quantiles")
    @classmethod
    def _increasing_probabilities(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("quantiles must not be empty")
        if not all(0 < q < 1 for q in value):
            raise ValueError(f"quantiles must each lie in (0, 1), got {list(value)}")
        if not all(a < b for a, b in itertools.pairwise(value)):
            raise ValueError(f"quantiles must be strictly increasing, got {list(value)}")
        return value

    @field_validator("model_file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # Joined to the artifact's directory: a path here could point the service anywhere.
        if not value or value in (".", "..") or "/" in value or "\\" in value:
            raise ValueError(
                f"model_file must be a file name in the artifact's directory, got {value!r}"
            )
        return value

    @field_validator("model_sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError(
                f"model_sha256 must be 64 lowercase hex digits (SHA-256 of model_file), "
                f"got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        index, quantiles = self.point_quantile_index, self.quantiles
        if not 0 <= index < len(quantiles):
            raise ValueError(
                f"point_quantile_index {index} is outside quantiles {list(quantiles)} "
                f"(0 to {len(quantiles) - 1})"
            )
        if quantiles[index] != POINT_QUANTILE:
            raise ValueError(
                f"point_quantile_index {index} does not point at {POINT_QUANTILE}: "
                f"quantiles[{index}] is {quantiles[index]}"
            )
        if not 1 <= self.min_history <= self.max_history:
            raise ValueError(
                f"need 1 <= min_history <= max_history, got min_history {self.min_history} "
                f"and max_history {self.max_history}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON object metadata.json holds, keys in the documented order."""
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> ModelMetadata:
        """A copy with `changes` (keyed as in the file), validated like a new one.

        pydantic's own `model_copy(update=...)` skips validation.
        """
        return ModelMetadata.model_validate({**self.to_dict(), **changes})


def describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as `key: rule (got value)`, in the file's terms."""
    where = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"key {where!r} missing"
    if kind == "extra_forbidden":
        return f"key {where!r} is not in schema {SCHEMA_VERSION} (unknown keys are refused)"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = f"{where}: {error['msg']}" if where else error["msg"]
    got = repr(error["input"])
    return f"{message} (got {got if len(got) <= 80 else got[:77] + '...'})"


def parse_metadata(text: str | bytes, source: str = METADATA_FILE) -> ModelMetadata:
    """The metadata a JSON document holds; MetadataError names `source` and each rule broken."""
    try:
        return ModelMetadata.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":
            reason = errors[0].get("ctx", {}).get("error", errors[0]["msg"])
            raise MetadataError(f"{source} is not JSON: {reason}") from None
        if errors[0]["type"] == "model_type":
            raise MetadataError(f"{source} must hold a JSON object") from None
        raise MetadataError(f"{source}: {'; '.join(map(describe, errors))}") from None


def read_metadata(path: Path) -> ModelMetadata:
    """The metadata in the file at `path`; MetadataError if it cannot be read or is broken."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc}") from exc
    return parse_metadata(text, str(path))


def dump_metadata(metadata: ModelMetadata) -> str:
    """metadata.json's text: JSON indented by 2, with a trailing newline."""
    return json.dumps(metadata.to_dict(), indent=2) + "\n"


def write_metadata(metadata: ModelMetadata, path: Path) -> None:
    """Write `metadata` to `path` (a metadata.json)."""
    path.write_text(dump_metadata(metadata))

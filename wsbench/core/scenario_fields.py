"""The value types of scenario fields: numbers with units, threshold expressions, message sizes.

Values take units (:mod:`wsbench.core.units`): a field typed :data:`Duration`, :data:`Rate` or
:data:`ByteSize` takes a plain number or a string with a unit, and publishes both forms in the JSON
Schema. :data:`ThresholdExpr` is checked by :mod:`wsbench.core.thresholds`; :data:`Size` is a fixed
size or a distribution (:class:`MessageSize`). The scenario's sections are :mod:`wsbench.core.scenario`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from wsbench.core import payload
from wsbench.core.thresholds import ThresholdError, parse_threshold
from wsbench.core.units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    UnitError,
    parse_duration,
    parse_rate,
    parse_size,
)


def _unit(parse: Any) -> Any:
    def validate(value: Any) -> Any:
        try:
            return parse(value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return validate


def _with_unit(parse: Any, number: str, pattern: str, description: str) -> tuple[Any, Any]:
    """The validator and JSON schema of a field written as a plain ``number`` or a string with a unit."""
    return BeforeValidator(_unit(parse)), WithJsonSchema(
        {
            "anyOf": [{"type": number, "minimum": 0}, {"type": "string", "pattern": pattern}],
            "description": description,
        }
    )


Duration = Annotated[
    float, *_with_unit(parse_duration, "number", DURATION_PATTERN, "seconds, or a duration with a unit: 20s, 500ms, 2m")
]
Rate = Annotated[
    float, *_with_unit(parse_rate, "number", RATE_PATTERN, "per second, or a rate with a unit: 2000/s, 120/min")
]
ByteSize = Annotated[
    int, *_with_unit(parse_size, "integer", SIZE_PATTERN, "bytes, or a size with a unit: 512B, 1KiB, 1MiB")
]


def _threshold(value: Any) -> Any:
    try:
        parse_threshold(value)
    except ThresholdError as exc:
        raise ValueError(str(exc)) from None
    return value


ThresholdExpr = Annotated[
    str,
    AfterValidator(_threshold),
    WithJsonSchema({"type": "string", "description": "METRIC OP VALUE, e.g. 'latency.p99 < 50ms'"}),
]


class StrictModel(BaseModel):
    # every part of a scenario: an unknown key is an error, defaults are validated too
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MessageSize(StrictModel):
    """A fixed size, or a distribution: uniform between two sizes, or weighted choices."""

    kind: Literal["fixed", "uniform", "choices"] = "fixed"
    values: list[ByteSize] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _shape(self) -> MessageSize:
        if self.kind == "fixed" and len(self.values) != 1:
            raise ValueError("a fixed size has one value")
        if self.kind == "uniform" and (len(self.values) != 2 or self.values[0] > self.values[1]):
            raise ValueError("uniform takes [min, max] with min <= max")
        if self.weights is not None and (
            self.kind != "choices" or len(self.weights) != len(self.values) or min(self.weights) < 0
        ):
            raise ValueError("weights go with choices, one non-negative weight per size")
        return self

    @property
    def smallest(self) -> int:
        return min(self.values)

    @property
    def largest(self) -> int:
        return max(self.values)


def _size_before(value: Any) -> Any:
    if isinstance(value, MessageSize):
        return value
    if isinstance(value, dict):
        if "kind" in value:
            return value
        if set(value) == {"uniform"}:
            return {"kind": "uniform", "values": value["uniform"]}
        if set(value) <= {"choices", "weights"} and "choices" in value:
            return {"kind": "choices", "values": value["choices"], "weights": value.get("weights")}
        raise ValueError("expected a size (128B), {uniform: [64B, 1KiB]} or {choices: [64B, 1KiB], weights: [3, 1]}")
    return {"kind": "fixed", "values": [value]}


Size = Annotated[
    MessageSize,
    BeforeValidator(_size_before),
    WithJsonSchema(
        {
            "description": "message size: 128B, {uniform: [64B, 1KiB]} or {choices: [64B, 1KiB], weights: [3, 1]}",
            "anyOf": [
                {"type": "integer", "minimum": payload.MIN_MESSAGE_SIZE},
                {"type": "string", "pattern": SIZE_PATTERN},
                {
                    "type": "object",
                    "properties": {"uniform": {"type": "array", "minItems": 2, "maxItems": 2}},
                    "required": ["uniform"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"choices": {"type": "array", "minItems": 1}, "weights": {"type": "array"}},
                    "required": ["choices"],
                    "additionalProperties": False,
                },
                {"type": "object", "required": ["kind", "values"]},
            ],
        }
    ),
]

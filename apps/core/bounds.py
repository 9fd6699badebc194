"""The finite ranges a number in a request must fall in (API.md "Limits"), for every app.

A number outside its range is a 400 naming the field; nothing is stored. The ranges keep every
accumulator a projection keeps finite: with each value within ±1e15, a sum of squares over
2**63 events stays below 1e30 × 9.3e18 ≈ 1e49, far from the float maximum (1.8e308), and
every metric computed from such values (a mean, an RMSE, a difference of two) is finite.

A range states itself several ways from one definition, so they cannot disagree: `problem()`
(the check, for bodies parsed into Python values), `meta()` (the same check compiled into a
msgspec type, for the ingestion decoder), `openapi()` (minimum/maximum in the schema) and
`serializer_field()` (a DRF field that documents a number of a request body).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import msgspec
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# The magnitude of a measured or predicted value: 1e15 keeps 15-16 significant digits exact
# in a float and leaves (1e15)² × 2**63 far below the float maximum.
MAGNITUDE = 10**15


def number_text(value: float) -> str:
    """A bound as API.md writes it: 1e15, -1e15, 0.05, 86400000, 9223372036854775807."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}".replace("e+", "e")
    whole = int(value)
    if abs(whole) == MAGNITUDE:
        return "-1e15" if whole < 0 else "1e15"
    return str(whole)


@dataclass(frozen=True)
class Bound:
    """A range of finite numbers, both ends included unless marked exclusive."""

    minimum: float
    maximum: float
    integer: bool = False
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    @property
    def text(self) -> str:
        """The range in words: "from -1e15 to 1e15", "greater than 0 and at most 100"."""
        low, high = number_text(self.minimum), number_text(self.maximum)
        if not (self.exclusive_minimum or self.exclusive_maximum):
            return f"from {low} to {high}"
        low = f"greater than {low}" if self.exclusive_minimum else f"at least {low}"
        high = f"less than {high}" if self.exclusive_maximum else f"at most {high}"
        return f"{low} and {high}"

    def sql(self, expression: str) -> str:
        """SQL: `expression` (a float8 column) is within the range. NaN fails every
        comparison in PostgreSQL's sense of it (it sorts above Infinity), so it is out, as
        are ±Infinity."""
        low = ">" if self.exclusive_minimum else ">="
        high = "<" if self.exclusive_maximum else "<="
        return (
            f"({expression} {low} {number_text(self.minimum)}::float8 "
            f"AND {expression} {high} {number_text(self.maximum)}::float8)"
        )

    def contains(self, value: float) -> bool:
        above = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        below = value < self.maximum if self.exclusive_maximum else value <= self.maximum
        return above and below

    def problem(self, value: Any) -> str | None:
        """None when `value` is a number in the range, else the message for the field.

        Booleans are not numbers here; Python compares an int of any size with a float
        exactly, so a 400-digit integer is simply out of range, never an OverflowError.
        """
        kind = "a whole number" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"Must be {kind} {self.text}."
        if isinstance(value, float) and not math.isfinite(value):
            return f"Must be a finite number {self.text}."
        if self.integer and isinstance(value, float) and not value.is_integer():
            return f"Must be a whole number {self.text}."
        if not self.contains(value):
            return self.out_of_range
        return None

    @property
    def out_of_range(self) -> str:
        return (
            f"Out of range: must be {'a whole number' if self.integer else 'a number'} {self.text}."
        )

    def meta(self) -> msgspec.Meta:
        """The range as msgspec checks it while decoding (the C pass of ingestion)."""
        if self.exclusive_minimum and self.exclusive_maximum:
            return msgspec.Meta(gt=self.minimum, lt=self.maximum)
        if self.exclusive_minimum:
            return msgspec.Meta(gt=self.minimum, le=self.maximum)
        if self.exclusive_maximum:
            return msgspec.Meta(ge=self.minimum, lt=self.maximum)
        return msgspec.Meta(ge=self.minimum, le=self.maximum)

    def openapi(self) -> dict[str, Any]:
        """minimum/maximum (OpenAPI 3.0: exclusiveMinimum/exclusiveMaximum are booleans)."""
        schema: dict[str, Any] = {"minimum": self.minimum, "maximum": self.maximum}
        if self.exclusive_minimum:
            schema["exclusiveMinimum"] = True
        if self.exclusive_maximum:
            schema["exclusiveMaximum"] = True
        return schema

    def serializer_field(self, help_text: str = "", **options: Any) -> Any:
        """A DRF field for the OpenAPI schema: the range as minimum/maximum and in words."""
        text = f"{help_text} {'A whole number' if self.integer else 'A finite number'} {self.text}."
        if self.integer:
            return serializers.IntegerField(
                min_value=int(self.minimum),
                max_value=int(self.maximum),
                help_text=text.strip(),
                **options,
            )
        if self.exclusive_minimum or self.exclusive_maximum:
            schema = {"type": "number", "format": "double", **self.openapi()}
            exclusive = extend_schema_field(schema)(type("Number", (serializers.FloatField,), {}))
            return exclusive(help_text=text.strip(), **options)
        return serializers.FloatField(
            min_value=self.minimum, max_value=self.maximum, help_text=text.strip(), **options
        )


# A measured or predicted value, and anything compared with one: feedback values, outputs,
# feature, attribute and explanation values, rule thresholds, registry metrics.
VALUE = Bound(-MAGNITUDE, MAGNITUDE)
# A latency in milliseconds: at most one day.
LATENCY_MS = Bound(0, 86_400_000)
# A whole number as PostgreSQL's bigint and JSON's usual readers hold it.
INT64 = Bound(-(2**63), 2**63 - 1, integer=True)
# A share: a weight, a coverage, a probability threshold.
SHARE = Bound(0, 1)


# --- numbers beyond a float ----------------------------------------------------------------

# A JSON parser that reads numbers as floats refuses one beyond ±1.8e308 (a 309-digit
# integer, 1e400) before any field's range is checked; this finds where it is, to name it.
BEYOND_FLOAT = (
    f"Out of range: beyond what any number here may be ({number_text(INT64.minimum)} to "
    f"{number_text(INT64.maximum)} at most; API.md, Limits)."
)
_FLOAT_DIGITS = 309


class _Beyond:
    """Stands for a number beyond a float's range in the document read by beyond_float_path."""


_BEYOND = _Beyond()


def _read_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _BEYOND


def _read_int(text: str) -> Any:
    return _BEYOND if len(text.lstrip("-")) >= _FLOAT_DIGITS else int(text)


def beyond_float_path(raw: bytes | str) -> str | None:
    """The dotted path of the first number in the JSON text `raw` beyond a float's range
    ("" for the whole document), or None when there is none or `raw` is not JSON."""
    try:
        document = json.loads(raw, parse_float=_read_float, parse_int=_read_int)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if value is _BEYOND:
            return path
        if isinstance(value, dict | list):
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            children = [(f"{path}.{key}" if path else str(key), item) for key, item in pairs]
            stack.extend(reversed(children))
    return None

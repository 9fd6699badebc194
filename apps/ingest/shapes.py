"""The one declaration of each event shape (API.md "Ingestion"); the rest follows from it.

PREDICTION and FEEDBACK list, once, each field's JSON name and type, whether it is required,
its string, key-count and numeric limits, its description, and the column it lands in.
From them come:
- the msgspec types of the one-pass decoder, built per set of configured limits
  (validation.py), and the cross-field rules it runs after that pass (`Shape.rules`);
- the COPY column list of the write path and each event's row (`Shape.columns`, `Shape.row`);
- the OpenAPI request and answer serializers (api/serializers.py);
- the answer of GET /predictions/{id}, /feedback/{id} and the event feed (api/serializers.py).
The Django models stay for the migrations; tests/ingest/test_shapes.py checks that their
columns and these agree.

Numbers are bounded here (apps.core.bounds) and the bounds compile into the msgspec types,
so a valid body is still checked by msgspec's C code alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import msgspec

from apps.core.bounds import LATENCY_MS, VALUE, Bound

Problem = tuple[str, str]  # (field, message)
ScalarKind = Literal["uuid", "name", "text", "time", "number", "boolean", "null"]
# Configurable limits (apps.ingest.validation.Limits): the attribute, its setting and default.
LimitName = Literal["attributes", "features"]
LIMIT_SETTINGS: dict[str, tuple[str, int]] = {
    "string_length": ("KAIZEN_MAX_STRING_LENGTH", 1024),
    "attributes": ("KAIZEN_MAX_ATTRIBUTES", 50),
    "features": ("KAIZEN_MAX_FEATURES", 500),
    "future_seconds": ("KAIZEN_MAX_FUTURE_SECONDS", 300),
}
# The PostgreSQL type of each kind of value in the COPY path.
_COLUMN_TYPES = {
    "uuid": "uuid",
    "name": "text",
    "text": "text",
    "time": "timestamptz",
    "number": "float8",
    "map": "jsonb",
}


@dataclass(frozen=True)
class Scalar:
    """One JSON value: a UUID, a name (non-empty, no control characters), a text, an RFC 3339
    time with an offset, a bounded number, a boolean or null."""

    kind: ScalarKind
    bound: Bound | None = None


@dataclass(frozen=True)
class Map:
    """A flat JSON object: text keys (names) → one of `values`; at most `max_keys` keys."""

    values: tuple[Scalar, ...]
    max_keys: LimitName


@dataclass(frozen=True)
class Object:
    """A nested JSON object with its own fields (no unknown keys); its fields are columns."""

    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Field:
    """One key of an event. `column`: where it is stored ("" = its name; None = not a column
    of its own, e.g. a reference the write path resolves into another column)."""

    name: str
    type: Scalar | Map | Object
    description: str
    required: bool = False
    column: str | None = ""
    # Where the answer reads it on a stored row when not from its column (dotted attributes).
    answer_from: str = ""

    @property
    def column_name(self) -> str | None:
        return self.name if self.column == "" else self.column


UUID = Scalar("uuid")
NAME = Scalar("name")
TEXT = Scalar("text")
TIME = Scalar("time")
BOOLEAN = Scalar("boolean")
NULL = Scalar("null")


def number(bound: Bound) -> Scalar:
    return Scalar("number", bound)


# Columns every ingested event stores that are not fields: who posted it, and its content
# hash (validation.content_hash), always last (staging.store reads it there).
STORED_WITH = (("actor", "text"), ("content_hash", "bytea"))
Row = Callable[[Any, tuple[Any, ...], str, bytes], tuple[Any, ...]]
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Shape:
    """An event shape: its fields in canonical order, table, and the columns it resolves."""

    kind: Literal["prediction", "feedback"]
    table: str
    fields: tuple[Field, ...]
    # Cross-field rules, after the types are checked (occurred_at is the decoder's).
    rules: Callable[[Any], list[Problem] | None]
    description: str
    # Columns the write path fills from fields (e.g. a version id from model + version),
    # passed to `row` in this order.
    resolved: tuple[tuple[str, str], ...] = ()

    @cached_property
    def _written(self) -> tuple[tuple[str, str, str], ...]:
        """(column, PostgreSQL type, Python expression of its value) of every column written,
        in the order of `columns`: the fields' in declaration order (id first), the resolved
        ones, then STORED_WITH (the content hash last)."""
        written: list[tuple[str, str, str]] = []
        for field in self.fields:
            name = _identifier(field.name)
            if isinstance(field.type, Object):
                written += [
                    (
                        str(inner.column_name),
                        _COLUMN_TYPES[_kind(inner)],
                        f"None if event.{name} is None else event.{name}.{_identifier(inner.name)}",
                    )
                    for inner in field.type.fields
                ]
            elif field.column_name is None:
                continue  # resolved into another column by the write path
            elif isinstance(field.type, Map):
                value = f"None if event.{name} is None else encode(event.{name})"
                written.append((field.column_name, "jsonb", value))
            else:
                written.append((field.column_name, _COLUMN_TYPES[field.type.kind], f"event.{name}"))
        written += [
            (column, kind, f"resolved[{i}]") for i, (column, kind) in enumerate(self.resolved)
        ]
        written += [(column, kind, _identifier(column)) for column, kind in STORED_WITH]
        return tuple(written)

    @cached_property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """The columns the write path fills, in the order of `row`: id first, hash last."""
        return tuple((column, kind) for column, kind, _ in self._written)

    @cached_property
    def row(self) -> Row:
        """row(event, resolved values, actor, content hash) → the values of `columns`.

        Generated from the declaration once, as dataclasses generates __init__: one tuple
        expression of attribute reads (and one JSON encoding per map sent), as fast as a
        tuple written by hand. Its source is `Shape.row_source`.
        """
        namespace: dict[str, Any] = {"encode": _encode}
        exec(compile(self.row_source, f"<row of {self.kind}>", "exec"), namespace)  # noqa: S102 - source built from the declaration's identifiers
        row: Row = namespace["row"]
        return row

    def in_bounds_sql(self, alias: str) -> str:
        """SQL: the stored row `alias` holds every number of its number columns within its
        field's range (NULL passes). Rows written before the bounds were enforced at the
        door, or around the API, may hold any float; readers that sum them (projections)
        leave such rows out. Numbers inside maps (jsonb) are not columns and not checked."""
        checks = [
            f"({alias}.{column} IS NULL OR {bound.sql(f'{alias}.{column}')})"
            for column, bound in self._number_columns
        ]
        return "(" + " AND ".join(checks or ["true"]) + ")"

    @cached_property
    def _number_columns(self) -> tuple[tuple[str, Bound], ...]:
        fields = [
            inner
            for field in self.fields
            for inner in (field.type.fields if isinstance(field.type, Object) else (field,))
        ]
        return tuple(
            (str(field.column_name), field.type.bound)
            for field in fields
            if isinstance(field.type, Scalar)
            and field.type.bound is not None
            and field.column_name is not None
        )

    @property
    def row_source(self) -> str:
        parameters = ", ".join(["event", "resolved", *(column for column, _ in STORED_WITH)])
        values = "".join(f"        {value},\n" for _, _, value in self._written)
        return f"def row({parameters}):\n    return (\n{values}    )\n"


def _identifier(name: str) -> str:
    """A declared name, checked to be a Python identifier before it enters generated code."""
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not an identifier.")
    return name


def _kind(field: Field) -> str:
    return field.type.kind if isinstance(field.type, Scalar) else "map"


# --- prediction ----------------------------------------------------------------------------


def _prediction_rules(event: Any) -> list[Problem] | None:
    problems: list[Problem] | None = None
    output = event.output
    if output is None:
        if event.error is None:
            problems = [("output", "Send output, or error if the model failed.")]
    elif event.error is not None:
        problems = [("error", "Send either output or error, not both.")]
    elif output.label is None and output.score is None and output.value is None:
        problems = [("output", "Give at least one of label, score, value.")]
    if (event.experiment is None) != (event.variant is None):
        field = "variant" if event.variant is None else "experiment"
        problems = (problems or []) + [(field, "experiment and variant go together.")]
    elif event.experiment is not None and event.subject is None:
        problems = (problems or []) + [("subject", "Required with an experiment.")]
    explanation = event.explanation
    if explanation is not None and event.features is not None:
        if not explanation.keys() <= event.features.keys():
            problems = (problems or []) + [
                ("explanation", "Its keys must be among the features' keys.")
            ]
    return problems


_ID = Field("id", UUID, "The client's id (any UUID version); the idempotency key.", required=True)
_OCCURRED_AT = Field("occurred_at", TIME, "When it happened.", required=True)
_VALUE = number(VALUE)

PREDICTION = Shape(
    kind="prediction",
    table="ingest_prediction",
    description="One prediction: `output` (at least one key) or `error`, not both.",
    rules=_prediction_rules,
    resolved=(("model_version_id", "int8"),),
    # The canonical order of content_hash: never reorder, rename or retype a field.
    fields=(
        _ID,
        Field(
            "model",
            NAME,
            "A registered model.",
            required=True,
            column=None,
            answer_from="model_version.model.name",
        ),
        Field(
            "model_version",
            NAME,
            "A registered version of that model.",
            required=True,
            column=None,
            answer_from="model_version.version",
        ),
        _OCCURRED_AT,
        Field(
            "subject", NAME, "The randomisation unit (user, session…); required with experiment."
        ),
        Field("experiment", NAME, "With variant: an experiment of the model."),
        Field(
            "variant",
            NAME,
            "With experiment: one of its variants; model_version must be its version, "
            "and subject is then required.",
        ),
        Field(
            "attributes",
            Map((TEXT, _VALUE, BOOLEAN), max_keys="attributes"),
            "Segment keys: attribute → string, number or boolean.",
        ),
        Field(
            "features",
            Map((_VALUE, TEXT, BOOLEAN, NULL), max_keys="features"),
            "The model's inputs: feature → number, string, boolean or null.",
        ),
        Field(
            "output",
            Object(
                "Output",
                (
                    Field("label", TEXT, "The predicted label.", column="output_label"),
                    Field(
                        "score", _VALUE, "The score (e.g. a probability).", column="output_score"
                    ),
                    Field(
                        "value", _VALUE, "The predicted value (regression).", column="output_value"
                    ),
                ),
            ),
            "What the model answered: at least one of label, score, value.",
            column=None,
        ),
        Field("error", TEXT, "The model failed (counted in the error rate)."),
        Field(
            "explanation",
            Map((_VALUE,), max_keys="features"),
            "Feature → contribution; its keys among the features' keys.",
        ),
        Field("latency_ms", number(LATENCY_MS), "How long the model took, in milliseconds."),
    ),
)


# --- feedback ------------------------------------------------------------------------------


def _feedback_rules(event: Any) -> list[Problem] | None:
    if (event.value is None) == (event.label is None):
        return [("value", "Send exactly one of value or label.")]
    return None


FEEDBACK = Shape(
    kind="feedback",
    table="ingest_feedback",
    description="One feedback event: exactly one of `value` or `label`.",
    rules=_feedback_rules,
    fields=(
        _ID,
        Field("prediction_id", UUID, "The prediction; it may arrive later.", required=True),
        Field("metric", NAME, "A name: click, conversion, revenue, label…", required=True),
        _OCCURRED_AT,
        Field("value", _VALUE, "A measured value (summed per subject in experiments)."),
        Field("label", TEXT, "The true label (accuracy, precision…)."),
    ),
)

SHAPES = {shape.kind: shape for shape in (PREDICTION, FEEDBACK)}

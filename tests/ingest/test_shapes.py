"""The declaration of each event shape agrees with the Django models and the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.events.models import Event
from apps.ingest.models import Feedback, Prediction
from apps.ingest.shapes import FEEDBACK, PREDICTION, Field, Map, Object, Scalar, Shape

# Django's column types (PostgreSQL) as the COPY path names them.
_TYPES = {
    "uuid": "uuid",
    "varchar(1024)": "text",
    "varchar(200)": "text",
    "timestamp with time zone": "timestamptz",
    "double precision": "float8",
    "jsonb": "jsonb",
    "bigint": "int8",
    "bytea": "bytea",
}
# Columns of the event base that the database fills (never in the write path's list).
_DATABASE_DEFAULTS = {"seq", "xid", "received_at"}


def _model_columns(model):
    return {
        field.column: (_TYPES[field.db_type(connection)], field.null)
        for field in model._meta.concrete_fields
        if field.column not in _DATABASE_DEFAULTS
    }


def _declared_nullability(shape: Shape) -> dict[str, bool]:
    """column → whether it may be NULL, from the declared optionality."""
    nullable = {name: False for name, _ in shape.columns}
    for field in shape.fields:
        if isinstance(field.type, Object):
            nullable.update({str(inner.column_name): True for inner in field.type.fields})
        elif field.column_name is not None:
            nullable[field.column_name] = not field.required
    return nullable


@pytest.mark.parametrize(("shape", "model"), [(PREDICTION, Prediction), (FEEDBACK, Feedback)])
def test_declaration__columns__match_the_model(shape, model):
    # Given the columns the declaration writes, with their types and nullability
    declared = {name: (kind, _declared_nullability(shape)[name]) for name, kind in shape.columns}
    # Then the Django model (and so the migrations) has exactly those columns
    assert shape.table == model._meta.db_table
    assert declared == _model_columns(model)


@pytest.mark.parametrize("shape", [PREDICTION, FEEDBACK])
def test_declaration__columns__id_first_content_hash_last(shape):
    # The write path reads a row's id at 0 and its content hash at -1 (staging.store)
    assert shape.columns[0] == ("id", "uuid")
    assert shape.columns[-1] == ("content_hash", "bytea")
    assert Event._meta.get_field("id").column == "id"


def _numbers(fields: tuple[Field, ...], prefix: str = "") -> dict[str, object]:
    """Dotted path → the declared bound of every number (a map's values as `path.*`)."""
    found: dict[str, object] = {}
    for field in fields:
        kind = field.type
        path = prefix + field.name
        if isinstance(kind, Object):
            found.update(_numbers(kind.fields, f"{path}."))
        elif isinstance(kind, Map):
            found.update({f"{path}.*": value.bound for value in kind.values if value.bound})
        elif isinstance(kind, Scalar) and kind.kind == "number":
            found[path] = kind.bound
    return found


def test_declaration__every_number__bounded_as_api_md_states():
    # Then every numeric field of both shapes has API.md's range
    value = (-(10**15), 10**15)
    assert {
        path: (bound.minimum, bound.maximum)  # type: ignore[attr-defined]
        for path, bound in {
            **_numbers(PREDICTION.fields, "prediction."),
            **_numbers(FEEDBACK.fields, "feedback."),
        }.items()
    } == {
        "prediction.attributes.*": value,
        "prediction.features.*": value,
        "prediction.output.score": value,
        "prediction.output.value": value,
        "prediction.explanation.*": value,
        "prediction.latency_ms": (0, 86_400_000),
        "feedback.value": value,
    }


def _schema_number(schema, component, *path):
    node = schema["components"]["schemas"][component]
    for step in path:
        if step == "*":
            values = node["additionalProperties"]
            node = next(
                choice for choice in values.get("oneOf", [values]) if choice["type"] == "number"
            )
        elif "$ref" in node.get("properties", {}).get(step, {}).get("allOf", [{}])[0]:
            reference = node["properties"][step]["allOf"][0]["$ref"]
            node = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
        else:
            node = node["properties"][step]
    return node["minimum"], node["maximum"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("component", "path", "expected"),
    [
        ("PredictionInRequest", ("latency_ms",), (0, 86_400_000)),
        ("PredictionInRequest", ("output", "score"), (-(10**15), 10**15)),
        ("PredictionInRequest", ("output", "value"), (-(10**15), 10**15)),
        ("PredictionInRequest", ("features", "*"), (-(10**15), 10**15)),
        ("PredictionInRequest", ("attributes", "*"), (-(10**15), 10**15)),
        ("PredictionInRequest", ("explanation", "*"), (-(10**15), 10**15)),
        ("FeedbackInRequest", ("value",), (-(10**15), 10**15)),
    ],
)
def test_schema__ingestion_numbers__minimum_and_maximum_stated(
    anonymous, component, path, expected
):
    # When the OpenAPI schema is read
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    # Then each number states its bounds
    assert _schema_number(schema, component, *path) == expected

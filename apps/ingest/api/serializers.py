"""Shapes of the ingestion API, derived from the declaration of each event (shapes.py).

The POST endpoints do not run these serializers: validation.py decodes and checks the body
in one compiled pass from the same declaration. They give the OpenAPI schema (types,
required fields, numeric minimum/maximum, descriptions; the configurable string and
key-count limits are stated with their defaults in the descriptions) and the events as
answered, with the same body for errors as every endpoint.
"""

from __future__ import annotations

import functools
from operator import attrgetter
from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from apps.core.numbers import finite_or_none
from apps.ingest.models import Feedback, Prediction
from apps.ingest.shapes import (
    FEEDBACK,
    LIMIT_SETTINGS,
    PREDICTION,
    Field,
    Map,
    Object,
    Scalar,
    Shape,
)


def _limit(name: str) -> str:
    setting, default = LIMIT_SETTINGS[name]
    return f"{default} ({setting})"


_TEXT = f"At most {_limit('string_length')} characters, without U+0000."
_NAME = (
    f"1 to {_limit('string_length')} characters, without control characters "
    "(U+0000-U+001F, U+007F-U+009F)."
)
_TIME = f"RFC 3339 with a timezone; at most {_limit('future_seconds')} seconds in the future."
_SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "boolean": {"type": "boolean"},
}


def _scalar_schema(scalar: Scalar) -> dict[str, Any]:
    if scalar.kind == "number":
        assert scalar.bound is not None  # noqa: S101 - every declared number is bounded
        return {"type": "number", **scalar.bound.openapi()}
    return _SCALAR_SCHEMAS[scalar.kind]


def _map_field(field: Field, kind: Map) -> type[serializers.DictField]:
    """A DictField whose schema lists the value types, with their bounds."""
    alternatives = [_scalar_schema(value) for value in kind.values if value.kind != "null"]
    values: dict[str, Any] = (
        {"oneOf": alternatives} if len(alternatives) > 1 else dict(alternatives[0])
    )
    if any(value.kind == "null" for value in kind.values):
        values["nullable"] = True
    description = (
        f"{field.description} Flat; at most {_limit(kind.max_keys)} keys, each a name of "
        f"at most {_limit('string_length')} characters without control characters."
    )
    schema = {"type": "object", "additionalProperties": values, "description": description}
    named = type(f"{field.name.title()}Field", (serializers.DictField,), {})
    return extend_schema_field(schema)(named)


def _serializer_field(field: Field) -> serializers.Field[Any, Any, Any, Any]:
    optional: dict[str, Any] = {} if field.required else {"required": False, "allow_null": True}
    kind = field.type
    if isinstance(kind, Object):
        nested = _serializer(kind.name, kind.fields, field.description)
        return nested(help_text=field.description, **optional)
    if isinstance(kind, Map):
        return _map_field(field, kind)(**optional)
    text = field.description
    if kind.kind == "uuid":
        return serializers.UUIDField(help_text=text, **optional)
    if kind.kind == "time":
        return serializers.DateTimeField(help_text=f"{text} {_TIME}", **optional)
    if kind.kind == "number":
        assert kind.bound is not None  # noqa: S101 - every declared number is bounded
        bound = kind.bound
        return serializers.FloatField(
            min_value=bound.minimum,
            max_value=bound.maximum,
            help_text=f"{text} A finite number {bound.text}.",
            **optional,
        )
    if kind.kind == "name":
        return serializers.CharField(min_length=1, help_text=f"{text} {_NAME}", **optional)
    return serializers.CharField(allow_blank=True, help_text=f"{text} {_TEXT}", **optional)


@functools.cache
def _serializer(
    name: str, fields: tuple[Field, ...], description: str
) -> type[serializers.Serializer[Any]]:
    """A serializer class of the declared fields, named `name` (its schema component).

    Built once per name, so a nested object is one component wherever it appears.
    """
    declared: dict[str, Any] = {field.name: _serializer_field(field) for field in fields}
    return type(
        f"{name}Serializer", (serializers.Serializer,), {**declared, "__doc__": description}
    )


def _request(shape: Shape) -> type[serializers.Serializer[Any]]:
    return _serializer(f"{shape.kind.title()}In", shape.fields, shape.description)


def _stored(shape: Shape, request: type[serializers.Serializer[Any]]) -> Any:
    received_at = serializers.DateTimeField(help_text="When Kaizen stored it.")
    return type(
        f"{shape.kind.title()}Serializer",
        (request,),
        {"received_at": received_at, "__doc__": f"A stored {shape.kind} (absent fields null)."},
    )


def _batch(shape: Shape, single: type[serializers.Serializer[Any]]) -> Any:
    events = single(
        many=True, help_text="1-1000 events (KAIZEN_MAX_BATCH_EVENTS; more → 413); atomic."
    )
    return type(
        f"{shape.kind.title()}BatchSerializer",
        (serializers.Serializer,),
        {"events": events, "__doc__": "A batch: stored whole or not at all."},
    )


PredictionInSerializer = _request(PREDICTION)
FeedbackInSerializer = _request(FEEDBACK)
PredictionPostSerializer = PolymorphicProxySerializer(
    component_name="PredictionPost",
    serializers=[PredictionInSerializer, _batch(PREDICTION, PredictionInSerializer)],
    resource_type_field_name=None,
)
FeedbackPostSerializer = PolymorphicProxySerializer(
    component_name="FeedbackPost",
    serializers=[FeedbackInSerializer, _batch(FEEDBACK, FeedbackInSerializer)],
    resource_type_field_name=None,
)
PredictionSerializer = _stored(PREDICTION, PredictionInSerializer)
FeedbackSerializer = _stored(FEEDBACK, FeedbackInSerializer)


class IngestResultSerializer(serializers.Serializer[Any]):
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(help_text="Events already stored with equal content.")


# --- answers ----------------------------------------------------------------------------------


def _answer(row: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The declared fields of a stored row as JSON values; an object whose columns are all
    NULL is null (a prediction with an error has no output)."""
    answer: dict[str, Any] = {}
    for field in fields:
        kind = field.type
        if isinstance(kind, Object):
            inner = {
                key: value for key, value in _answer(row, kind.fields).items() if value is not None
            }
            answer[field.name] = inner or None
            continue
        value = attrgetter(field.answer_from or str(field.column_name))(row)
        if value is not None and isinstance(kind, Scalar) and kind.kind in {"uuid", "time"}:
            value = value.isoformat() if kind.kind == "time" else str(value)
        elif isinstance(kind, Scalar) and kind.kind == "number":
            # NaN and ±Infinity are only in rows written around the API: shown as null.
            value = finite_or_none(value)
        answer[field.name] = value
    return answer


def prediction_as_dict(prediction: Prediction) -> dict[str, Any]:
    """A stored prediction as GET /api/v1/predictions/{id} and the event feed show it."""
    return {
        **_answer(prediction, PREDICTION.fields),
        "received_at": prediction.received_at.isoformat(),
    }


def feedback_as_dict(feedback: Feedback) -> dict[str, Any]:
    """A stored feedback event as GET /api/v1/feedback/{id} and the event feed show it."""
    return {**_answer(feedback, FEEDBACK.fields), "received_at": feedback.received_at.isoformat()}

"""Shapes of the ingestion API: request bodies for the OpenAPI schema, and events as answered.

The POST endpoints do not run these serializers: validation.py decodes and checks the body
in one compiled pass. They document the same rules (limits are configurable, so they are
given in the descriptions) and answer errors with the same body as every endpoint.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from apps.core.numbers import finite_or_none
from apps.ingest.models import Feedback, Prediction

_TEXT = "A string of at most 1024 characters (KAIZEN_MAX_STRING_LENGTH), without U+0000."
_TIME = "RFC 3339 with a timezone; at most 5 minutes (KAIZEN_MAX_FUTURE_SECONDS) in the future."
_SCALAR = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"oneOf": _SCALAR},
        "description": "Flat: string → string | number | boolean; at most 50 keys "
        "(KAIZEN_MAX_ATTRIBUTES).",
    }
)
class AttributesField(serializers.DictField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"oneOf": _SCALAR, "nullable": True},
        "description": "Flat: string → number | string | boolean | null; at most 500 keys "
        "(KAIZEN_MAX_FEATURES).",
    }
)
class FeaturesField(serializers.DictField):
    pass


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "Flat: feature name → finite number; keys among the features' keys.",
    }
)
class ExplanationField(serializers.DictField):
    pass


class OutputSerializer(serializers.Serializer[Any]):
    label = serializers.CharField(required=False, help_text=_TEXT)  # type: ignore[assignment]  # a field named like Field.label
    score = serializers.FloatField(required=False)
    value = serializers.FloatField(required=False)


class PredictionInSerializer(serializers.Serializer[Any]):
    """One prediction; `output` (at least one key) or `error`, not both."""

    id = serializers.UUIDField(help_text="The client's id (any UUID version); idempotency key.")
    model = serializers.CharField(help_text="A registered model.")
    model_version = serializers.CharField(help_text="A registered version of that model.")
    occurred_at = serializers.DateTimeField(help_text=_TIME)
    subject = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The randomisation unit (user, session…); required with experiment. " + _TEXT,
    )
    experiment = serializers.CharField(
        required=False, allow_null=True, help_text="With variant: an experiment of the model."
    )
    variant = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="With experiment: one of its variants; model_version must be its version, "
        "and subject is then required.",
    )
    attributes = AttributesField(required=False, allow_null=True)
    features = FeaturesField(required=False, allow_null=True)
    output = OutputSerializer(required=False, allow_null=True)
    error = serializers.CharField(
        required=False, allow_null=True, help_text="The model failed (counted in the error rate)."
    )
    explanation = ExplanationField(required=False, allow_null=True)
    latency_ms = serializers.FloatField(required=False, allow_null=True, min_value=0)


class PredictionBatchSerializer(serializers.Serializer[Any]):
    events = PredictionInSerializer(
        many=True, help_text="1-1000 events (KAIZEN_MAX_BATCH_EVENTS; more → 413); atomic."
    )


class FeedbackInSerializer(serializers.Serializer[Any]):
    """One feedback event: exactly one of `value` or `label`."""

    id = serializers.UUIDField(help_text="The client's id (any UUID version); idempotency key.")
    prediction_id = serializers.UUIDField(help_text="The prediction; it may arrive later.")
    metric = serializers.CharField(help_text="A name: click, conversion, revenue, label…")
    occurred_at = serializers.DateTimeField(help_text=_TIME)
    value = serializers.FloatField(required=False, allow_null=True)
    label = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.label
        required=False, allow_null=True, help_text="The true label (accuracy, precision…)."
    )


class FeedbackBatchSerializer(serializers.Serializer[Any]):
    events = FeedbackInSerializer(
        many=True, help_text="1-1000 events (KAIZEN_MAX_BATCH_EVENTS; more → 413); atomic."
    )


PredictionPostSerializer = PolymorphicProxySerializer(
    component_name="PredictionPost",
    serializers=[PredictionInSerializer, PredictionBatchSerializer],
    resource_type_field_name=None,
)
FeedbackPostSerializer = PolymorphicProxySerializer(
    component_name="FeedbackPost",
    serializers=[FeedbackInSerializer, FeedbackBatchSerializer],
    resource_type_field_name=None,
)


class IngestResultSerializer(serializers.Serializer[Any]):
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(help_text="Events already stored with equal content.")


class PredictionSerializer(PredictionInSerializer):
    """A stored prediction (absent optional fields are null)."""

    received_at = serializers.DateTimeField()


class FeedbackSerializer(FeedbackInSerializer):
    received_at = serializers.DateTimeField()


def prediction_as_dict(prediction: Prediction) -> dict[str, Any]:
    """A stored prediction as GET /api/v1/predictions/{id} and the event feed show it."""
    output: dict[str, Any] | None = None
    if prediction.error is None:
        output = {}
        if prediction.output_label is not None:
            output["label"] = prediction.output_label
        if prediction.output_score is not None:
            output["score"] = finite_or_none(prediction.output_score)
        if prediction.output_value is not None:
            output["value"] = finite_or_none(prediction.output_value)
    version = prediction.model_version
    return {
        "id": str(prediction.id),
        "model": version.model.name,
        "model_version": version.version,
        "occurred_at": prediction.occurred_at.isoformat(),
        "subject": prediction.subject,
        "experiment": prediction.experiment,
        "variant": prediction.variant,
        "attributes": prediction.attributes,
        "features": prediction.features,
        "output": output,
        "error": prediction.error,
        "explanation": prediction.explanation,
        "latency_ms": finite_or_none(prediction.latency_ms),
        "received_at": prediction.received_at.isoformat(),
    }


def feedback_as_dict(feedback: Feedback) -> dict[str, Any]:
    """A stored feedback event as GET /api/v1/feedback/{id} and the event feed show it."""
    return {
        "id": str(feedback.id),
        "prediction_id": str(feedback.prediction_id),
        "metric": feedback.metric,
        "occurred_at": feedback.occurred_at.isoformat(),
        "value": finite_or_none(feedback.value),
        "label": feedback.label,
        "received_at": feedback.received_at.isoformat(),
    }

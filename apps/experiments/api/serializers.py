"""JSON shapes of experiments, their events and assignments (API.md "Experiments")."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.bounds import SHARE, VALUE
from apps.experiments.models import Exposure, RolloutEvent
from apps.experiments.validation import ALPHA, MDE


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def exposure_as_dict(exposure: Exposure) -> dict[str, Any]:
    return {
        "id": str(exposure.id),
        "experiment": exposure.experiment.key,
        "subject": exposure.subject,
        "variant": exposure.variant,
        "model_version": exposure.model_version,
        "attributes": exposure.attributes,
        "source": exposure.source,
        "hash_version": exposure.hash_version,
        "prediction_id": str(exposure.prediction_id) if exposure.prediction_id else None,
        "occurred_at": _time(exposure.occurred_at),
        "received_at": _time(exposure.received_at),
    }


def rollout_event_as_dict(event: RolloutEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "experiment": event.experiment.key,
        "actor": event.actor,
        "diff": event.diff,
        "state": event.state,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
    }


def history_entry_as_dict(event: RolloutEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "actor": event.actor,
        "diff": event.diff,
        "occurred_at": _time(event.occurred_at),
    }


# --- shapes for the OpenAPI schema (the views validate with validation.parse_payload) ---------


class ExperimentVariantSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(max_length=100)
    model_version = serializers.CharField(max_length=100)
    weight = SHARE.serializer_field("The share of subjects; weights sum to 1.")


class ExperimentMetricSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=["binomial", "mean"])


class RampStepSerializer(serializers.Serializer[Any]):
    coverage = SHARE.serializer_field("The coverage from this step on.")
    after = serializers.CharField(
        required=False,
        help_text="Time after the first start: <n>m, <n>h or <n>d, from 0m to 365d; default 0.",
    )


class RampStepStateSerializer(RampStepSerializer):
    applied_at = serializers.DateTimeField(allow_null=True)


class ExperimentInputSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(max_length=100, help_text="Never changes.")
    model = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    hypothesis = serializers.CharField(required=False, allow_blank=True)
    owner = serializers.CharField(required=False, allow_blank=True)
    variants = ExperimentVariantSerializer(many=True, help_text="At least two; weights sum to 1.")
    control = serializers.CharField(help_text="The key of the control variant.")
    metrics = ExperimentMetricSerializer(many=True, required=False)
    primary_metric = serializers.CharField(required=False, allow_null=True)
    guardrail_metrics = serializers.ListField(child=serializers.CharField(), required=False)
    breakdown_attributes = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Among the model's segments."
    )
    targeting = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="attribute → allowed values (strings, booleans, or numbers "
        f"{VALUE.text}); a subject must match every attribute.",
    )
    coverage = SHARE.serializer_field(
        "The share of subjects included.", required=False, default=1.0
    )
    ramp = RampStepSerializer(many=True, required=False)
    alpha = ALPHA.serializer_field("The significance level.", required=False, default=0.05)
    mde = MDE.serializer_field("The relative lift to detect.", required=False, default=0.05)


class ExperimentPatchSerializer(ExperimentInputSerializer):
    """Any field of the POST body but `key`: while draft anything, once started coverage up."""

    key = None  # type: ignore[assignment]  # DRF removes a field declared None on a subclass
    model = serializers.CharField(required=False)
    variants = ExperimentVariantSerializer(many=True, required=False)
    control = serializers.CharField(required=False)


class ExperimentHistoryEntrySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    type = serializers.CharField()
    actor = serializers.CharField()
    diff = serializers.DictField(help_text='field → {"from", "to"}')
    occurred_at = serializers.DateTimeField()


class ExperimentStateSerializer(ExperimentInputSerializer):
    """An experiment as lists show it (and as every rollout event's `state` records it)."""

    status = serializers.ChoiceField(choices=["draft", "running", "paused", "stopped"])
    ramp = RampStepStateSerializer(many=True)
    salt = serializers.CharField()
    hash_version = serializers.IntegerField()
    shipped_variant = serializers.CharField(allow_null=True)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)


class ExperimentSerializer(ExperimentStateSerializer):
    """One experiment with its change history, oldest first."""

    history = ExperimentHistoryEntrySerializer(many=True)


class ExperimentPageSerializer(serializers.Serializer[Any]):
    results = ExperimentStateSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class ShipSerializer(serializers.Serializer[Any]):
    variant = serializers.CharField(help_text="The variant whose version goes to production.")


class AssignmentInputSerializer(serializers.Serializer[Any]):
    experiment = serializers.CharField()
    subject = serializers.CharField(max_length=1024)
    attributes = serializers.DictField(
        required=False,
        help_text=f"A flat object of string → string | number | boolean; a number {VALUE.text}.",
    )


class AssignmentSerializer(serializers.Serializer[Any]):
    experiment = serializers.CharField()
    subject = serializers.CharField()
    variant = serializers.CharField(allow_null=True)
    model_version = serializers.CharField(allow_null=True)
    in_experiment = serializers.BooleanField()

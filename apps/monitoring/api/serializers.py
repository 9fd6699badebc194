"""Shapes of the monitoring API for the OpenAPI schema.

The views check bodies with apps.monitoring.validation (the rules the admin shares) and
answer the dicts of apps.monitoring.selectors; these serializers only describe them.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.bounds import VALUE
from apps.monitoring.models import Action, Comparator, JobStatus
from apps.monitoring.validation import MIN_SAMPLES

# --- rules ------------------------------------------------------------------------------------


class RuleInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    model = serializers.CharField(max_length=100, help_text="A registered model.")
    metric = serializers.CharField(
        help_text="accuracy, precision, recall, f1, mae, rmse, error_rate, latency_p50/p95/p99…"
    )
    segment = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        allow_null=True,
        help_text='One of the model\'s segment_attributes and a value, e.g. {"country": "DE"}; '
        f"a number as the value {VALUE.text}.",
    )
    window = serializers.CharField(
        required=False, help_text="<n>h|d: whole hours, from 1h to 30d. Default 1h."
    )
    comparator = serializers.ChoiceField(choices=Comparator.choices)
    threshold = VALUE.serializer_field("Compared with the metric.")
    min_samples = MIN_SAMPLES.serializer_field(
        "Labeled predictions for label metrics, predictions otherwise. Default 100.",
        required=False,
    )
    cooldown = serializers.CharField(
        required=False, help_text="<n>m|h|d, from 1m to 365d. Default 1h."
    )
    action = serializers.ChoiceField(choices=Action.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    webhook_url = serializers.URLField(
        required=False, allow_null=True, help_text="Alerts are POSTed here, signed (HMAC-SHA256)."
    )
    open_canary = serializers.BooleanField(
        required=False, help_text="With action retrain: open a canary of the retrained version."
    )


class RulePatchSerializer(RuleInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    model = serializers.CharField(required=False, help_text="Immutable: only the stored model.")
    metric = serializers.CharField(required=False)
    comparator = serializers.ChoiceField(choices=Comparator.choices, required=False)
    threshold = VALUE.serializer_field("Compared with the metric.", required=False)
    rotate_webhook_secret = serializers.BooleanField(
        required=False, help_text="Make a new signing secret (answered once)."
    )


class RuleHistorySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    type = serializers.CharField()
    actor = serializers.CharField()
    diff = serializers.DictField()
    occurred_at = serializers.DateTimeField()


class RuleSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    model = serializers.CharField()
    metric = serializers.CharField()
    segment = serializers.DictField(child=serializers.CharField(), allow_null=True)
    window = serializers.CharField()
    comparator = serializers.ChoiceField(choices=Comparator.choices)
    threshold = serializers.FloatField()
    min_samples = serializers.IntegerField()
    cooldown = serializers.CharField()
    action = serializers.ChoiceField(choices=Action.choices)
    enabled = serializers.BooleanField()
    webhook_url = serializers.CharField(allow_null=True)
    webhook_secret_set = serializers.BooleanField()
    open_canary = serializers.BooleanField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_by = serializers.CharField()
    updated_at = serializers.DateTimeField()


class RuleDetailSerializer(RuleSerializer):
    webhook_secret = serializers.CharField(
        required=False,
        help_text="Only in the answer that made it (create, first URL, rotation): keep it.",
    )
    history = RuleHistorySerializer(many=True)


class RulePageSerializer(serializers.Serializer[Any]):
    results = RuleSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


# --- alerts -----------------------------------------------------------------------------------


class AlertSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    rule = serializers.IntegerField()
    rule_name = serializers.CharField()
    model = serializers.CharField()
    metric = serializers.CharField()
    comparator = serializers.ChoiceField(choices=Comparator.choices)
    threshold = serializers.FloatField()
    observed_value = serializers.FloatField(allow_null=True)
    sample_size = serializers.IntegerField()
    window = serializers.CharField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    segment = serializers.DictField(child=serializers.CharField(), allow_null=True)
    action = serializers.ChoiceField(choices=Action.choices)
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    retraining_job = serializers.UUIDField(allow_null=True)
    acknowledged = serializers.BooleanField()
    acknowledged_by = serializers.CharField(allow_null=True)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    acknowledgement_note = serializers.CharField(allow_null=True)


class AlertPageSerializer(serializers.Serializer[Any]):
    results = AlertSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class AcknowledgeSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, max_length=1024)


# --- retraining jobs ---------------------------------------------------------------------------


class JobHistorySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    type = serializers.CharField()
    actor = serializers.CharField()
    error = serializers.CharField(allow_null=True)
    occurred_at = serializers.DateTimeField()


class JobSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    model = serializers.CharField()
    rule = serializers.IntegerField()
    rule_name = serializers.CharField()
    alert = serializers.UUIDField(allow_null=True)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    metric = serializers.CharField()
    comparator = serializers.ChoiceField(choices=Comparator.choices)
    threshold = serializers.FloatField()
    observed_value = serializers.FloatField(allow_null=True)
    sample_size = serializers.IntegerField()
    window = serializers.CharField()
    segment = serializers.DictField(child=serializers.CharField(), allow_null=True)
    open_canary = serializers.BooleanField()
    attempts = serializers.IntegerField()
    claimed_by = serializers.CharField(allow_null=True)
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    not_before = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    result_version = serializers.CharField(allow_null=True)
    canary_experiment = serializers.CharField(allow_null=True)
    canary_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    blocks_until = serializers.DateTimeField(
        help_text="The rule opens no other job before this (created_at + cooldown)."
    )
    updated_at = serializers.DateTimeField()


class JobDetailSerializer(JobSerializer):
    history = JobHistorySerializer(many=True)


class JobPageSerializer(serializers.Serializer[Any]):
    results = JobSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class JobCompleteSerializer(serializers.Serializer[Any]):
    """The new version, as POST /api/v1/models/{name}/versions takes it."""

    version = serializers.CharField(max_length=100)
    hyperparameters = serializers.DictField(required=False)
    metrics = serializers.DictField(child=VALUE.serializer_field(), required=False)
    features = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text=f"{{name, importance?}}; an importance {VALUE.text}.",
    )
    dataset_versions = serializers.ListField(child=serializers.DictField(), required=False)
    artifact_uri = serializers.CharField(required=False, allow_null=True)
    artifact_sha256 = serializers.CharField(required=False, allow_null=True)
    code_version = serializers.CharField(required=False, allow_null=True)
    tags = serializers.DictField(required=False)


class JobFailSerializer(serializers.Serializer[Any]):
    error = serializers.CharField(max_length=10_000)
    retry = serializers.BooleanField(
        required=False,
        help_text="Back to the queue when attempts are left (default false: failed for good).",
    )

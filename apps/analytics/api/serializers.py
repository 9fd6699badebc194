"""Response shapes of the analytics endpoints, for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class VariantResultSerializer(serializers.Serializer[Any]):
    variant = serializers.CharField()
    units = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    variance = serializers.FloatField(allow_null=True)
    absolute_difference = serializers.FloatField(allow_null=True, required=False)
    absolute_ci = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, required=False
    )
    relative_lift = serializers.FloatField(allow_null=True, required=False)
    relative_ci = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, required=False
    )
    relative_p_value = serializers.FloatField(allow_null=True, required=False)
    p_value = serializers.FloatField(allow_null=True, required=False)
    p_value_adjusted = serializers.FloatField(allow_null=True, required=False)
    significant = serializers.BooleanField(required=False)
    power = serializers.FloatField(allow_null=True, required=False)
    mde = serializers.FloatField(allow_null=True, required=False)
    warning = serializers.CharField(allow_null=True, required=False)


class MetricResultSerializer(serializers.Serializer[Any]):
    metric = serializers.CharField()
    type = serializers.ChoiceField(choices=["binomial", "mean"])
    variants = VariantResultSerializer(many=True)


class SrmSerializer(serializers.Serializer[Any]):
    p_value = serializers.FloatField(allow_null=True)
    mismatch = serializers.BooleanField()
    units = serializers.DictField(child=serializers.IntegerField())


class SegmentValueSerializer(serializers.Serializer[Any]):
    value = serializers.CharField(allow_null=True)
    srm = SrmSerializer()
    metrics = MetricResultSerializer(many=True)


class ResultsSerializer(serializers.Serializer[Any]):
    experiment = serializers.CharField()
    status = serializers.CharField()
    computed_at = serializers.DateTimeField(allow_null=True)
    multiple_exposures = serializers.IntegerField()
    excluded_events = serializers.IntegerField(
        help_text="Feedback events on the experiment's predictions left out of every figure "
        "because their value is out of API.md's bounds (stored before the bounds were "
        "enforced, or written around the API)."
    )
    warning = serializers.CharField(
        allow_null=True,
        help_text="Set when these figures are not up to date because folding this "
        "experiment failed: when, why, and when it is retried.",
    )
    srm = SrmSerializer(required=False)
    metrics = MetricResultSerializer(many=True, required=False)
    segment = serializers.CharField(required=False)
    values = SegmentValueSerializer(many=True, required=False)


class ProjectionRunSerializer(serializers.Serializer[Any]):
    folded = serializers.IntegerField(help_text="Events this run folded.")
    status = serializers.ChoiceField(
        choices=["up_to_date", "behind", "skipped", "busy", "failing"],
        help_text="up_to_date: every event below the horizon is folded; failing: its folds "
        "fail (error, retry_at); the others appear only in scheduled runs or past the bound.",
    )
    error = serializers.CharField(required=False)
    retry_at = serializers.DateTimeField(required=False)


class AggregationRunSerializer(serializers.Serializer[Any]):
    projections = serializers.DictField(child=ProjectionRunSerializer())
    rules = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rules judged once after the folds, counted by outcome (evaluated, alerted, "
        "jobs, quiet, insufficient, cooling_down, errors, backing_off).",
    )


class PerformanceRowSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    version = serializers.CharField()
    segment = serializers.DictField(child=serializers.CharField(allow_null=True), allow_null=True)
    count = serializers.IntegerField()
    labeled = serializers.IntegerField()
    # The metaclass pops declared fields, so Serializer.errors stays intact at runtime.
    errors = serializers.IntegerField()  # type: ignore[assignment]  # API.md's field name
    error_rate = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True)
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    mae = serializers.FloatField(allow_null=True)
    rmse = serializers.FloatField(allow_null=True)
    latency_p50 = serializers.FloatField(allow_null=True)
    latency_p95 = serializers.FloatField(allow_null=True)
    latency_p99 = serializers.FloatField(allow_null=True)
    excluded_events = serializers.IntegerField(
        help_text="Predictions of this row left out of every figure for a number out of "
        "API.md's bounds."
    )


class PerformanceSerializer(serializers.Serializer[Any]):
    model = serializers.CharField()
    bucket = serializers.ChoiceField(choices=["hour", "day"])
    warning = serializers.CharField(
        allow_null=True,
        help_text="Set when these figures are not up to date because folding this model "
        "failed: when, why, and when it is retried.",
    )
    results = PerformanceRowSerializer(many=True)

"""Projections: aggregate tables derived from the event log, and their watermarks.

Everything here can be thrown away and rebuilt from the log (DESIGN.md principle 2);
`manage.py rebuild_projections` does exactly that.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import MD5


class NumericField(models.DecimalField):  # type: ignore[type-arg]  # stubs make it generic
    """Unconstrained PostgreSQL `numeric`: exact sums, so a rebuild equals the increments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 1000)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "numeric"


class ProjectionState(models.Model):
    """How far a projection has folded the log: (xid, seq) of the last event it included.

    Written in the same transaction as the projection's aggregates, so a crashed run
    leaves both as they were and the next run redoes the slice (exactly-once effect).
    """

    name = models.CharField(max_length=64, primary_key=True)
    xid = models.BigIntegerField(default=0)
    seq = models.BigIntegerField(default=0)
    events_folded = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ ({self.xid}, {self.seq})"


class SubjectMetricValue(models.Model):
    """Per experiment × metric × subject: the sum of the numeric feedback on the subject's
    predictions tagged with the experiment (API.md "Results"), updated by deltas."""

    experiment_key = models.CharField(max_length=1024)
    metric = models.CharField(max_length=1024)
    subject = models.CharField(max_length=1024)
    value = NumericField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment_key", "metric", "subject"], name="subjectmetricvalue_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.experiment_key}/{self.metric}/{self.subject} = {self.value}"


class VariantMetricStats(models.Model):
    """Sufficient statistics per experiment × metric × variant (× breakdown value).

    `attribute` is '' for the whole experiment; `attribute_value` NULL there, and for units
    whose exposure lacked the attribute. `units`, `total` (Σx) and `total_squares` (Σx²)
    are exact (integer and unconstrained `numeric`), so they change by deltas and a rebuild
    gives the same numbers. `mean` and `variance` are derived from them in exact arithmetic,
    rounded once to float8: with no rounding before the last step there is no cancellation
    (the hazard of Σx² − nμ² in floating point).
    """

    experiment_key = models.CharField(max_length=1024)
    metric = models.CharField(max_length=1024)
    attribute = models.CharField(max_length=100, blank=True)
    attribute_value = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL = absent
    variant = models.CharField(max_length=100)
    units = models.BigIntegerField()
    total = NumericField(default=0)
    total_squares = NumericField(default=0)
    mean = models.FloatField(null=True)
    variance = models.FloatField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment_key", "metric", "attribute", "attribute_value", "variant"],
                name="variantmetricstats_unique",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.experiment_key}/{self.metric}/{self.variant}: {self.units} units"


class ExperimentSummary(models.Model):
    """Units per variant (single-variant subjects) and subjects exposed to several variants."""

    experiment_key = models.CharField(max_length=1024, primary_key=True)
    units = models.JSONField(default=dict)
    multiple_exposures = models.BigIntegerField(default=0)
    # The metrics (key, type) and breakdown attributes the statistics were computed for:
    # when the experiment's differ, the next fold recomputes its statistics from scratch.
    configuration = models.TextField(blank=True, default="")
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.experiment_key}: {self.units}"


# --- model performance (API.md "Performance"; projection in projections/performance.py) ---


class SegmentKind(models.TextChoices):
    ALL = "all"  # every prediction of the model
    VALUE = "value"  # one of the first TOP_VALUES values of the attribute, in log order
    ABSENT = "absent"  # the prediction lacks the attribute
    OTHER = "other"  # every later value, and the literal value "other"


class PerformanceSegment(models.Model):
    """A segment of one model that performance is broken down by: "all", or one attribute
    value (`kind` tells a value from the absent and overflow cells; `value` is '' then).

    Rows are ids for the cells; which values get their own row is decided in log order, so
    a rebuild admits the same ones (projections/performance.py).
    """

    model_id = models.BigIntegerField()
    attribute = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=8, choices=SegmentKind.choices)
    value = models.TextField(blank=True)

    class Meta:
        constraints = [
            # md5: attribute values may be longer than a btree entry holds.
            models.UniqueConstraint(
                "model_id", "attribute", "kind", MD5("value"), name="performancesegment_unique"
            )
        ]

    def __str__(self) -> str:
        return f"model {self.model_id}: {self.attribute or 'all'} {self.kind} {self.value}"


class PredictionOutcome(models.Model):
    """Per folded prediction: its cells and the outcome it contributed, so a later label
    retracts exactly what the earlier one added.

    `labeled`: the prediction has both a predicted outcome and a truth. Binary tasks keep
    the positive-label comparison, multiclass the two labels, regression the error
    (prediction − truth, exact `numeric`).
    """

    prediction_id = models.UUIDField(primary_key=True)
    model_id = models.BigIntegerField()
    model_version_id = models.BigIntegerField()
    bucket = models.DateTimeField()
    segments = ArrayField(models.BigIntegerField())
    labeled = models.BooleanField()
    predicted_positive = models.BooleanField(null=True)
    actual_positive = models.BooleanField(null=True)
    predicted = models.TextField(null=True)  # noqa: DJ001 - NULL = not a multiclass outcome
    actual = models.TextField(null=True)  # noqa: DJ001 - NULL = no truth (yet)
    error = NumericField(null=True)

    class Meta:
        indexes = [models.Index(fields=["model_id"], name="predictionoutcome_model")]

    def __str__(self) -> str:
        return f"outcome of {self.prediction_id}"


class PerformanceCell(models.Model):
    """Per model version × hour (UTC) × segment: counts and exact outcome sums."""

    model_version_id = models.BigIntegerField()
    segment_id = models.BigIntegerField()
    bucket = models.DateTimeField()
    predictions = models.BigIntegerField()
    errors = models.BigIntegerField()
    labeled = models.BigIntegerField()
    true_positives = models.BigIntegerField()
    false_positives = models.BigIntegerField()
    false_negatives = models.BigIntegerField()
    true_negatives = models.BigIntegerField()
    error_sum = NumericField()
    absolute_error_sum = NumericField()
    squared_error_sum = NumericField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version_id", "segment_id", "bucket"],
                name="performancecell_unique",
            )
        ]

    def __str__(self) -> str:
        return f"version {self.model_version_id} segment {self.segment_id} @ {self.bucket}"


class LatencyCell(models.Model):
    """The latency sketch of a performance cell: predictions per log-spaced bin."""

    model_version_id = models.BigIntegerField()
    segment_id = models.BigIntegerField()
    bucket = models.DateTimeField()
    bin = models.IntegerField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version_id", "segment_id", "bucket", "bin"],
                name="latencycell_unique",
            )
        ]

    def __str__(self) -> str:
        return f"version {self.model_version_id} segment {self.segment_id} bin {self.bin}"


class ConfusionCell(models.Model):
    """Multiclass confusion counts of a performance cell: labeled predictions per
    (predicted, actual) pair. Rows whose count returns to 0 are deleted."""

    model_version_id = models.BigIntegerField()
    segment_id = models.BigIntegerField()
    bucket = models.DateTimeField()
    predicted = models.TextField()
    actual = models.TextField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "model_version_id",
                "segment_id",
                "bucket",
                MD5("predicted"),
                MD5("actual"),
                name="confusioncell_unique",
            )
        ]
        indexes = [
            models.Index(fields=["id"], condition=models.Q(count=0), name="confusioncell_emptied")
        ]

    def __str__(self) -> str:
        return f"version {self.model_version_id}: {self.predicted} as {self.actual}"

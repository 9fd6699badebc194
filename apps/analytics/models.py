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
    `version` is the projection's code version the aggregates were built with: a
    projection whose code folds differently declares a new version, and its aggregates
    are thrown away and rebuilt from the log. `excluded_events` counts the events folded
    past without effect because a number they carry is out of API.md's bounds.
    """

    name = models.CharField(max_length=64, primary_key=True)
    xid = models.BigIntegerField(default=0)
    seq = models.BigIntegerField(default=0)
    events_folded = models.BigIntegerField(default=0)
    excluded_events = models.BigIntegerField(db_default=0)
    version = models.IntegerField(db_default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ ({self.xid}, {self.seq})"


class ProjectionHealth(models.Model):
    """How a projection's folds are going: window size, timings, skips and failures.

    Kept apart from ProjectionState, whose row a fold holds locked for its whole
    transaction: a trigger that finds the projection busy records its skip here at once,
    and a failed fold records its error after its transaction rolled back.
    """

    name = models.CharField(max_length=64, primary_key=True)
    # Events the next window may hold, sized from the folds' measured rate.
    chunk = models.BigIntegerField()
    # After a window timed out, windows stay at most this large until enough folds have
    # gone through (a rate measured on small windows may not hold for large ones).
    chunk_ceiling = models.BigIntegerField(null=True, blank=True)
    folds_under_ceiling = models.IntegerField(default=0)
    last_fold_seconds = models.FloatField(null=True, blank=True)
    last_fold_events = models.BigIntegerField(default=0)
    last_fold_at = models.DateTimeField(null=True, blank=True)
    skipped_triggers = models.BigIntegerField(default=0)
    timeouts = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    consecutive_failures = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    failed_window = models.CharField(max_length=200, blank=True, default="")
    # A failing projection is not folded again before this time (exponential backoff).
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "projection health"

    def __str__(self) -> str:
        return f"{self.name}: {'failing' if self.consecutive_failures else 'ok'}"


class UnitFailure(models.Model):
    """One unit of a projection (an experiment, a model) whose fold failed.

    The unit's aggregates stay as they were before the failing window and the unit is
    left out of later windows; once `retry_at` has passed, a fold recomputes it from the
    log up to that fold's window. Written in the fold's own transaction, with the
    watermark, so a failure and the window that skipped the unit commit together; the
    row is deleted when the unit is recomputed.
    """

    projection = models.CharField(max_length=64)
    # The unit's key for the projection (an experiment key, a model id), and for people.
    unit = models.CharField(max_length=1100)
    label = models.CharField(max_length=1200)
    error = models.TextField()
    attempts = models.IntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    retry_at = models.DateTimeField()
    failed_window = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["projection", "unit"], name="unitfailure_unique")
        ]

    def __str__(self) -> str:
        return f"{self.projection}/{self.unit}: {self.error[:60]}"


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
    # Feedback on the experiment's tagged predictions left out for an out-of-bounds value.
    excluded_events = models.BigIntegerField(db_default=0)
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
    # Predictions of the cell left out for a number out of API.md's bounds (not counted in
    # `predictions` nor in any other figure).
    excluded = models.BigIntegerField(db_default=0)
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

"""Projections: aggregate tables derived from the event log, and their watermarks.

Everything here can be thrown away and rebuilt from the log (DESIGN.md principle 2);
`manage.py rebuild_projections` does exactly that.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper


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
    whose first exposure lacked the attribute. `variance` is PostgreSQL's var_samp, a stable
    (Youngs–Cramer) accumulator over the per-subject table: never Σx² − nμ².
    """

    experiment_key = models.CharField(max_length=1024)
    metric = models.CharField(max_length=1024)
    attribute = models.CharField(max_length=100, blank=True)
    attribute_value = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL = absent
    variant = models.CharField(max_length=100)
    units = models.BigIntegerField()
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
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.experiment_key}: {self.units}"

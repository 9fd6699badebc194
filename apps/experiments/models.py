"""Experiments, their variants, targeting, metrics and ramp, and the experiment events.

An experiment is a current-state row that people edit (in the admin or the API); every change
also appends a RolloutEvent carrying the actor, the diff and the full state after it, so any
past state can be rebuilt. Exposures are immutable events: the first time a subject met a
variant, from an assignment or from a prediction tagged with the experiment.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Now

from apps.events.models import ChangeEvent, Event

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
key_validator = RegexValidator(
    KEY_PATTERN, "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
)

# The admin's form validation speaks with the words of validation.py (the API's).
COVERAGE_MESSAGE = "Coverage is a share of subjects, between 0 and 1."
WEIGHT_MESSAGE = "A weight is between 0 and 1."
ALPHA_MESSAGE = "alpha is a significance level, strictly between 0 and 1."
MDE_MESSAGE = "mde is a relative lift greater than 0 (0.05 for 5%)."
coverage_validators = [
    MinValueValidator(0.0, COVERAGE_MESSAGE),
    MaxValueValidator(1.0, COVERAGE_MESSAGE),
]


class Status(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class MetricType(models.TextChoices):
    BINOMIAL = "binomial"
    MEAN = "mean"


class MetricRole(models.TextChoices):
    PRIMARY = "primary"
    GUARDRAIL = "guardrail"
    SECONDARY = "secondary"


class Experiment(models.Model):
    key = models.CharField(
        max_length=100,
        unique=True,
        validators=[key_validator],
        error_messages={
            "unique": "An experiment with this key already exists; keys are never reused."
        },
    )
    model = models.ForeignKey(
        "registry.MLModel", on_delete=models.PROTECT, related_name="experiments"
    )
    description = models.TextField(blank=True)
    hypothesis = models.TextField(blank=True)
    owner = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The key of the control variant (one of this experiment's variants).
    control = models.CharField(max_length=100)
    # Significance level of the results (the check constraint below says 0 < alpha < 1).
    alpha = models.FloatField(default=0.05)
    # Relative lift the test should detect (power analysis of the results).
    mde = models.FloatField(default=0.05)
    breakdown_attributes = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    coverage = models.FloatField(default=1.0, validators=coverage_validators)
    # Random, fixed at creation: bucketing hashes "<salt>.<subject>" (API.md hash version 1).
    salt = models.CharField(max_length=64, editable=False)
    shipped_variant = models.CharField(max_length=100, blank=True, editable=False)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)
    # The first start: ramp steps are due at started_at + after.
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(coverage__gte=0, coverage__lte=1),
                name="experiment_coverage_in_unit_interval",
                violation_error_message=COVERAGE_MESSAGE,
            ),
            models.CheckConstraint(
                condition=models.Q(alpha__gt=0, alpha__lt=1),
                name="experiment_alpha_in_range",
                violation_error_message=ALPHA_MESSAGE,
            ),
            models.CheckConstraint(
                condition=models.Q(mde__gt=0),
                name="experiment_mde_positive",
                violation_error_message=MDE_MESSAGE,
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[status.value for status in Status]),
                name="experiment_status_known",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="experiment_status")]

    def __str__(self) -> str:
        return self.key


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.CharField(max_length=100, validators=[key_validator])
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="variants"
    )
    weight = models.FloatField(
        validators=[MinValueValidator(0.0, WEIGHT_MESSAGE), MaxValueValidator(1.0, WEIGHT_MESSAGE)]
    )
    # Bucketing walks the variants in this order (API.md: "in the configured order").
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="variant_unique_key"),
            models.CheckConstraint(
                condition=models.Q(weight__gte=0, weight__lte=1),
                name="variant_weight_in_range",
                violation_error_message=WEIGHT_MESSAGE,
            ),
        ]

    def __str__(self) -> str:
        return self.key


class TargetingRule(models.Model):
    """One attribute and the values it may take; a subject must match every rule."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="targeting")
    attribute = models.CharField(max_length=100)
    values = ArrayField(models.CharField(max_length=1024))

    class Meta:
        ordering = ("attribute",)
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "attribute"], name="targeting_unique_attribute"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.attribute} in {', '.join(self.values)}"


class ExperimentMetric(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="metrics")
    key = models.CharField(max_length=100, validators=[key_validator])
    type = models.CharField(max_length=16, choices=MetricType.choices)
    role = models.CharField(max_length=16, choices=MetricRole.choices, default=MetricRole.SECONDARY)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")
        verbose_name = "metric"
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="metric_unique_key"),
            models.UniqueConstraint(
                fields=["experiment"],
                condition=models.Q(role="primary"),
                name="metric_one_primary",
                violation_error_message="Only one metric can be the primary metric.",
            ),
        ]

    def __str__(self) -> str:
        return self.key


class RampStep(models.Model):
    """Coverage to reach `after` the experiment's first start; beat applies due steps."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="ramp")
    position = models.PositiveSmallIntegerField(default=0)
    coverage = models.FloatField(validators=coverage_validators)
    after = models.DurationField()
    applied_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("position", "id")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(coverage__gte=0, coverage__lte=1),
                name="rampstep_coverage_in_unit_interval",
                violation_error_message=COVERAGE_MESSAGE,
            ),
        ]
        indexes = [
            models.Index(
                fields=["experiment", "position"],
                condition=models.Q(applied_at__isnull=True),
                name="rampstep_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.coverage:.0%} after {self.after}"


class ConfigVersion(models.Model):
    """One row whose number rises with every experiment change, in the change's transaction.

    Each process caches the experiment configuration with the number it was read at and
    compares it with this row (one indexed read), so a committed change is seen by the next
    request in every worker.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="configversion_one")]

    def __str__(self) -> str:
        return f"configuration {self.version}"


class ExposureSource(models.TextChoices):
    ASSIGNMENT = "assignment"
    PREDICTION = "prediction"


class Exposure(Event):
    """A subject met a variant. Kept once per (experiment, subject, variant); a subject's first
    exposure (lowest seq) is the variant assignment returns from then on. A second row for
    another variant (from a tagged prediction) is kept so results can leave that subject out.
    """

    event_type = "exposure"

    # No index of its own: exposure_unique_variant (experiment, subject, variant) serves
    # every lookup by experiment or by (experiment, subject), and each index costs inserts.
    # No foreign key constraint in the database either: checking it locks the experiment's
    # row (FOR KEY SHARE) on every insert, and concurrent inserts of one experiment then
    # share the lock through multixacts, the largest single cost of recording an exposure.
    # Nothing is lost by it: an experiment row is never deleted (its rollout events, immutable
    # rows, hold it by a real foreign key), and exposures are written only for experiments
    # read from the configuration.
    experiment = models.ForeignKey(
        Experiment,
        on_delete=models.PROTECT,
        related_name="exposures",
        db_index=False,
        db_constraint=False,
    )
    subject = models.CharField(max_length=1024)
    variant = models.CharField(max_length=100)
    model_version = models.CharField(max_length=100)
    attributes = models.JSONField(default=dict)
    source = models.CharField(max_length=16, choices=ExposureSource.choices)
    # 1 for an assignment bucketed by API.md's hash version 1; null for a tagged prediction.
    hash_version = models.PositiveSmallIntegerField(null=True, blank=True)
    prediction_id = models.UUIDField(null=True, blank=True)

    class Meta(Event.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "subject", "variant"], name="exposure_unique_variant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.variant}"


class RolloutEventType(models.TextChoices):
    CREATED = "experiment_created"
    UPDATED = "experiment_updated"
    STARTED = "experiment_started"
    PAUSED = "experiment_paused"
    RESUMED = "experiment_resumed"
    STOPPED = "experiment_stopped"
    RAMP_ADVANCED = "experiment_ramp_advanced"
    COVERAGE_RAISED = "experiment_coverage_raised"
    SHIPPED = "experiment_shipped"


class RolloutEvent(ChangeEvent):
    """Every change to an experiment: who, when, what changed and the full state after it."""

    type = models.CharField(max_length=40, choices=RolloutEventType.choices)
    experiment = models.ForeignKey(
        Experiment, on_delete=models.PROTECT, related_name="rollout_events"
    )
    diff = models.JSONField(default=dict)

    class Meta(Event.Meta):
        verbose_name = "rollout event"
        verbose_name_plural = "rollout audit log"
        indexes = [
            *Event.Meta.indexes,
            models.Index(fields=["experiment", "seq"], name="rolloutevent_experiment"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.experiment_id}"

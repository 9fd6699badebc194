"""Models, their immutable versions, aliases, and the registry's events."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Now

from apps.events.models import ChangeEvent, Event

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
name_validator = RegexValidator(
    NAME_PATTERN, "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
)


class Task(models.TextChoices):
    BINARY_CLASSIFICATION = "binary_classification"
    MULTICLASS_CLASSIFICATION = "multiclass_classification"
    REGRESSION = "regression"


class MLModel(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    task = models.CharField(max_length=32, choices=Task.choices)
    description = models.TextField(blank=True)
    positive_label = models.CharField(max_length=1024, blank=True)
    decision_threshold = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    segment_attributes = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = "model"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(decision_threshold__gte=0, decision_threshold__lte=1),
                name="mlmodel_threshold_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=models.Q(name__regex=NAME_PATTERN), name="mlmodel_name_pattern"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """A registered version: immutable (a trigger refuses UPDATE and DELETE)."""

    model = models.ForeignKey(MLModel, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=100, validators=[name_validator])
    hyperparameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    features = models.JSONField(default=list, blank=True)
    dataset_versions = models.JSONField(default=list, blank=True)
    artifact_uri = models.CharField(max_length=1024, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    code_version = models.CharField(max_length=1024, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    # SHA-256 of the canonical JSON of the fields above: equal → idempotent re-post, else 409.
    content_hash = models.CharField(max_length=64, editable=False)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique"),
            models.CheckConstraint(
                condition=models.Q(version__regex=NAME_PATTERN), name="modelversion_version_pattern"
            ),
            models.CheckConstraint(
                condition=models.Q(artifact_sha256="")
                | models.Q(artifact_sha256__regex=SHA256_PATTERN),
                name="modelversion_artifact_sha256_hex",
            ),
        ]
        indexes = [
            # GET /models/{name}/versions pages by (created_at, id) within one model.
            models.Index(fields=["model", "created_at", "id"], name="modelversion_model_created"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.version}"


class Alias(models.Model):
    """The current state of an alias; its every move is an `alias_moved` RegistryEvent."""

    model = models.ForeignKey(MLModel, on_delete=models.PROTECT, related_name="aliases")
    name = models.CharField(max_length=100, validators=[name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    # Where the alias pointed before its last move: what a rollback moves it back to.
    previous_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    updated_at = models.DateTimeField(db_default=Now())
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "aliases"
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="alias_unique_per_model"),
            models.CheckConstraint(
                condition=models.Q(name__regex=NAME_PATTERN), name="alias_name_pattern"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.name}"


class RegistryEventType(models.TextChoices):
    MODEL_REGISTERED = "model_registered"
    MODEL_UPDATED = "model_updated"
    VERSION_REGISTERED = "model_version_registered"
    ALIAS_MOVED = "alias_moved"


class RegistryEvent(ChangeEvent):
    """Every change to the registry, with the actor and the full state after it."""

    type = models.CharField(max_length=40, choices=RegistryEventType.choices)
    model = models.ForeignKey(MLModel, on_delete=models.PROTECT, related_name="events")

    class Meta(Event.Meta):
        indexes = [
            *Event.Meta.indexes,
            models.Index(fields=["model", "type", "seq"], name="registryevent_model_type"),
        ]

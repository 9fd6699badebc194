"""Predictions and feedback: the two event tables applications post to (API.md "Ingestion").

Rows are only ever inserted, through the COPY path in services.py. The fields and columns
are declared once in shapes.py; these models give the migrations, and a test keeps the two
in agreement. `content_hash` is a BLAKE2b digest of the event's canonical content
(validation.py): a re-post of a stored id with an equal hash is a duplicate, with another
hash a conflict. NULL in an optional column means the client did not send that field
(API.md tells "absent" from any value).
"""

from __future__ import annotations

from django.db import models

from apps.events.models import Event


class Prediction(Event):
    """What a model answered for one subject, with its inputs and the experiment it served."""

    event_type = "prediction"

    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="+"
    )
    # NULL = not sent: an empty string is a value a client may send.
    subject = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    experiment = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    variant = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    attributes = models.JSONField(null=True, blank=True)
    features = models.JSONField(null=True, blank=True)
    output_label = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    output_score = models.FloatField(null=True, blank=True)
    output_value = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    explanation = models.JSONField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    actor = models.CharField(max_length=200)
    content_hash = models.BinaryField(max_length=16, editable=False)

    class Meta(Event.Meta):
        constraints = [
            models.CheckConstraint(
                condition=models.Q(output_label__isnull=False)
                | models.Q(output_score__isnull=False)
                | models.Q(output_value__isnull=False)
                | models.Q(error__isnull=False),
                name="prediction_output_or_error",
            ),
            models.CheckConstraint(
                condition=models.Q(experiment__isnull=True, variant__isnull=True)
                | models.Q(experiment__isnull=False, variant__isnull=False, subject__isnull=False),
                name="prediction_experiment_with_variant_and_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"prediction {self.id}"


class Feedback(Event):
    """What happened after a prediction; it may arrive before the prediction (no foreign key)."""

    event_type = "feedback"

    prediction_id = models.UUIDField()
    metric = models.CharField(max_length=1024)
    value = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=1024, null=True, blank=True)  # noqa: DJ001
    actor = models.CharField(max_length=200)
    content_hash = models.BinaryField(max_length=16, editable=False)

    class Meta(Event.Meta):
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(value__isnull=False, label__isnull=True)
                | models.Q(value__isnull=True, label__isnull=False),
                name="feedback_value_or_label",
            ),
        ]
        indexes = [
            *Event.Meta.indexes,
            # The later join of feedback to its prediction (either may arrive first).
            models.Index(fields=["prediction_id"], name="feedback_prediction"),
        ]

    def __str__(self) -> str:
        return f"feedback {self.id}"

"""Admin screens of predictions and feedback: read-only, like every event table."""

from __future__ import annotations

from django.contrib import admin

from apps.events.admin import ReadOnlyEventAdmin
from apps.ingest.models import Feedback, Prediction


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyEventAdmin[Prediction]):
    list_display = ("id", "model_version", "subject", "experiment", "variant", "occurred_at")
    list_select_related = ("model_version__model",)
    search_fields = ("=id", "=subject")


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyEventAdmin[Feedback]):
    list_display = ("id", "prediction_id", "metric", "value", "label", "occurred_at")
    search_fields = ("=id", "=prediction_id")

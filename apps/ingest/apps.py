"""App config of ingestion: registers predictions and feedback in the event feed."""

from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "apps.ingest"
    label = "ingest"

    def ready(self) -> None:
        from apps.events.registry import EventSource, register
        from apps.ingest import selectors
        from apps.ingest.api.serializers import feedback_as_dict, prediction_as_dict
        from apps.ingest.models import Feedback, Prediction

        register(
            EventSource(
                model=Prediction, serialize=prediction_as_dict, queryset=selectors.prediction_rows
            )
        )
        register(
            EventSource(
                model=Feedback, serialize=feedback_as_dict, queryset=selectors.feedback_rows
            )
        )

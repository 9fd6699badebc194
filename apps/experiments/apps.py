"""App config of experiments and rollouts."""

from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "apps.experiments"
    label = "experiments"
    verbose_name = "Experiments and rollouts"

    def ready(self) -> None:
        from apps.events.registry import EventSource, register
        from apps.experiments.api.serializers import exposure_as_dict, rollout_event_as_dict
        from apps.experiments.models import Exposure, RolloutEvent

        register(
            EventSource(
                model=Exposure,
                serialize=exposure_as_dict,
                queryset=lambda: Exposure.objects.select_related("experiment"),
            )
        )
        register(
            EventSource(
                model=RolloutEvent,
                serialize=rollout_event_as_dict,
                queryset=lambda: RolloutEvent.objects.select_related("experiment"),
            )
        )

"""App config of the model registry: registers RegistryEvent with the event feed."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from apps.events.registry import EventSource, register
        from apps.registry import selectors
        from apps.registry.models import RegistryEvent

        register(
            EventSource(
                model=RegistryEvent,
                serialize=selectors.registry_event_serialize,
                queryset=selectors.registry_event_rows,
            )
        )

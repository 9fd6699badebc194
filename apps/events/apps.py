"""App config of the event log."""

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"

    def ready(self) -> None:
        from apps.core.views import register_readiness
        from apps.events import selectors

        register_readiness("worker", selectors.worker_heartbeat)

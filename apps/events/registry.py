"""The registry of event tables: each app registers its event models in AppConfig.ready().

The feed (GET /api/v1/events) and projection catch-up read every registered table in the
log's one order, so a new event type appears in both by registering here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from apps.events.models import Event


@dataclass(frozen=True)
class EventSource:
    model: type[Event]
    # The event as its own GET shows it (API.md: the feed's `event`).
    serialize: Callable[[Any], dict[str, Any]]
    # Joins the serializer needs, so a feed page costs one query per table.
    queryset: Callable[[], QuerySet[Any]] | None = None

    def rows(self) -> QuerySet[Any]:
        if self.queryset is not None:
            return self.queryset()
        return self.model._default_manager.all()


_sources: dict[str, EventSource] = {}


def register(source: EventSource) -> None:
    _sources[source.model._meta.label] = source


def sources() -> list[EventSource]:
    return list(_sources.values())

"""Admin base for event tables: events are shown, never added, changed or deleted."""

from __future__ import annotations

from apps.core.admin import ReadOnlyAdmin
from apps.events.models import Event


class ReadOnlyEventAdmin[E: Event](ReadOnlyAdmin[E]):
    """Every event admin derives from this: view permission only, for everyone."""

    date_hierarchy = "occurred_at"
    ordering = ("-xid", "-seq")

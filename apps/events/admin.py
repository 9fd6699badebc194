"""Admin base for event tables: events are shown, never added, changed or deleted."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.events.models import Event


class ReadOnlyEventAdmin[E: Event](admin.ModelAdmin[E]):
    """Every event admin derives from this: view permission only, for everyone."""

    date_hierarchy = "occurred_at"
    ordering = ("-xid", "-seq")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

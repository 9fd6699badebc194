"""Admin screens of the projections: how far each has folded, how its folds go, what fails.

Read-only: projections are derived data; `manage.py rebuild_projections` rebuilds one, and
a failing unit is recomputed on its own once its backoff has passed.
"""

from __future__ import annotations

from django.contrib import admin

from apps.analytics.models import ProjectionHealth, ProjectionState, UnitFailure
from apps.core.admin import ReadOnlyAdmin


@admin.register(ProjectionState)
class ProjectionStateAdmin(ReadOnlyAdmin[ProjectionState]):
    list_display = (
        "name",
        "xid",
        "seq",
        "events_folded",
        "excluded_events",
        "version",
        "updated_at",
    )


@admin.register(ProjectionHealth)
class ProjectionHealthAdmin(ReadOnlyAdmin[ProjectionHealth]):
    list_display = (
        "name",
        "status",
        "last_fold_events",
        "last_fold_seconds",
        "chunk",
        "skipped_triggers",
        "timeouts",
        "failures",
        "retry_at",
    )

    @admin.display(description="status")
    def status(self, health: ProjectionHealth) -> str:
        if health.consecutive_failures:
            return f"failing ({health.consecutive_failures}×): {health.last_error[:120]}"
        return "ok"


@admin.register(UnitFailure)
class UnitFailureAdmin(ReadOnlyAdmin[UnitFailure]):
    list_display = ("projection", "label", "error", "attempts", "first_failed_at", "retry_at")
    list_filter = ("projection",)
    search_fields = ("label", "error")

"""Admin screens for applications and API keys (the raw key is shown once, on creation)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts import services
from apps.accounts.models import ApiKey, Application


class ApiKeyInline(admin.TabularInline[ApiKey, Application]):
    model = ApiKey
    extra = 0
    fields = ("name", "prefix", "scopes", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin[Application]):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = [ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = (
        "prefix",
        "application",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("application", "revoked_at")
    search_fields = ("prefix", "name", "application__name")
    readonly_fields = ("prefix", "created_at", "created_by", "revoked_at", "last_used_at")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["application", "name", "scopes", "expires_at"]
        return ["application", "name", "scopes", "expires_at", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        return ("application", "name", "scopes", *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.api_key_create(
            application=obj.application.name,
            name=obj.name,
            scopes=obj.scopes,
            expires_at=obj.expires_at,
            actor=f"user:{request.user.get_username()}",
        )
        obj.pk = key.pk
        obj.prefix = key.prefix
        messages.warning(request, f"The new API key, shown only now: {raw}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(key=key)
        self.message_user(request, "Revoked.", messages.SUCCESS)

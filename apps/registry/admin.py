"""Admin screens of the registry; every change goes through the services (actor user:<name>).

Models are registered and edited here (name and task are fixed once registered); versions
can be registered but never changed or deleted; aliases are moved (from the version list)
and rolled back (from the alias list) with admin actions; the model page shows each alias's
history read-only; registry events are read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import ApplicationError
from apps.events.admin import ReadOnlyEventAdmin
from apps.registry import selectors, services
from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from apps.registry.validation import (
    Problems,
    check_name,
    clean_model_fields,
    clean_version_content,
)


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _report(form: forms.BaseForm, problems: Problems) -> None:
    """Put validation details (dotted fields) on the form fields they name."""
    for detail in problems.details:
        path = str(detail.get("field", ""))
        field = path.split(".")[0]
        message = detail["message"] if path == field else f"{path}: {detail['message']}"
        form.add_error(field if field in form.fields else None, message)


# --- models -------------------------------------------------------------------------------


class MLModelForm(forms.ModelForm[MLModel]):
    class Meta:
        model = MLModel
        fields = [
            "name",
            "task",
            "description",
            "positive_label",
            "decision_threshold",
            "segment_attributes",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        problems = Problems()
        if "name" in self.fields:
            check_name(problems, cleaned.get("name", ""), "name")
        clean_model_fields(
            task=cleaned.get("task", self.instance.task),
            description=cleaned.get("description"),
            positive_label=cleaned.get("positive_label"),
            decision_threshold=cleaned.get("decision_threshold"),
            segment_attributes=cleaned.get("segment_attributes"),
            problems=problems,
        )
        _report(self, problems)
        return cleaned


class ModelVersionInline(admin.TabularInline[ModelVersion, MLModel]):
    model = ModelVersion
    extra = 0
    fields = ("version", "metrics", "code_version", "created_by", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AliasInline(admin.TabularInline[Alias, MLModel]):
    model = Alias
    extra = 0
    fields = ("name", "version", "previous_version", "updated_by", "updated_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alias]:
        return super().get_queryset(request).select_related("version", "previous_version")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin[MLModel]):
    form = MLModelForm
    list_display = ("name", "task", "decision_threshold", "created_at", "updated_at")
    list_filter = ("task",)
    search_fields = ("name", "description")
    inlines = [AliasInline, ModelVersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        if obj is None:
            return ()
        return ("name", "task", "created_at", "updated_at", "alias_history")

    def get_fields(self, request: HttpRequest, obj: MLModel | None = None) -> Any:
        editable = ["description", "positive_label", "decision_threshold", "segment_attributes"]
        if obj is None:
            return ["name", "task", *editable]
        return ["name", "task", *editable, "created_at", "updated_at", "alias_history"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: MLModel, form: Any, change: bool) -> None:
        fields: dict[str, Any] = {
            "description": obj.description,
            "positive_label": obj.positive_label,
            "decision_threshold": obj.decision_threshold,
            "segment_attributes": list(obj.segment_attributes),
        }
        if change:
            saved = services.model_update(name=obj.name, actor=_actor(request), **fields)
        else:
            saved, _ = services.model_create(
                name=obj.name, task=obj.task, actor=_actor(request), **fields
            )
        obj.pk = saved.pk
        obj.created_at, obj.updated_at = saved.created_at, saved.updated_at

    @admin.display(description="Alias history (latest moves, newest first)")
    def alias_history(self, obj: MLModel) -> SafeString:
        history = selectors.alias_history(model=obj)
        if not history:
            return format_html("<p>{}</p>", "No alias has been set yet.")
        rows = [
            (
                alias,
                move.at.isoformat(timespec="seconds"),
                move.previous_version or "—",
                move.version,
                "rollback" if move.rollback else "move",
                move.actor,
            )
            for alias, moves in sorted(history.items())
            for move in moves
        ]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            "<table><thead><tr><th>alias</th><th>at</th><th>from</th><th>to</th>"
            "<th>kind</th><th>actor</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )


# --- versions -----------------------------------------------------------------------------


class ModelVersionForm(forms.ModelForm[ModelVersion]):
    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "hyperparameters",
            "metrics",
            "features",
            "dataset_versions",
            "artifact_uri",
            "artifact_sha256",
            "code_version",
            "tags",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        problems = Problems()
        check_name(problems, cleaned.get("version", ""), "version")
        clean_version_content(
            hyperparameters=cleaned.get("hyperparameters"),
            metrics=cleaned.get("metrics"),
            features=cleaned.get("features"),
            dataset_versions=cleaned.get("dataset_versions"),
            artifact_uri=cleaned.get("artifact_uri"),
            artifact_sha256=cleaned.get("artifact_sha256"),
            code_version=cleaned.get("code_version"),
            tags=cleaned.get("tags"),
            problems=problems,
        )
        _report(self, problems)
        # Stored lower-case (the database's check); the service would do the same.
        cleaned["artifact_sha256"] = str(cleaned.get("artifact_sha256") or "").lower()
        return cleaned


class AliasActionForm(helpers.ActionForm):
    alias = forms.CharField(
        required=False,
        initial="production",
        help_text="The alias to point at the selected version.",
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    form = ModelVersionForm
    action_form = AliasActionForm
    actions = ["move_alias"]
    list_display = ("model", "version", "code_version", "created_by", "created_at")
    list_filter = ("model",)
    list_select_related = ("model",)
    search_fields = ("model__name", "version", "code_version")
    ordering = ("-created_at", "-id")

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        if obj is None:
            return ()
        return [field.name for field in self.model._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_alias_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("registry.change_alias")

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        saved, _ = services.model_version_register(
            model=obj.model.name,
            version=obj.version,
            actor=_actor(request),
            hyperparameters=obj.hyperparameters,
            metrics=obj.metrics,
            features=obj.features,
            dataset_versions=obj.dataset_versions,
            artifact_uri=obj.artifact_uri,
            artifact_sha256=obj.artifact_sha256,
            code_version=obj.code_version,
            tags=obj.tags,
        )
        obj.pk = saved.pk
        obj.content_hash = saved.content_hash

    @admin.action(description="Point an alias at the selected version", permissions=["alias"])
    def move_alias(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        versions = list(queryset.select_related("model")[:2])
        if len(versions) != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return
        version = versions[0]
        alias = request.POST.get("alias", "").strip() or "production"
        try:
            services.alias_move(
                model=version.model.name,
                alias=alias,
                version=version.version,
                actor=_actor(request),
            )
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            return
        self.message_user(
            request,
            f"{version.model.name}:{alias} now points at {version.version}.",
            messages.SUCCESS,
        )


# --- aliases ------------------------------------------------------------------------------


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin[Alias]):
    actions = ["roll_back"]
    list_display = ("model", "name", "version", "previous_version", "updated_by", "updated_at")
    list_filter = ("model", "name")
    list_select_related = ("model", "version", "previous_version")
    search_fields = ("model__name", "name")
    ordering = ("model__name", "name")

    def has_alias_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("registry.change_alias")

    @admin.action(description="Roll back the selected aliases", permissions=["alias"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Alias]) -> None:
        for alias in queryset.select_related("model"):
            try:
                moved = services.alias_rollback(
                    model=alias.model.name, alias=alias.name, actor=_actor(request)
                )
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
                continue
            self.message_user(
                request,
                f"{alias.model.name}:{alias.name} rolled back to {moved.version.version}.",
                messages.SUCCESS,
            )


@admin.register(RegistryEvent)
class RegistryEventAdmin(ReadOnlyEventAdmin[RegistryEvent]):
    list_display = ("occurred_at", "type", "model", "actor")
    list_filter = ("type",)
    list_select_related = ("model",)
    search_fields = ("model__name", "actor")

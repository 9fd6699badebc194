"""The product team's screens: experiments, their rollout, and the audit log.

Every change goes through the services (actor "user:<username>"), so the admin and the API
obey the same rules and append the same events. The experiment page edits the definition
with inline variants, targeting rows, metrics and ramp steps while the experiment is a draft;
once started only coverage can rise. Start, pause, stop, advance ramp and ship are buttons
(and list actions) that ask for confirmation first. Exposures and rollout events are
read-only; the rollout audit log lists every change of every experiment.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.core.errors import ApplicationError
from apps.events.admin import ReadOnlyEventAdmin
from apps.experiments import selectors, services
from apps.experiments.admin import actions
from apps.experiments.admin.forms import (
    ExperimentForm,
    ExperimentPartFormSet,
    RampStepForm,
    VariantForm,
    session_of,
)
from apps.experiments.models import (
    Experiment,
    ExperimentMetric,
    Exposure,
    RampStep,
    RolloutEvent,
    Status,
    TargetingRule,
    Variant,
)
from apps.registry import selectors as registry_selectors


def actor_of(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


class _PartInline[M: Model](admin.TabularInline[M, Experiment]):
    """An inline that is editable while the experiment is a draft, read-only after."""

    formset = ExperimentPartFormSet
    extra = 0
    part = ""

    def _editable(self, obj: Experiment | None) -> bool:
        return obj is None or obj.status == Status.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


class VariantInline(_PartInline[Variant]):
    model = Variant
    form = VariantForm
    part = "variants"
    fields = ("key", "model_version", "weight", "is_control")
    verbose_name_plural = "variants (weights sum to 1; the control is the baseline)"

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return 2 if obj is None else 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Variant]:
        return super().get_queryset(request).select_related("model_version__model")

    @admin.display(description="Control", boolean=True)
    def is_control(self, obj: Variant) -> bool:
        return obj.key == obj.experiment.control

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "model_version":
            kwargs["queryset"] = _version_choices(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _version_choices(request: HttpRequest) -> QuerySet[Any]:
    """The versions of the experiment's model when it is known, else every model's."""
    match = request.resolver_match
    object_id = match.kwargs.get("object_id") if match is not None else None
    model = (
        Experiment.objects.filter(pk=object_id).values_list("model__name", flat=True).first()
        if object_id and str(object_id).isdigit()
        else None
    )
    if model is not None:
        return registry_selectors.model_version_list(model=model).order_by("version")
    related = Variant._meta.get_field("model_version").related_model
    assert isinstance(related, type)  # noqa: S101 - a ForeignKey to a model class
    return related._default_manager.select_related("model").order_by("model__name", "version")


class TargetingInline(_PartInline[TargetingRule]):
    model = TargetingRule
    part = "targeting"
    fields = ("attribute", "values")
    verbose_name = "targeting rule"
    verbose_name_plural = "targeting (a subject must match every row; values comma-separated)"


class MetricInline(_PartInline[ExperimentMetric]):
    model = ExperimentMetric
    part = "metrics"
    fields = ("key", "type", "role")
    verbose_name_plural = "metrics (one primary; guardrails must not get worse)"


class RampStepInline(_PartInline[RampStep]):
    model = RampStep
    form = RampStepForm
    part = "ramp"
    fields = ("coverage", "after", "applied_at")
    readonly_fields = ("applied_at",)
    verbose_name = "ramp step"
    verbose_name_plural = "gradual rollout (coverage raised on a schedule after the start)"


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin[Experiment]):
    form = ExperimentForm
    inlines = [VariantInline, TargetingInline, MetricInline, RampStepInline]
    list_display = (
        "key",
        "model",
        "status_badge",
        "variants_summary",
        "coverage_percent",
        "started_at",
        "owner",
    )
    list_filter = ("status", "model", "started_at", "owner")
    search_fields = ("key", "description", "hypothesis", "owner", "model__name")
    date_hierarchy = "created_at"
    actions = ["start_selected", "pause_selected", "stop_selected", "advance_selected"]
    change_form_template = "admin/experiments/experiment/change_form.html"
    _status_fields = (
        "status",
        "shipped_variant",
        "started_at",
        "stopped_at",
        "created_by",
        "created_at",
        "salt",
    )
    _editable_fields = tuple(ExperimentForm.Meta.fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Experiment]:
        return (
            super()
            .get_queryset(request)
            .select_related("model")
            .prefetch_related("variants__model_version")
        )

    # --- list columns ----------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Experiment) -> SafeString:
        colours = {"draft": "#777", "running": "#2a7d2a", "paused": "#b8860b", "stopped": "#a33"}
        return format_html(
            '<strong style="color: {}">{}</strong>', colours[obj.status], obj.get_status_display()
        )

    @admin.display(description="Variants (weight, version)")
    def variants_summary(self, obj: Experiment) -> str:
        return ", ".join(
            f"{v.key}{' (control)' if v.key == obj.control else ''}"
            f" {v.weight:.0%} v{v.model_version.version}"
            for v in obj.variants.all()
        )

    @admin.display(description="Coverage", ordering="coverage")
    def coverage_percent(self, obj: Experiment) -> str:
        return f"{obj.coverage:.0%}"

    # --- the change page ---------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Experiment | None = None) -> Any:
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": ("key", "model", "owner", "description", "hypothesis")}),
            ("Rollout", {"fields": ("coverage",)}),
            ("Analysis", {"fields": ("alpha", "mde", "breakdown_attributes")}),
        ]
        if obj is not None:
            fieldsets.append(("Status", {"fields": self._status_fields}))
            fieldsets.append(("History", {"fields": ("history_panel",)}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Experiment | None = None) -> Any:
        if obj is None:
            return ()
        fixed: tuple[str, ...] = ("key",)
        if obj.status in {Status.RUNNING, Status.PAUSED}:
            fixed = tuple(name for name in self._editable_fields if name != "coverage")
        elif obj.status == Status.STOPPED:
            fixed = self._editable_fields
        return (*fixed, *self._status_fields, "history_panel")

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        return {**kwargs, "session": session_of(request), "part": inline.part}

    def get_form(
        self,
        request: HttpRequest,
        obj: Experiment | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form_class = super().get_form(request, obj, change, **kwargs)
        session = session_of(request)

        class RegisteredForm(form_class):  # type: ignore[misc,valid-type]  # a class made at runtime
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                session.form = self

        return RegisteredForm

    @admin.display(description="Change history")
    def history_panel(self, obj: Experiment) -> SafeString:
        return _history_table(selectors.experiment_history(experiment_id=obj.pk))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        """Nothing here: save_related writes the experiment and its inlines in one service call."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Nothing here either (see save_related)."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        spec = session_of(request).spec
        stored: Experiment = form.instance
        actor = actor_of(request)
        if not change:
            assert spec is not None  # noqa: S101 - the page check built it before saving
            created = services.experiment_create(spec=spec, actor=actor)
            stored.pk = created.pk
        elif stored.status == Status.DRAFT:
            assert spec is not None  # noqa: S101 - the page check built it before saving
            services.experiment_update(key=stored.key, spec=spec, actor=actor)
        else:
            current = services.spec_of(selectors.experiment_get(key=stored.key))
            services.experiment_update(
                key=stored.key,
                spec=replace(current, coverage=form.cleaned_data["coverage"]),
                actor=actor,
            )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, dict[str, list[str]]]]:
        # The rollout events hold the full story; the admin log only names the form fields.
        if add:
            return [{"added": {}}]
        return [{"changed": {"fields": list(form.changed_data)}}]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None and self.has_change_permission(request, obj):
            context["experiment_actions"] = [
                {
                    "label": label,
                    "url": reverse("admin:experiments_experiment_action", args=[obj.pk, name]),
                }
                for name, label in actions.available(obj)
            ]
        context["audit_log_url"] = (
            reverse("admin:experiments_rolloutevent_changelist")
            + f"?experiment__id__exact={object_id}"
        )
        return super().change_view(request, object_id, form_url, context)

    # --- actions with confirmation -------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/do/<str:name>/",
                self.admin_site.admin_view(self.action_view),
                name="experiments_experiment_action",
            ),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, object_id: int, name: str) -> HttpResponseBase:
        """GET: the confirmation page of one action; POST: do it and go back to the page."""
        obj = self.get_object(request, str(object_id))
        if obj is None:
            self.message_user(request, f"No experiment with id {object_id}.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:experiments_experiment_changelist"))
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        if name not in actions.ACTIONS:
            self.message_user(request, f"Unknown action {name!r}.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(obj))
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                actions.perform(name, obj, actor_of(request), request.POST.get("variant", ""))
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(request, actions.done_message(name, obj), messages.SUCCESS)
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirmation(request, name, [obj], cancel_url=self._change_url(obj))

    def _change_url(self, obj: Experiment) -> str:
        return reverse("admin:experiments_experiment_change", args=[obj.pk])

    def _confirmation(
        self,
        request: HttpRequest,
        name: str,
        experiments: list[Experiment],
        *,
        cancel_url: str,
        list_action: str = "",
    ) -> TemplateResponse:
        action = actions.ACTIONS[name]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.label}: are you sure?",
            "opts": self.opts,
            "action": action,
            "experiments": experiments,
            "variants": list(experiments[0].variants.all()) if name == "ship" else [],
            "list_action": list_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": cancel_url,
        }
        return TemplateResponse(
            request, "admin/experiments/experiment/confirm_action.html", context
        )

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Experiment], name: str) -> Any:
        experiments = list(queryset)
        if request.POST.get("confirm") != "yes":
            return self._confirmation(
                request,
                name,
                experiments,
                cancel_url=reverse("admin:experiments_experiment_changelist"),
                list_action=f"{name}_selected",
            )
        for experiment in experiments:
            try:
                actions.perform(name, experiment, actor_of(request), "")
            except ApplicationError as error:
                self.message_user(request, f"{experiment.key}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, actions.done_message(name, experiment), messages.SUCCESS)
        return None

    @admin.action(description="Start or resume the selected experiments", permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> Any:
        return self._bulk(request, queryset, "start")

    @admin.action(description="Pause the selected experiments", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> Any:
        return self._bulk(request, queryset, "pause")

    @admin.action(description="Stop the selected experiments for good", permissions=["change"])
    def stop_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> Any:
        return self._bulk(request, queryset, "stop")

    @admin.action(
        description="Advance the ramp of the selected experiments", permissions=["change"]
    )
    def advance_selected(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> Any:
        return self._bulk(request, queryset, "advance")


def _history_table(events: QuerySet[RolloutEvent]) -> SafeString:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                event.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                event.get_type_display(),
                event.actor,
                actions.describe_diff(event),
            )
            for event in events
        ),
    )
    return format_html(
        '<table class="experiment-history"><thead><tr><th>When</th><th>Change</th><th>Who</th>'
        "<th>What changed</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(RolloutEvent)
class RolloutEventAdmin(ReadOnlyEventAdmin[RolloutEvent]):
    """The global rollout audit log: every change of every experiment, newest first."""

    list_display = ("occurred_at", "experiment", "type", "actor", "changes")
    list_filter = ("type", "experiment")
    search_fields = ("experiment__key", "actor")
    list_select_related = ("experiment",)

    @admin.display(description="What changed")
    def changes(self, obj: RolloutEvent) -> str:
        return actions.describe_diff(obj)


@admin.register(Exposure)
class ExposureAdmin(ReadOnlyEventAdmin[Exposure]):
    list_display = ("occurred_at", "experiment", "subject", "variant", "model_version", "source")
    list_filter = ("source", "experiment", "variant")
    search_fields = ("subject", "experiment__key")
    list_select_related = ("experiment",)
    show_full_result_count = False

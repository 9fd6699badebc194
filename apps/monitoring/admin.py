"""Admin screens of monitoring; every change goes through the services (actor user:<name>).

Rules are created and edited here with the API's validation; enabling and disabling are
actions; a webhook's signing secret is shown once, in the message after the save that made
it. Alerts can be acknowledged (an action); alerts, acknowledgements, rule and job events,
jobs and the webhook delivery log are read-only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.analytics import selectors as analytics_selectors
from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import ApplicationError
from apps.events.admin import ReadOnlyEventAdmin
from apps.monitoring import services
from apps.monitoring.models import (
    Alert,
    AlertAcknowledgement,
    RetrainingJob,
    RetrainingJobEvent,
    Rule,
    RuleEvent,
    RuleFailure,
    WebhookDelivery,
)
from apps.monitoring.validation import (
    Problems,
    RuleSpec,
    check_webhook_url,
    cooldown_problem,
    format_duration,
    parse_duration,
    window_problem,
)


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


# --- rules --------------------------------------------------------------------------------------


class RuleForm(forms.ModelForm[Rule]):
    metric = forms.ChoiceField(choices=())
    window = forms.CharField(help_text="Whole hours, at least 1h: 1h, 6h, 2d.")
    cooldown = forms.CharField(help_text="<n>m, <n>h or <n>d, at least 1m.")
    rotate_webhook_secret = forms.BooleanField(
        required=False, help_text="Make a new signing secret (shown once after saving)."
    )

    class Meta:
        model = Rule
        fields = [
            "model",
            "name",
            "metric",
            "segment_attribute",
            "segment_value",
            "window",
            "comparator",
            "threshold",
            "min_samples",
            "cooldown",
            "action",
            "enabled",
            "webhook_url",
            "open_canary",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        metrics = analytics_selectors.PERFORMANCE_METRICS
        self.fields["metric"].choices = [(name, name) for name in metrics]  # type: ignore[attr-defined]  # a ChoiceField
        for name in ("window", "cooldown"):
            value = self.initial.get(name)
            if isinstance(value, timedelta):
                self.initial[name] = format_duration(value)
        if self.instance._state.adding:
            for name, default in (("window", "1h"), ("cooldown", "1h"), ("min_samples", 100)):
                self.initial.setdefault(name, default)

    def _duration(self, name: str) -> timedelta | None:
        try:
            value = parse_duration(str(self.cleaned_data.get(name, "")))
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        problem = window_problem(value) if name == "window" else cooldown_problem(value)
        if problem is not None:
            raise forms.ValidationError(problem)
        return value

    def clean_window(self) -> timedelta | None:
        return self._duration("window")

    def clean_cooldown(self) -> timedelta | None:
        return self._duration("cooldown")

    def clean_webhook_url(self) -> str:
        problems = Problems()
        url = check_webhook_url(
            problems,
            self.cleaned_data.get("webhook_url") or "",
            allow_private=services.webhook_allow_private(),
        )
        if problems.details:
            raise forms.ValidationError(problems.details[0]["message"])
        return url

    def spec(self) -> RuleSpec:
        data = self.cleaned_data
        attribute = (data.get("segment_attribute") or "").strip()
        model = data.get("model") or getattr(self.instance, "model", None)
        return RuleSpec(
            name=data.get("name") or "",
            model=model.name if model is not None else "",
            metric=data.get("metric") or "",
            comparator=data.get("comparator") or "",
            threshold=float(data.get("threshold") or 0.0),
            segment=(attribute, data.get("segment_value") or "") if attribute else None,
            window=data.get("window") or timedelta(hours=1),
            min_samples=int(data.get("min_samples") or 1),
            cooldown=data.get("cooldown") or timedelta(hours=1),
            action=data.get("action") or "alert",
            enabled=bool(data.get("enabled")),
            webhook_url=data.get("webhook_url") or "",
            open_canary=bool(data.get("open_canary")),
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        fixed = None if self.instance._state.adding else self.instance.model.name
        for detail in services.rule_check(spec=self.spec(), model_fixed=fixed):
            field = str(detail.get("field", "")).split(".")[0]
            field = "segment_attribute" if field == "segment" else field
            self.add_error(field if field in self.fields else None, detail["message"])
        return cleaned


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin[Rule]):
    form = RuleForm
    actions = ["enable", "disable"]
    list_display = (
        "name",
        "model",
        "metric",
        "comparator",
        "threshold",
        "window",
        "action",
        "enabled",
        "updated_at",
    )
    list_filter = ("enabled", "action", "model")
    list_select_related = ("model",)
    search_fields = ("name", "model__name", "metric")
    ordering = ("-created_at", "-id")

    def get_readonly_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        if obj is None:
            return ("created_by", "created_at", "updated_by", "updated_at")
        return ("model", "created_by", "created_at", "updated_by", "updated_at")

    def get_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        fields = list(RuleForm.Meta.fields)
        if obj is not None:
            fields.append("rotate_webhook_secret")
        return [*fields, "created_by", "created_at", "updated_by", "updated_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        spec = form.spec()
        if change:
            saved, secret = services.rule_update(
                rule_id=obj.pk,
                spec=spec,
                actor=_actor(request),
                rotate_webhook_secret=bool(form.cleaned_data.get("rotate_webhook_secret")),
            )
        else:
            saved, secret = services.rule_create(spec=spec, actor=_actor(request))
        obj.pk = saved.pk
        if secret is not None:
            self.message_user(
                request,
                f"The webhook signing secret of rule {saved.name!r} is {secret} — copy it now, "
                "it is not shown again.",
                messages.WARNING,
            )

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Rule], enabled: bool) -> None:
        for rule in queryset:
            try:
                services.rule_set_enabled(rule_id=rule.pk, enabled=enabled, actor=_actor(request))
            except ApplicationError as error:
                self.message_user(request, f"{rule.name}: {error.message}", messages.ERROR)
        self.message_user(
            request, f"{'Enabled' if enabled else 'Disabled'} the selected rules.", messages.SUCCESS
        )

    @admin.action(description="Enable the selected rules")
    def enable(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected rules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(RuleEvent)
class RuleEventAdmin(ReadOnlyEventAdmin[RuleEvent]):
    list_display = ("occurred_at", "type", "rule", "actor")
    list_filter = ("type",)
    list_select_related = ("rule",)
    search_fields = ("actor",)


# --- alerts -------------------------------------------------------------------------------------


@admin.register(Alert)
class AlertAdmin(ReadOnlyEventAdmin[Alert]):
    actions = ["acknowledge"]
    list_display = (
        "occurred_at",
        "rule",
        "model",
        "metric",
        "observed_value",
        "threshold",
        "sample_size",
        "segment",
        "acknowledged",
    )
    list_filter = ("model", "metric")
    list_select_related = ("rule", "model", "acknowledgement")

    @admin.display(boolean=True)
    def acknowledged(self, obj: Alert) -> bool:
        return hasattr(obj, "acknowledgement")

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("monitoring.view_alert")

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset:
            services.alert_acknowledge(alert_id=alert.pk, actor=_actor(request))
        self.message_user(request, "Acknowledged the selected alerts.", messages.SUCCESS)


@admin.register(AlertAcknowledgement)
class AlertAcknowledgementAdmin(ReadOnlyEventAdmin[AlertAcknowledgement]):
    list_display = ("occurred_at", "alert", "actor", "note")
    search_fields = ("actor",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin[WebhookDelivery]):
    list_display = ("attempted_at", "rule", "alert", "attempt", "outcome", "status_code", "error")
    list_filter = ("outcome",)
    list_select_related = ("rule", "alert")
    ordering = ("-attempted_at", "-id")


# --- retraining jobs ----------------------------------------------------------------------------


@admin.register(RetrainingJob)
class RetrainingJobAdmin(admin.ModelAdmin[RetrainingJob]):
    list_display = (
        "created_at",
        "model",
        "rule",
        "status",
        "observed_value",
        "threshold",
        "attempts",
        "result_version",
        "canary_experiment",
    )
    list_filter = ("status", "model")
    list_select_related = ("model", "rule", "result_version")
    ordering = ("-created_at", "-id")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RetrainingJobEvent)
class RetrainingJobEventAdmin(ReadOnlyEventAdmin[RetrainingJobEvent]):
    list_display = ("occurred_at", "type", "job", "actor", "error")
    list_filter = ("type",)
    search_fields = ("actor",)


@admin.register(RuleFailure)
class RuleFailureAdmin(ReadOnlyAdmin[RuleFailure]):
    """Rules whose evaluation fails: retried on their own with backoff, cleared when it works."""

    list_display = ("rule", "error", "attempts", "first_failed_at", "retry_at")

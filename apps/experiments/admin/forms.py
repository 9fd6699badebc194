"""Forms of the experiment admin, and the check that spans the page and its inlines.

An experiment's rules span the main form and four inlines (the weights of all variants sum
to 1, exactly one control, the primary metric among the metrics…). Django validates each
form and formset on its own, so the page's forms register in one EditSession per request;
the last inline formset to validate builds an ExperimentSpec from all of them and runs the
same check as the API (services.experiment_check), putting each message on the row or field
it names. The spec it built is what the admin then saves through the services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from apps.experiments import services
from apps.experiments.models import Experiment, MetricRole, Status
from apps.experiments.validation import (
    ExperimentSpec,
    MetricSpec,
    RampStepSpec,
    VariantSpec,
    format_duration,
    parse_duration,
)

SESSION_ATTRIBUTE = "_experiment_edit_session"
PARTS = ("variants", "targeting", "metrics", "ramp")


class ExperimentForm(forms.ModelForm[Experiment]):
    class Meta:
        model = Experiment
        fields = [
            "key",
            "model",
            "owner",
            "description",
            "hypothesis",
            "coverage",
            "alpha",
            "mde",
            "breakdown_attributes",
        ]
        help_texts = {
            "key": "Never changes once created; applications ask for assignments by this key.",
            "coverage": "Share of targeted subjects in the experiment (0-1). Once started it "
            "can only rise; a ramp raises it on a schedule.",
            "alpha": "Significance level of the results (0.05 = 95% confidence).",
            "mde": "Smallest relative lift worth detecting (0.05 = 5%).",
            "breakdown_attributes": "Comma-separated segment attributes of the model to break "
            "the results down by.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        stored = self.instance
        coverage = cleaned.get("coverage")
        running = stored.pk is not None and stored.status in {Status.RUNNING, Status.PAUSED}
        if running and coverage is not None and coverage < stored.coverage:
            self.add_error(
                "coverage",
                f"Coverage cannot decrease while the experiment runs (it is {stored.coverage:g}):"
                " subjects already in the experiment would drop out.",
            )
        return cleaned


class VariantForm(forms.ModelForm[Any]):
    is_control = forms.BooleanField(
        required=False, label="Control", help_text="Tick exactly one variant."
    )


class DurationText(forms.Field):
    """A duration written as product people write it: 30m, 24h, 2d."""

    widget = forms.TextInput

    def prepare_value(self, value: Any) -> Any:
        return format_duration(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta:
        text = str(value or "").strip() or "0h"
        try:
            return parse_duration(text)
        except ValueError as error:
            raise ValidationError(str(error)) from error


class RampStepForm(forms.ModelForm[Any]):
    after = DurationText(
        required=False,
        initial="0h",
        help_text="Time after the first start: 30m, 24h, 2d. 0h = at the start.",
    )


@dataclass
class EditSession:
    """The forms of one admin page, so the last formset can check them together."""

    form: forms.ModelForm[Experiment] | None = None
    formsets: dict[str, ExperimentPartFormSet] = field(default_factory=dict)
    spec: ExperimentSpec | None = None

    def is_last(self, formset: ExperimentPartFormSet) -> bool:
        return list(self.formsets.values())[-1] is formset


def session_of(request: HttpRequest) -> EditSession:
    session = getattr(request, SESSION_ATTRIBUTE, None)
    if session is None:
        session = EditSession()
        setattr(request, SESSION_ATTRIBUTE, session)
    return session


class ExperimentPartFormSet(BaseInlineFormSet[Any, Experiment, Any]):
    """One inline of the experiment page, registered in the page's EditSession."""

    def __init__(
        self, *args: Any, session: EditSession | None = None, part: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.session = session
        self.part = part
        if session is not None:
            session.formsets[part] = self

    def add_fields(self, form: Any, index: int | None) -> None:
        super().add_fields(form, index)
        if "is_control" in form.fields and form.instance.pk is not None:
            form.fields["is_control"].initial = form.instance.key == self.instance.control

    def live_forms(self) -> list[Any]:
        return [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")
        ]

    def clean(self) -> None:
        super().clean()
        session = self.session
        if session is None or not session.is_last(self):
            return
        if not _check_page(session):
            raise ValidationError("The experiment is not valid yet: see the messages above.")


def _check_page(session: EditSession) -> bool:
    """Build the spec from every form of the page and check it; False when it breaks a rule."""
    form = session.form
    if form is None or not form.is_valid() or len(session.formsets) != len(PARTS):
        return True  # the form's own errors show; nothing to cross-check
    stored = form.instance
    if stored.pk is not None and stored.status != Status.DRAFT:
        return True  # inlines are read-only once started; the form checks coverage
    if any(
        not formset.is_bound or any(f.errors for f in formset.forms)
        for formset in session.formsets.values()
    ):
        return True
    problems = _page_problems(session)
    if problems is None:
        return False
    for detail in problems:
        _report(session, str(detail.get("field", "")), str(detail["message"]))
    return not problems


def _page_problems(session: EditSession) -> list[dict[str, Any]] | None:
    """The spec's problems, or None when the page cannot even make a spec (errors reported)."""
    assert session.form is not None  # noqa: S101 - checked by the caller
    data = session.form.cleaned_data
    variants = session.formsets["variants"].live_forms()
    controls = [f.cleaned_data["key"] for f in variants if f.cleaned_data.get("is_control")]
    metrics = session.formsets["metrics"].live_forms()
    primaries = [f for f in metrics if f.cleaned_data.get("role") == MetricRole.PRIMARY]
    page_ok = True
    if len(controls) != 1:
        session.formsets["variants"].non_form_errors().append(
            f"Tick exactly one variant as the control ({len(controls)} ticked)."
        )
        page_ok = False
    if len(primaries) > 1:
        session.formsets["metrics"].non_form_errors().append(
            "Only one metric can be the primary metric."
        )
        page_ok = False
    if not page_ok:
        return None
    spec = ExperimentSpec(
        key=data.get("key") or session.form.instance.key,
        model=(data.get("model") or session.form.instance.model).name,
        description=data.get("description", ""),
        hypothesis=data.get("hypothesis", ""),
        owner=data.get("owner", ""),
        variants=tuple(
            VariantSpec(
                key=f.cleaned_data["key"],
                model_version=f.cleaned_data["model_version"].version,
                weight=f.cleaned_data["weight"],
                version_model=f.cleaned_data["model_version"].model.name,
            )
            for f in variants
        ),
        control=controls[0],
        metrics=tuple(MetricSpec(f.cleaned_data["key"], f.cleaned_data["type"]) for f in metrics),
        primary_metric=primaries[0].cleaned_data["key"] if primaries else None,
        guardrail_metrics=tuple(
            f.cleaned_data["key"]
            for f in metrics
            if f.cleaned_data.get("role") == MetricRole.GUARDRAIL
        ),
        breakdown_attributes=tuple(data.get("breakdown_attributes") or ()),
        targeting={
            f.cleaned_data["attribute"]: tuple(f.cleaned_data["values"])
            for f in session.formsets["targeting"].live_forms()
        },
        coverage=data["coverage"],
        ramp=tuple(
            RampStepSpec(coverage=f.cleaned_data["coverage"], after=f.cleaned_data["after"])
            for f in session.formsets["ramp"].live_forms()
        ),
        alpha=data["alpha"],
        mde=data["mde"],
    )
    session.spec = spec
    return services.experiment_check(spec=spec)


_PART_OF_FIELD = {
    "variants": "variants",
    "control": "variants",
    "metrics": "metrics",
    "primary_metric": "metrics",
    "guardrail_metrics": "metrics",
    "targeting": "targeting",
    "ramp": "ramp",
}


def _report(session: EditSession, path: str, message: str) -> None:
    """Show one problem where it belongs: a form field, an inline row, or an inline's top."""
    assert session.form is not None  # noqa: S101 - checked by the caller
    head, _, rest = path.partition(".")
    part = _PART_OF_FIELD.get(head)
    if part is None:
        form = session.form
        form.add_error(head if head in form.fields else None, message)
        return
    formset = session.formsets[part]
    index, _, attribute = rest.partition(".")
    rows = formset.live_forms()
    if head in {"variants", "metrics", "ramp"} and index.isdigit() and int(index) < len(rows):
        row = rows[int(index)]
        row.add_error(attribute if attribute in row.fields else None, message)
        return
    formset.non_form_errors().append(message)

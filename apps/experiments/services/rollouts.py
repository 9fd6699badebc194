"""Experiment changes: create, edit, start, pause, stop, ramp steps and ship.

Each use case runs in one transaction: it locks the experiment row, checks the rules of
validation.py and of the status machine (draft → running ⇄ paused → stopped; stopped is
final), writes, appends a RolloutEvent with the actor, the diff and the full state after the
change, and raises the configuration number so every process reloads on its next request.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import DateTimeField as DateTimeModelField
from django.db.models import ExpressionWrapper, F
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.experiments import selectors
from apps.experiments.bucketing import HASH_VERSION
from apps.experiments.models import (
    Experiment,
    ExperimentMetric,
    MetricRole,
    RampStep,
    RolloutEvent,
    RolloutEventType,
    Status,
    TargetingRule,
    Variant,
)
from apps.experiments.services.exposures import config_changed
from apps.experiments.validation import (
    ExperimentSpec,
    MetricSpec,
    RampStepSpec,
    RegistryFacts,
    VariantSpec,
    format_duration,
    spec_problems,
)
from apps.registry import selectors as registry_selectors
from apps.registry import services as registry_services

logger = logging.getLogger(__name__)

PRODUCTION_ALIAS = "production"
RAMP_ACTOR = "system:ramp"
# Experiments the beat advancer handles per run; the rest wait for the next run.
RAMP_BATCH = 100


# --- state recorded on events ----------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def experiment_state(experiment: Experiment) -> dict[str, Any]:
    """The experiment as the API shows it; the `state` of its events (children prefetched)."""
    metrics = list(experiment.metrics.all())
    primary = next((m.key for m in metrics if m.role == MetricRole.PRIMARY), None)
    return {
        "key": experiment.key,
        "model": experiment.model.name,
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "owner": experiment.owner,
        "status": experiment.status,
        "variants": [
            {"key": v.key, "model_version": v.model_version.version, "weight": v.weight}
            for v in experiment.variants.all()
        ],
        "control": experiment.control,
        "metrics": [{"key": m.key, "type": m.type} for m in metrics],
        "primary_metric": primary,
        "guardrail_metrics": [m.key for m in metrics if m.role == MetricRole.GUARDRAIL],
        "breakdown_attributes": list(experiment.breakdown_attributes),
        "targeting": {rule.attribute: list(rule.values) for rule in experiment.targeting.all()},
        "coverage": experiment.coverage,
        "ramp": [
            {
                "coverage": step.coverage,
                "after": format_duration(step.after),
                "applied_at": _time(step.applied_at),
            }
            for step in experiment.ramp.all()
        ],
        "alpha": experiment.alpha,
        "mde": experiment.mde,
        "salt": experiment.salt,
        "hash_version": HASH_VERSION,
        "shipped_variant": experiment.shipped_variant or None,
        "created_by": experiment.created_by,
        "created_at": _time(experiment.created_at),
        "updated_at": _time(experiment.updated_at),
        "started_at": _time(experiment.started_at),
        "stopped_at": _time(experiment.stopped_at),
    }


def spec_of(experiment: Experiment) -> ExperimentSpec:
    """The configuration of a stored experiment (children prefetched)."""
    metrics = list(experiment.metrics.all())
    return ExperimentSpec(
        key=experiment.key,
        model=experiment.model.name,
        description=experiment.description,
        hypothesis=experiment.hypothesis,
        owner=experiment.owner,
        variants=tuple(
            VariantSpec(key=v.key, model_version=v.model_version.version, weight=v.weight)
            for v in experiment.variants.all()
        ),
        control=experiment.control,
        metrics=tuple(MetricSpec(key=m.key, type=m.type) for m in metrics),
        primary_metric=next((m.key for m in metrics if m.role == MetricRole.PRIMARY), None),
        guardrail_metrics=tuple(m.key for m in metrics if m.role == MetricRole.GUARDRAIL),
        breakdown_attributes=tuple(experiment.breakdown_attributes),
        targeting={rule.attribute: tuple(rule.values) for rule in experiment.targeting.all()},
        coverage=experiment.coverage,
        ramp=tuple(RampStepSpec(coverage=s.coverage, after=s.after) for s in experiment.ramp.all()),
        alpha=experiment.alpha,
        mde=experiment.mde,
    )


_UNRECORDED = {"updated_at"}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"from": before.get(name), "to": value}
        for name, value in after.items()
        if name not in _UNRECORDED and before.get(name) != value
    }


def _record(
    *, key: str, kind: RolloutEventType, actor: str, before: dict[str, Any], at: datetime
) -> Experiment:
    """Append the event of a change just written, raise the config number; the fresh row."""
    fresh = selectors.experiment_get(key=key)
    after = experiment_state(fresh)
    RolloutEvent.objects.create(
        experiment=fresh,
        type=kind,
        actor=actor,
        diff=_diff(before, after),
        state=after,
        occurred_at=at,
    )
    config_changed()
    logger.info("experiment.changed", extra={"experiment": key, "change": kind.value})
    return fresh


def _locked(key: str) -> tuple[Experiment, dict[str, Any]]:
    """The experiment, its row locked for this transaction, and its state before the change."""
    # FOR NO KEY UPDATE: serialises changes of this experiment without blocking the foreign
    # key checks (FOR KEY SHARE) of exposures being inserted meanwhile.
    locked = (
        Experiment.objects.select_for_update(no_key=True)
        .filter(key=key)
        .values_list("pk", flat=True)
    )
    if locked.first() is None:
        raise NotFound(f"No experiment with key {key!r}.")
    experiment = selectors.experiment_get(key=key)
    return experiment, experiment_state(experiment)


# --- configuration ---------------------------------------------------------------------------


def _facts(spec: ExperimentSpec) -> tuple[RegistryFacts, dict[str, int]]:
    """What the registry knows of the spec's model, and the ids of its variants' versions."""
    try:
        model = registry_selectors.model_get(name=spec.model)
    except NotFound:
        return RegistryFacts(False, frozenset(), frozenset()), {}
    found = registry_selectors.model_version_ids(
        pairs=[(spec.model, variant.model_version) for variant in spec.variants]
    )
    ids = {version: pk for (_, version), pk in found.items()}
    return RegistryFacts(True, frozenset(model.segment_attributes), frozenset(ids)), ids


def _validated(spec: ExperimentSpec) -> dict[str, int]:
    facts, version_ids = _facts(spec)
    problems = spec_problems(spec, facts)
    if problems:
        raise ValidationFailed("The experiment is invalid.", details=problems)
    return version_ids


def experiment_check(*, spec: ExperimentSpec) -> list[dict[str, Any]]:
    """The rules `spec` breaks, without writing anything (the admin shows them on its form)."""
    facts, _ = _facts(spec)
    return spec_problems(spec, facts)


def _write_children(experiment: Experiment, spec: ExperimentSpec, ids: dict[str, int]) -> None:
    Variant.objects.bulk_create(
        Variant(
            experiment=experiment,
            key=v.key,
            model_version_id=ids[v.model_version],
            weight=v.weight,
            position=position,
        )
        for position, v in enumerate(spec.variants)
    )
    TargetingRule.objects.bulk_create(
        TargetingRule(experiment=experiment, attribute=attribute, values=list(values))
        for attribute, values in spec.targeting.items()
    )
    guardrails = set(spec.guardrail_metrics)

    def role(key: str) -> MetricRole:
        if key == spec.primary_metric:
            return MetricRole.PRIMARY
        return MetricRole.GUARDRAIL if key in guardrails else MetricRole.SECONDARY

    ExperimentMetric.objects.bulk_create(
        ExperimentMetric(
            experiment=experiment, key=m.key, type=m.type, role=role(m.key), position=i
        )
        for i, m in enumerate(spec.metrics)
    )
    RampStep.objects.bulk_create(
        RampStep(experiment=experiment, position=i, coverage=s.coverage, after=s.after)
        for i, s in enumerate(spec.ramp)
    )


_SCALARS = ("description", "hypothesis", "owner", "control", "coverage", "alpha", "mde")


@transaction.atomic
def experiment_create(*, spec: ExperimentSpec, actor: str) -> Experiment:
    """A new draft experiment with a fresh salt; Conflict when the key is taken."""
    version_ids = _validated(spec)
    model = registry_selectors.model_get(name=spec.model)
    now = timezone.now()
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                key=spec.key,
                model=model,
                breakdown_attributes=list(spec.breakdown_attributes),
                salt=secrets.token_hex(16),
                created_by=actor,
                created_at=now,
                updated_at=now,
                **{name: getattr(spec, name) for name in _SCALARS},
            )
    except IntegrityError:
        raise Conflict(
            f"An experiment with key {spec.key!r} already exists; keys are never reused.",
            details=[{"field": "key", "message": "Choose another key."}],
        ) from None
    _write_children(experiment, spec, version_ids)
    return _record(key=spec.key, kind=RolloutEventType.CREATED, actor=actor, before={}, at=now)


def _plain(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec without what only the admin carries, so equal configurations compare equal."""
    return replace(
        spec,
        variants=tuple(replace(v, version_model=None) for v in spec.variants),
        targeting={name: tuple(values) for name, values in sorted(spec.targeting.items())},
    )


def _changed(current: ExperimentSpec, wanted: ExperimentSpec) -> list[str]:
    left, right = _plain(current), _plain(wanted)
    names = [name for name in ExperimentSpec.__dataclass_fields__ if name != "key"]
    return [name for name in names if getattr(left, name) != getattr(right, name)]


@transaction.atomic
def experiment_update(*, key: str, spec: ExperimentSpec, actor: str) -> Experiment:
    """Replace the configuration of a draft; once started only a coverage raise is allowed."""
    experiment, before = _locked(key)
    changed = _changed(spec_of(experiment), replace(spec, key=key))
    if not changed:
        return experiment
    if experiment.status == Status.STOPPED:
        raise Conflict("A stopped experiment cannot change; create a new experiment.")
    if experiment.status != Status.DRAFT:
        return _raise_coverage(experiment, before, spec, changed, actor)
    spec = replace(spec, key=key)
    version_ids = _validated(spec)
    now = timezone.now()
    if spec.model != experiment.model.name:
        experiment.model = registry_selectors.model_get(name=spec.model)
    for name in _SCALARS:
        setattr(experiment, name, getattr(spec, name))
    experiment.breakdown_attributes = list(spec.breakdown_attributes)
    experiment.updated_at = now
    experiment.save()
    for related in (Variant, TargetingRule, ExperimentMetric, RampStep):
        related.objects.filter(experiment=experiment).delete()
    _write_children(experiment, spec, version_ids)
    return _record(key=key, kind=RolloutEventType.UPDATED, actor=actor, before=before, at=now)


def _raise_coverage(
    experiment: Experiment,
    before: dict[str, Any],
    spec: ExperimentSpec,
    changed: list[str],
    actor: str,
) -> Experiment:
    frozen = [name for name in changed if name != "coverage"]
    if frozen:
        raise Conflict(
            f"The experiment is {experiment.status}: only its coverage can change now, and only"
            " upwards. Stop it and create a new experiment to change anything else.",
            details=[
                {"field": name, "message": "Fixed once the experiment has started."}
                for name in frozen
            ],
        )
    if not 0.0 <= spec.coverage <= 1.0:
        raise ValidationFailed(
            "The experiment is invalid.",
            details=[{"field": "coverage", "message": "Coverage is between 0 and 1."}],
        )
    if spec.coverage < experiment.coverage:
        raise Conflict(
            f"Coverage cannot decrease while the experiment runs ({experiment.coverage:g} →"
            f" {spec.coverage:g}): subjects already in the experiment would drop out.",
            details=[{"field": "coverage", "message": f"At least {experiment.coverage:g}."}],
        )
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(coverage=spec.coverage, updated_at=now)
    return _record(
        key=experiment.key,
        kind=RolloutEventType.COVERAGE_RAISED,
        actor=actor,
        before=before,
        at=now,
    )


# --- status and ramp ---------------------------------------------------------------------------


def _apply_due_steps(experiment: Experiment, now: datetime) -> bool:
    """Apply every ramp step whose time has come (never lowering coverage); True if any."""
    assert experiment.started_at is not None  # noqa: S101 - only called once started
    due = [
        step
        for step in experiment.ramp.all()
        if step.applied_at is None and experiment.started_at + step.after <= now
    ]
    for step in due:
        experiment.coverage = max(experiment.coverage, step.coverage)
    if due:
        RampStep.objects.filter(pk__in=[step.pk for step in due]).update(applied_at=now)
    return bool(due)


@transaction.atomic
def experiment_start(*, key: str, actor: str) -> Experiment:
    """Draft → running (validated again, ramp begins) or paused → running."""
    experiment, before = _locked(key)
    if experiment.status == Status.RUNNING:
        raise Conflict(f"{key!r} is already running.")
    if experiment.status == Status.STOPPED:
        raise Conflict(f"{key!r} is stopped; a stopped experiment is never restarted.")
    resuming = experiment.status == Status.PAUSED
    if not resuming:
        _validated(spec_of(experiment))
    now = timezone.now()
    if experiment.started_at is None:
        experiment.started_at = now
        first = next(iter(experiment.ramp.all()), None)
        if first is not None and first.after == timedelta(0):
            # The ramp's opening step sets the starting coverage (it may be below the draft's).
            experiment.coverage = first.coverage
    _apply_due_steps(experiment, now)
    experiment.status = Status.RUNNING
    experiment.updated_at = now
    experiment.save(update_fields=["status", "started_at", "coverage", "updated_at"])
    kind = RolloutEventType.RESUMED if resuming else RolloutEventType.STARTED
    return _record(key=key, kind=kind, actor=actor, before=before, at=now)


@transaction.atomic
def experiment_pause(*, key: str, actor: str) -> Experiment:
    experiment, before = _locked(key)
    if experiment.status != Status.RUNNING:
        raise Conflict(f"Only a running experiment can be paused; {key!r} is {experiment.status}.")
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.PAUSED, updated_at=now)
    return _record(key=key, kind=RolloutEventType.PAUSED, actor=actor, before=before, at=now)


@transaction.atomic
def experiment_stop(*, key: str, actor: str) -> Experiment:
    """Any status but stopped → stopped, for good."""
    experiment, before = _locked(key)
    if experiment.status == Status.STOPPED:
        raise Conflict(f"{key!r} is already stopped.")
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Status.STOPPED, stopped_at=now, updated_at=now
    )
    return _record(key=key, kind=RolloutEventType.STOPPED, actor=actor, before=before, at=now)


@transaction.atomic
def experiment_ship(*, key: str, variant: str, actor: str) -> Experiment:
    """Stop the experiment and move the model's production alias to the variant's version.

    The experiment's event and the registry's alias event commit together or not at all.
    """
    experiment, before = _locked(key)
    if experiment.status == Status.DRAFT:
        raise Conflict(f"{key!r} has not started; start it (or delete the idea) before shipping.")
    if experiment.shipped_variant:
        raise Conflict(f"{key!r} already shipped {experiment.shipped_variant!r}.")
    chosen = next((v for v in experiment.variants.all() if v.key == variant), None)
    if chosen is None:
        keys = ", ".join(v.key for v in experiment.variants.all())
        raise ValidationFailed(
            f"{variant!r} is not a variant of {key!r}.",
            details=[{"field": "variant", "message": f"One of: {keys}."}],
        )
    now = timezone.now()
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Status.STOPPED,
        stopped_at=experiment.stopped_at or now,
        shipped_variant=chosen.key,
        updated_at=now,
    )
    registry_services.alias_move(
        model=experiment.model.name,
        alias=PRODUCTION_ALIAS,
        version=chosen.model_version.version,
        actor=actor,
    )
    return _record(key=key, kind=RolloutEventType.SHIPPED, actor=actor, before=before, at=now)


@transaction.atomic
def experiment_ramp_advance(*, key: str, actor: str) -> Experiment:
    """Apply the next pending ramp step now, ahead of its time (by hand, from the admin)."""
    experiment, before = _locked(key)
    if experiment.status not in {Status.RUNNING, Status.PAUSED}:
        raise Conflict(
            f"The ramp advances while the experiment runs; {key!r} is {experiment.status}."
        )
    step = next((s for s in experiment.ramp.all() if s.applied_at is None), None)
    if step is None:
        raise Conflict(f"{key!r} has no ramp step left.")
    now = timezone.now()
    RampStep.objects.filter(pk=step.pk).update(applied_at=now)
    Experiment.objects.filter(pk=experiment.pk).update(
        coverage=max(experiment.coverage, step.coverage), updated_at=now
    )
    return _record(key=key, kind=RolloutEventType.RAMP_ADVANCED, actor=actor, before=before, at=now)


def ramp_advance_due(*, now: datetime | None = None, limit: int = RAMP_BATCH) -> int:
    """Apply the due ramp steps of up to `limit` running experiments; how many advanced.

    Safe to run twice and concurrently: each experiment is handled in its own transaction
    under its row lock, and an applied step is marked so it never applies again.
    """
    at = now or timezone.now()
    due_at = ExpressionWrapper(
        F("experiment__started_at") + F("after"), output_field=DateTimeModelField()
    )
    keys = list(
        RampStep.objects.filter(applied_at__isnull=True, experiment__status=Status.RUNNING)
        .annotate(due_at=due_at)
        .filter(due_at__lte=at)
        .order_by("experiment_id")
        .values_list("experiment__key", flat=True)
        .distinct()[:limit]
    )
    advanced = 0
    for key in keys:
        with transaction.atomic():
            experiment, before = _locked(key)
            if experiment.status != Status.RUNNING or not _apply_due_steps(experiment, at):
                continue
            Experiment.objects.filter(pk=experiment.pk).update(
                coverage=experiment.coverage, updated_at=at
            )
            _record(
                key=key,
                kind=RolloutEventType.RAMP_ADVANCED,
                actor=RAMP_ACTOR,
                before=before,
                at=at,
            )
            advanced += 1
    return advanced

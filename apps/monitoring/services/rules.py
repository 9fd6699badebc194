"""Rule changes: create, edit, enable and disable, each with its RuleEvent in one transaction.

A rule's webhook gets its own signing secret when its URL is first set (or on request): the
secret is returned once, to be shown to the person who set it, and never appears in events.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.analytics import selectors as analytics_selectors
from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.monitoring import selectors
from apps.monitoring.models import Rule, RuleEvent, RuleEventType
from apps.monitoring.validation import ModelFacts, RuleSpec, rule_problems
from apps.registry import selectors as registry_selectors
from apps.registry.models import MLModel

logger = logging.getLogger(__name__)

NAME_CONSTRAINT = "rule_unique_name_per_model"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that marks a secret, not one
_UNRECORDED = {"updated_at", "updated_by"}


def webhook_allow_private() -> bool:
    return bool(settings.KAIZEN_WEBHOOK_ALLOW_PRIVATE)


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _facts(name: str) -> tuple[ModelFacts, MLModel | None]:
    try:
        model = registry_selectors.model_get(name=name)
    except NotFound:
        return ModelFacts(exists=False), None
    facts = ModelFacts(
        exists=True, task=model.task, segment_attributes=frozenset(model.segment_attributes)
    )
    return facts, model


def rule_check(*, spec: RuleSpec, model_fixed: str | None = None) -> list[dict[str, Any]]:
    """The problems of `spec` given its model, without writing (the admin form shows them)."""
    facts, _ = _facts(spec.model)
    return rule_problems(
        spec,
        facts,
        metrics=analytics_selectors.PERFORMANCE_METRICS,
        model_fixed=model_fixed,
    )


def _validated(spec: RuleSpec, *, model_fixed: str | None) -> MLModel:
    facts, model = _facts(spec.model)
    problems = rule_problems(
        spec,
        facts,
        metrics=analytics_selectors.PERFORMANCE_METRICS,
        model_fixed=model_fixed,
    )
    if problems or model is None:
        raise ValidationFailed("The rule is invalid.", details=problems)
    return model


def _apply(rule: Rule, spec: RuleSpec) -> None:
    attribute, value = spec.segment if spec.segment is not None else ("", "")
    rule.name = spec.name
    rule.metric = spec.metric
    rule.segment_attribute = attribute
    rule.segment_value = value
    rule.window = spec.window
    rule.comparator = spec.comparator
    rule.threshold = spec.threshold
    rule.min_samples = spec.min_samples
    rule.cooldown = spec.cooldown
    rule.action = spec.action
    rule.enabled = spec.enabled
    rule.webhook_url = spec.webhook_url
    rule.open_canary = spec.open_canary


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"from": before.get(name), "to": value}
        for name, value in after.items()
        if name not in _UNRECORDED and before.get(name) != value
    }


def _record(
    *,
    rule: Rule,
    kind: RuleEventType,
    actor: str,
    diff: dict[str, Any],
    at: datetime,
) -> RuleEvent:
    return RuleEvent.objects.create(
        rule=rule,
        type=kind,
        actor=actor,
        diff=diff,
        state=selectors.rule_state(rule),
        occurred_at=at,
    )


def _name_taken(spec: RuleSpec, error: IntegrityError) -> Conflict:
    """The Conflict of a name taken by another rule of the model; other errors go on."""
    if NAME_CONSTRAINT not in str(error):
        raise error
    return Conflict(
        f"Model {spec.model!r} already has a rule named {spec.name!r}.",
        details=[{"field": "name", "message": "Choose another name."}],
    )


@transaction.atomic
def rule_create(*, spec: RuleSpec, actor: str) -> tuple[Rule, str | None]:
    """A new rule; (rule, its webhook secret when it has a webhook: show it once)."""
    model = _validated(spec, model_fixed=None)
    now = timezone.now()
    secret = _new_secret() if spec.webhook_url else ""
    rule = Rule(
        model=model,
        webhook_secret=secret,
        created_by=actor,
        created_at=now,
        updated_by=actor,
        updated_at=now,
    )
    _apply(rule, spec)
    try:
        with transaction.atomic():
            rule.save(force_insert=True)
    except IntegrityError as error:
        raise _name_taken(spec, error) from None
    diff = _diff({}, selectors.rule_state(rule))
    _record(rule=rule, kind=RuleEventType.CREATED, actor=actor, diff=diff, at=now)
    logger.info("rule.created", extra={"rule": rule.pk, "model": spec.model, "actor": actor})
    return rule, secret or None


@transaction.atomic
def rule_update(
    *, rule_id: int, spec: RuleSpec, actor: str, rotate_webhook_secret: bool = False
) -> tuple[Rule, str | None]:
    """Replace a rule's configuration (its model never changes); (rule, new secret or None).

    A change that changes nothing records nothing. A new webhook secret is made when the URL
    is set on a rule that had none, or on request; clearing the URL drops the secret.
    """
    rule = selectors.rule_locked(rule_id=rule_id)
    before = selectors.rule_state(rule)
    _validated(spec, model_fixed=rule.model.name)
    if rotate_webhook_secret and not spec.webhook_url:
        raise ValidationFailed(
            "The rule has no webhook whose secret could rotate.",
            details=[{"field": "rotate_webhook_secret", "message": "Set webhook_url first."}],
        )
    had_secret = bool(rule.webhook_secret)
    _apply(rule, spec)
    secret: str | None = None
    if not rule.webhook_url:
        rule.webhook_secret = ""
    elif rotate_webhook_secret or not had_secret:
        secret = rule.webhook_secret = _new_secret()
    diff = _diff(before, selectors.rule_state(rule))
    if secret is not None:
        # The state carries no secret; the event still says a new one was made.
        diff["webhook_secret"] = "rotated" if had_secret else "generated"
    if not diff:
        return rule, None
    now = timezone.now()
    rule.updated_at, rule.updated_by = now, actor
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError as error:
        raise _name_taken(spec, error) from None
    kind = RuleEventType.UPDATED
    if set(diff) == {"enabled"}:
        kind = RuleEventType.ENABLED if rule.enabled else RuleEventType.DISABLED
    _record(rule=rule, kind=kind, actor=actor, diff=diff, at=now)
    logger.info("rule.updated", extra={"rule": rule.pk, "fields": sorted(diff), "actor": actor})
    return rule, secret


def rule_set_enabled(*, rule_id: int, enabled: bool, actor: str) -> Rule:
    """Enable or disable a rule (the admin's actions); nothing happens if it already is."""
    rule = selectors.rule_get(rule_id=rule_id)
    spec = selectors.rule_spec(rule)
    if spec.enabled == enabled:
        return rule
    updated, _ = rule_update(rule_id=rule_id, spec=replace(spec, enabled=enabled), actor=actor)
    return updated

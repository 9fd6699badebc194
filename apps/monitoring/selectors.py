"""Reads of monitoring: rules, alerts and jobs with their joins, their JSON shapes, and the
labeled predictions the reference trainer learns from."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet
from prometheus_client.core import GaugeMetricFamily

from apps.core.errors import NotFound
from apps.core.numbers import finite_or_none
from apps.monitoring.models import (
    Alert,
    AlertAcknowledgement,
    RetrainingJob,
    RetrainingJobEvent,
    Rule,
    RuleEvent,
    RuleFailure,
)
from apps.monitoring.validation import RuleSpec, format_duration


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _int_id(raw: Any, kind: str) -> int:
    text = str(raw)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFound(f"No {kind} with id {text[:100]!r}.")
    return int(text)


def _uuid_id(raw: Any, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise NotFound(f"No {kind} with id {str(raw)[:100]!r}: ids are UUIDs.") from error


# --- rules ------------------------------------------------------------------------------------


def segment_of(rule: Rule) -> dict[str, str] | None:
    return {rule.segment_attribute: rule.segment_value} if rule.segment_attribute else None


def rule_state(rule: Rule) -> dict[str, Any]:
    """A rule as the API shows it (without its secret); the `state` of its events."""
    return {
        "id": rule.pk,
        "name": rule.name,
        "model": rule.model.name,
        "metric": rule.metric,
        "segment": segment_of(rule),
        "window": format_duration(rule.window),
        "comparator": rule.comparator,
        "threshold": finite_or_none(rule.threshold),
        "min_samples": rule.min_samples,
        "cooldown": format_duration(rule.cooldown),
        "action": rule.action,
        "enabled": rule.enabled,
        "webhook_url": rule.webhook_url or None,
        "webhook_secret_set": bool(rule.webhook_secret),
        "open_canary": rule.open_canary,
        "created_by": rule.created_by,
        "created_at": _time(rule.created_at),
        "updated_by": rule.updated_by,
        "updated_at": _time(rule.updated_at),
    }


def rule_spec(rule: Rule) -> RuleSpec:
    """The configuration of a stored rule (what a PATCH body is applied over)."""
    segment = (rule.segment_attribute, rule.segment_value) if rule.segment_attribute else None
    return RuleSpec(
        name=rule.name,
        model=rule.model.name,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=rule.threshold,
        segment=segment,
        window=rule.window,
        min_samples=rule.min_samples,
        cooldown=rule.cooldown,
        action=rule.action,
        enabled=rule.enabled,
        webhook_url=rule.webhook_url,
        open_canary=rule.open_canary,
    )


def rule_list(*, model: str | None = None, enabled: bool | None = None) -> QuerySet[Rule]:
    rows = Rule.objects.select_related("model")
    if model is not None:
        rows = rows.filter(model__name=model)
    if enabled is not None:
        rows = rows.filter(enabled=enabled)
    return rows


def rule_get(*, rule_id: Any) -> Rule:
    rule = rule_list().filter(pk=_int_id(rule_id, "rule")).first()
    if rule is None:
        raise NotFound(f"No rule with id {rule_id}.")
    return rule


def rule_locked(*, rule_id: Any) -> Rule:
    """The rule, its row locked for this transaction (its model row is not locked)."""
    rows = Rule.objects.select_for_update(of=("self",)).select_related("model")
    rule = rows.filter(pk=_int_id(rule_id, "rule")).first()
    if rule is None:
        raise NotFound(f"No rule with id {rule_id}.")
    return rule


def rule_enabled_ids() -> list[int]:
    return list(Rule.objects.filter(enabled=True).order_by("id").values_list("id", flat=True))


def rule_failures_waiting(*, at: datetime) -> set[int]:
    """Rules whose evaluation failed and whose retry time has not come yet."""
    return set(RuleFailure.objects.filter(retry_at__gt=at).values_list("rule_id", flat=True))


def rule_failure_report() -> dict[str, Any]:
    """Rules whose evaluation fails, for /readyz (each named, with its error and retry)."""
    failing = [
        {
            "rule": failure.rule_id,
            "name": failure.rule.name,
            "model": failure.rule.model.name,
            "error": failure.error,
            "attempts": failure.attempts,
            "since": failure.first_failed_at.isoformat(),
            "retry_at": failure.retry_at.isoformat(),
        }
        for failure in RuleFailure.objects.select_related("rule__model").order_by("rule_id")
    ]
    return {"failing": failing}


def rule_problems(report: dict[str, Any]) -> list[str]:
    return [
        f"rule {entry['name']!r} of model {entry['model']!r} fails to evaluate: {entry['error']}"
        for entry in report.get("failing", [])
    ]


def rule_failure_gauges() -> Iterable[GaugeMetricFamily]:
    gauge = GaugeMetricFamily("kaizen_rules_failing", "Rules whose evaluation fails")
    gauge.add_metric([], float(RuleFailure.objects.count()))
    yield gauge


def rule_history(*, rule_id: int) -> QuerySet[RuleEvent]:
    """The rule's changes, oldest first."""
    return RuleEvent.objects.filter(rule_id=rule_id).order_by("seq")


def rule_detail(*, rule_id: Any) -> dict[str, Any]:
    rule = rule_get(rule_id=rule_id)
    body = rule_state(rule)
    body["history"] = [
        {
            "id": str(event.id),
            "type": event.type,
            "actor": event.actor,
            "diff": event.diff,
            "occurred_at": _time(event.occurred_at),
        }
        for event in rule_history(rule_id=rule.pk)
    ]
    return body


def rule_event_rows() -> QuerySet[RuleEvent]:
    return RuleEvent.objects.all()


def rule_event_as_dict(event: RuleEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "rule": event.rule_id,
        "actor": event.actor,
        "diff": event.diff,
        "state": event.state,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
    }


# --- alerts -----------------------------------------------------------------------------------


def alert_rows() -> QuerySet[Alert]:
    return Alert.objects.select_related("rule", "model")


def alert_list(
    *, model: str | None = None, rule: Any = None, acknowledged: bool | None = None
) -> QuerySet[Alert]:
    rows = alert_rows().select_related("acknowledgement", "job")
    if model is not None:
        rows = rows.filter(model__name=model)
    if rule is not None:
        rows = rows.filter(rule_id=_int_id(rule, "rule"))
    if acknowledged is not None:
        rows = rows.filter(acknowledgement__isnull=not acknowledged)
    return rows


def alert_get(*, alert_id: Any) -> Alert:
    alert = alert_list().filter(pk=_uuid_id(alert_id, "alert")).first()
    if alert is None:
        raise NotFound(f"No alert with id {alert_id}.")
    return alert


def alert_event_as_dict(alert: Alert) -> dict[str, Any]:
    """The alert as it was raised (the feed's event; immutable like the row)."""
    return {
        "id": str(alert.id),
        "rule": alert.rule_id,
        "rule_name": alert.rule.name,
        "model": alert.model.name,
        "metric": alert.metric,
        "comparator": alert.comparator,
        "threshold": finite_or_none(alert.threshold),
        "observed_value": finite_or_none(alert.observed_value),
        "sample_size": alert.sample_size,
        "window": format_duration(alert.window),
        "window_start": _time(alert.window_start),
        "window_end": _time(alert.window_end),
        "segment": alert.segment,
        "action": alert.action,
        "occurred_at": _time(alert.occurred_at),
        "received_at": _time(alert.received_at),
    }


def _acknowledgement(alert: Alert) -> AlertAcknowledgement | None:
    try:
        return alert.acknowledgement
    except AlertAcknowledgement.DoesNotExist:
        return None


def _job_id(alert: Alert) -> str | None:
    try:
        return str(alert.job.pk)
    except RetrainingJob.DoesNotExist:
        return None


def alert_as_dict(alert: Alert) -> dict[str, Any]:
    """An alert with its acknowledgement and job (rows from alert_list: no extra query)."""
    body = alert_event_as_dict(alert)
    acknowledgement = _acknowledgement(alert)
    body["retraining_job"] = _job_id(alert)
    body["acknowledged"] = acknowledgement is not None
    body["acknowledged_by"] = acknowledgement.actor if acknowledgement else None
    body["acknowledged_at"] = _time(acknowledgement.occurred_at) if acknowledgement else None
    body["acknowledgement_note"] = acknowledgement.note if acknowledgement else None
    return body


def acknowledgement_rows() -> QuerySet[AlertAcknowledgement]:
    return AlertAcknowledgement.objects.all()


def acknowledgement_as_dict(event: AlertAcknowledgement) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "alert": str(event.alert_id),
        "actor": event.actor,
        "note": event.note,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
    }


def alert_latest_at(*, rule_id: int) -> datetime | None:
    """When the rule last alerted (the cooldown check)."""
    return (
        Alert.objects.filter(rule_id=rule_id)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)
        .first()
    )


# --- retraining jobs ---------------------------------------------------------------------------


def job_rows() -> QuerySet[RetrainingJob]:
    return RetrainingJob.objects.select_related("model", "rule", "result_version")


def job_list(*, model: str | None = None, status: str | None = None) -> QuerySet[RetrainingJob]:
    rows = job_rows()
    if model is not None:
        rows = rows.filter(model__name=model)
    if status is not None:
        rows = rows.filter(status=status)
    return rows


def job_get(*, job_id: Any) -> RetrainingJob:
    job = job_rows().filter(pk=_uuid_id(job_id, "retraining job")).first()
    if job is None:
        raise NotFound(f"No retraining job with id {job_id}.")
    return job


def job_locked(*, job_id: Any) -> RetrainingJob:
    rows = RetrainingJob.objects.select_for_update(of=("self",)).select_related(
        "model", "rule", "result_version"
    )
    job = rows.filter(pk=_uuid_id(job_id, "retraining job")).first()
    if job is None:
        raise NotFound(f"No retraining job with id {job_id}.")
    return job


def job_as_dict(job: RetrainingJob) -> dict[str, Any]:
    """A job as the API shows it; the `state` of its events."""
    version = job.result_version
    return {
        "id": str(job.id),
        "model": job.model.name,
        "rule": job.rule_id,
        "rule_name": job.rule.name,
        "alert": str(job.alert_id) if job.alert_id else None,
        "status": job.status,
        "metric": job.metric,
        "comparator": job.comparator,
        "threshold": finite_or_none(job.threshold),
        "observed_value": finite_or_none(job.observed_value),
        "sample_size": job.sample_size,
        "window": format_duration(job.window),
        "segment": job.segment,
        "open_canary": job.open_canary,
        "attempts": job.attempts,
        "claimed_by": job.claimed_by or None,
        "lease_expires_at": _time(job.lease_expires_at),
        "not_before": _time(job.not_before),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "error": job.error or None,
        "result_version": version.version if version is not None else None,
        "canary_experiment": job.canary_experiment or None,
        "canary_error": job.canary_error or None,
        "created_at": _time(job.created_at),
        "blocks_until": _time(job.blocks_until),
        "updated_at": _time(job.updated_at),
    }


def job_history(*, job_id: uuid.UUID) -> QuerySet[RetrainingJobEvent]:
    return RetrainingJobEvent.objects.filter(job_id=job_id).order_by("seq")


def job_detail(*, job_id: Any) -> dict[str, Any]:
    job = job_get(job_id=job_id)
    body = job_as_dict(job)
    body["history"] = [
        {
            "id": str(event.id),
            "type": event.type,
            "actor": event.actor,
            "error": event.error or None,
            "occurred_at": _time(event.occurred_at),
        }
        for event in job_history(job_id=job.pk)
    ]
    return body


def job_event_rows() -> QuerySet[RetrainingJobEvent]:
    return RetrainingJobEvent.objects.all()


def job_event_as_dict(event: RetrainingJobEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "job": str(event.job_id),
        "actor": event.actor,
        "error": event.error or None,
        "state": event.state,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
    }


# --- training data -----------------------------------------------------------------------------

# The truth, as the performance projection takes it: the latest `label` feedback of a
# classifier's prediction, the latest numeric `value` feedback (any metric) of a regression
# model's, latest by (occurred_at, seq).


@dataclass(frozen=True)
class TrainingRow:
    features: Mapping[str, Any]
    truth: str | float
    occurred_at: datetime


def _table(label: str) -> str:
    return str(apps.get_model(label)._meta.db_table)


def labeled_predictions(
    *, version_ids: list[int], regression: bool, limit: int
) -> list[TrainingRow]:
    """The latest `limit` predictions (by arrival) of these versions that have features and
    truth, each with its latest truth; newest first.

    Walks the log backwards on its (xid, seq) index, so it reads recent rows only.
    """
    if not version_ids:
        return []
    truth = "f.value" if regression else "f.label"
    truth_filter = "f.value IS NOT NULL" if regression else "f.label IS NOT NULL"
    sql = (
        f"SELECT p.features, t.truth, p.occurred_at FROM {_table('ingest.Prediction')} p "  # noqa: S608 - table names from the model registry
        f"JOIN LATERAL (SELECT {truth} AS truth FROM {_table('ingest.Feedback')} f "
        f"WHERE f.prediction_id = p.id AND {truth_filter} "
        "ORDER BY f.occurred_at DESC, f.seq DESC LIMIT 1) t ON true "
        "WHERE p.model_version_id = ANY(%(versions)s) AND p.features IS NOT NULL "
        "AND p.error IS NULL ORDER BY p.xid DESC, p.seq DESC LIMIT %(limit)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"versions": version_ids, "limit": limit})
        rows = cursor.fetchall()
    return [
        TrainingRow(features=features, truth=value, occurred_at=occurred_at)
        for features, value, occurred_at in rows
    ]

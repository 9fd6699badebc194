"""Rule evaluation: after each aggregation, every enabled rule is judged on its window.

The window of a rule of `window` = n hours is the last n hour buckets ending with the
current one: [H + 1h − n·1h, H + 1h) where H is the start of the current UTC hour. The
current hour is still filling, so a rule reacts within one aggregation run of the figures
crossing its threshold; `min_samples` keeps it from judging a window with too little data.
Figures come from apps.analytics' performance projection, over every version of the model.

Each rule is judged in its own short transaction holding its row lock, so two evaluators
running at once (beat and POST /aggregations/run) judge it one after the other: the second
sees the first's alert and stays quiet for the cooldown. A breach appends an Alert; a rule
that alerted less than `cooldown` ago does not alert again; with action `retrain` the alert
opens a retraining job, which the database refuses (exclusion constraint) when the rule's
last job is younger than its cooldown. Webhooks and trainers are enqueued on commit; a
broker that is down is logged and never fails the aggregation (recovery re-enqueues jobs).
"""

from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.analytics import selectors as analytics_selectors
from apps.core import backoff
from apps.core.errors import describe_error
from apps.monitoring import selectors
from apps.monitoring.models import (
    Action,
    Alert,
    JobEventType,
    RetrainingJob,
    Rule,
    RuleFailure,
)
from apps.monitoring.services.dispatch import enqueue_on_commit
from apps.monitoring.services.retraining import JOB_CONSTRAINT, record_job_event

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:rules"
# A rule whose evaluation fails waits this long before the next try, doubling, up to the cap.
FAILURE_BACKOFF_SECONDS = 30
FAILURE_BACKOFF_MAX_SECONDS = 3600
DELIVER_TASK = "monitoring.notifications.deliver"
RUN_TASK = "monitoring.retraining.run"

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


def evaluation_window(*, window: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a rule's window at `now`: whole hours, ending with the current one."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    end += timedelta(hours=1)
    return end - window, end


def is_breach(*, value: float, comparator: str, threshold: float) -> bool:
    return COMPARATORS[comparator](value, threshold)


@dataclass(frozen=True)
class Evaluation:
    """What judging one rule did: `outcome` is one of the report's keys."""

    outcome: str
    value: float | None = None
    sample_size: int = 0
    alert: Alert | None = None
    job: RetrainingJob | None = None


@transaction.atomic
def rule_evaluate(*, rule_id: int, now: datetime | None = None) -> Evaluation:
    """Judge one rule now: quiet, too few samples, cooling down, or an alert (and a job)."""
    at = now or timezone.now()
    rule = Rule.objects.select_for_update(of=("self",)).select_related("model")
    locked = rule.filter(pk=rule_id, enabled=True).first()
    if locked is None:
        return Evaluation("disabled")
    start, end = evaluation_window(window=locked.window, now=at)
    value, samples = analytics_selectors.performance_metric_value(
        model=locked.model.name,
        metric=locked.metric,
        start=start,
        end=end,
        segment=selectors.segment_of(locked),
    )
    if value is not None and not math.isfinite(value):
        # Never stored in an alert (an immutable row no JSON answer could show).
        raise ValueError(f"{locked.metric} over the window is not a finite number")
    if value is None or samples < locked.min_samples:
        return Evaluation("insufficient", value, samples)
    if not is_breach(value=value, comparator=locked.comparator, threshold=locked.threshold):
        return Evaluation("quiet", value, samples)
    last = selectors.alert_latest_at(rule_id=locked.pk)
    if last is not None and at < last + locked.cooldown:
        return Evaluation("cooling_down", value, samples)
    alert = Alert.objects.create(
        rule=locked,
        model=locked.model,
        metric=locked.metric,
        comparator=locked.comparator,
        threshold=locked.threshold,
        observed_value=value,
        sample_size=samples,
        window=locked.window,
        window_start=start,
        window_end=end,
        segment=selectors.segment_of(locked),
        action=locked.action,
        occurred_at=at,
    )
    logger.info("alert.raised", extra={"rule": locked.pk, "alert": str(alert.id), "value": value})
    if locked.webhook_url:
        enqueue_on_commit(DELIVER_TASK, str(alert.id))
    job = _open_job(locked, alert, at) if locked.action == Action.RETRAIN else None
    return Evaluation("alerted", value, samples, alert=alert, job=job)


def _open_job(rule: Rule, alert: Alert, at: datetime) -> RetrainingJob | None:
    """A queued job for the alert, unless the rule's last job is younger than its cooldown."""
    try:
        with transaction.atomic():
            job = RetrainingJob.objects.create(
                model=rule.model,
                rule=rule,
                alert=alert,
                metric=alert.metric,
                comparator=alert.comparator,
                threshold=alert.threshold,
                observed_value=alert.observed_value,
                sample_size=alert.sample_size,
                window=alert.window,
                segment=alert.segment,
                open_canary=rule.open_canary,
                created_at=at,
                blocks_until=at + rule.cooldown,
                updated_at=at,
            )
    except IntegrityError as error:
        if JOB_CONSTRAINT not in str(error):
            raise
        logger.info("retraining_job.cooling_down", extra={"rule": rule.pk})
        return None
    job.rule, job.model = rule, rule.model
    record_job_event(job=job, kind=JobEventType.QUEUED, actor=SYSTEM_ACTOR, at=at)
    enqueue_on_commit(RUN_TASK, str(job.id), only_with_trainer=True)
    logger.info("retraining_job.queued", extra={"rule": rule.pk, "job": str(job.id)})
    return job


def rules_evaluate(*, now: datetime | None = None) -> dict[str, Any]:
    """Judge every enabled rule once; counts by outcome (the aggregation report's `rules`).

    A rule whose evaluation fails is recorded (RuleFailure: its error, attempts, and when it
    is tried again, the wait doubling each time), counted in `errors`, and logged in full
    on its 1st, 2nd, 4th, 8th… failure in a row; the others still run. A failing rule is
    skipped until its retry time (`backing_off`); a good evaluation clears its record.
    """
    at = now or timezone.now()
    report: Counter[str] = Counter()
    waiting = selectors.rule_failures_waiting(at=at)
    for rule_id in selectors.rule_enabled_ids():
        if rule_id in waiting:
            report["backing_off"] += 1
            continue
        try:
            evaluation = rule_evaluate(rule_id=rule_id, now=at)
        except Exception as error:
            _record_failure(rule_id, error, at)
            report["errors"] += 1
            continue
        RuleFailure.objects.filter(rule_id=rule_id).delete()
        if evaluation.outcome == "disabled":
            continue  # disabled between the listing and its lock
        report["evaluated"] += 1
        report[evaluation.outcome] += 1
        if evaluation.job is not None:
            report["jobs"] += 1
    keys = (
        "evaluated",
        "alerted",
        "jobs",
        "quiet",
        "insufficient",
        "cooling_down",
        "errors",
        "backing_off",
    )
    return {key: report[key] for key in keys}


def _record_failure(rule_id: int, error: Exception, at: datetime) -> None:
    failure = RuleFailure.objects.filter(rule_id=rule_id).first()
    attempts = failure.attempts + 1 if failure else 1
    retry_at = at + timedelta(
        seconds=backoff.backoff_seconds(
            attempts, base=FAILURE_BACKOFF_SECONDS, cap=FAILURE_BACKOFF_MAX_SECONDS
        )
    )
    RuleFailure.objects.update_or_create(
        rule_id=rule_id,
        defaults={
            "error": describe_error(error),
            "attempts": attempts,
            "last_failed_at": at,
            "retry_at": retry_at,
        },
        create_defaults={
            "error": describe_error(error),
            "attempts": attempts,
            "first_failed_at": at,
            "last_failed_at": at,
            "retry_at": retry_at,
        },
    )
    extra = {"rule": rule_id, "attempts": attempts, "error": describe_error(error)}
    if backoff.worth_logging(attempts):
        logger.error("rule.evaluation_failed", extra=extra, exc_info=error)
    else:
        logger.warning("rule.evaluation_failed_again", extra=extra)

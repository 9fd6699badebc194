"""Rule evaluation after aggregation: breaches, min_samples, cooldown, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction

from apps.analytics import services as analytics_services
from apps.monitoring import services
from apps.monitoring.models import Alert, JobEventType, JobStatus, RetrainingJob
from apps.monitoring.services.evaluation import evaluation_window, is_breach
from apps.registry import services as registry_services
from tests.monitoring.conftest import ACTOR, NOW, Traffic, hours_ago, make_churn, make_rule

EMPTY_REPORT = {
    "evaluated": 0,
    "alerted": 0,
    "jobs": 0,
    "quiet": 0,
    "insufficient": 0,
    "cooling_down": 0,
    "errors": 0,
}


def report(**counts: int) -> dict[str, int]:
    return {**EMPTY_REPORT, **counts}


# --- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "window", "start", "end"),
    [
        (
            datetime(2026, 11, 26, 10, 17, 3, tzinfo=UTC),
            timedelta(hours=1),
            datetime(2026, 11, 26, 10, tzinfo=UTC),
            datetime(2026, 11, 26, 11, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC),
            timedelta(hours=3),
            datetime(2026, 11, 26, 8, tzinfo=UTC),
            datetime(2026, 11, 26, 11, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC),
            timedelta(days=1),
            datetime(2026, 11, 26, 0, tzinfo=UTC),
            datetime(2026, 11, 27, 0, tzinfo=UTC),
        ),
    ],
)
def test_evaluation_window__any_moment__whole_hours_ending_with_the_current_one(
    now, window, start, end
):
    # When / Then
    assert evaluation_window(window=window, now=now) == (start, end)


@pytest.mark.parametrize(
    ("value", "comparator", "threshold", "expected"),
    [
        (0.79, "lt", 0.8, True),
        (0.8, "lt", 0.8, False),
        (0.8, "lte", 0.8, True),
        (0.81, "lte", 0.8, False),
        (0.81, "gt", 0.8, True),
        (0.8, "gt", 0.8, False),
        (0.8, "gte", 0.8, True),
        (0.79, "gte", 0.8, False),
    ],
)
def test_is_breach__each_comparator__strict_or_not_as_named(value, comparator, threshold, expected):
    assert is_breach(value=value, comparator=comparator, threshold=threshold) is expected


# --- against the projection ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_aggregation__accuracy_falls_in_de__one_alert_and_one_job_while_fr_stays_quiet(broker):
    # Given: rules on DE and FR; DE at 50% accuracy, FR at 100%, 250 labeled each
    make_churn()
    de, _ = make_rule()
    fr, _ = make_rule(name="fr-accuracy", segment={"country": "FR"})
    traffic = Traffic()
    traffic.add(country="DE", count=250, correct=125)
    traffic.add(country="FR", count=250, correct=250)
    traffic.post()
    # When: the aggregation runs, then runs again
    first = analytics_services.aggregations_run()
    second = analytics_services.aggregations_run()
    # Then: DE alerted once and opened one job; FR stayed quiet; the rerun cooled down
    assert first["rules"] == report(evaluated=2, alerted=1, jobs=1, quiet=1)
    assert second["rules"] == report(evaluated=2, quiet=1, cooling_down=1)
    alert = Alert.objects.get()
    assert (alert.rule_id, alert.metric, alert.observed_value, alert.sample_size) == (
        de.pk,
        "accuracy",
        0.5,
        250,
    )
    assert (alert.threshold, alert.comparator, alert.segment) == (0.8, "lt", {"country": "DE"})
    assert alert.window == timedelta(hours=2)
    assert alert.window_end - alert.window_start == timedelta(hours=2)
    job = RetrainingJob.objects.get()
    assert (job.rule_id, job.alert_id, job.status, job.observed_value) == (
        de.pk,
        alert.pk,
        JobStatus.QUEUED,
        0.5,
    )
    assert (job.sample_size, job.segment, job.attempts) == (250, {"country": "DE"}, 0)
    assert job.blocks_until - job.created_at == timedelta(hours=6)
    assert list(job.events.values_list("type", flat=True)) == [JobEventType.QUEUED]
    assert not Alert.objects.filter(rule=fr).exists()
    # and one training message waits on the retraining queue (no webhook configured)
    assert (broker.llen("retraining"), broker.llen("notifications")) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_aggregation__fewer_labeled_predictions_than_min_samples__nothing_fires(broker):
    # Given: DE at 0% accuracy, but 199 labeled predictions for min_samples 200
    make_churn()
    make_rule()
    traffic = Traffic()
    traffic.add(country="DE", count=199, correct=0)
    traffic.post()
    # When
    result = analytics_services.aggregations_run()
    # Then
    assert result["rules"] == report(evaluated=1, insufficient=1)
    assert (Alert.objects.count(), RetrainingJob.objects.count()) == (0, 0)
    assert broker.llen("retraining") == 0


@pytest.mark.django_db(transaction=True)
def test_evaluate__within_and_after_cooldown__quiet_then_alerts_and_opens_a_second_job(broker):
    # Given: a breach an hour ago, a 24h window and a 6h cooldown
    make_churn()
    rule, _ = make_rule(window="24h")
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=20, at=hours_ago(1))
    traffic.post()
    analytics_services.aggregations_run()
    assert Alert.objects.count() == 1
    # When: judged again 1h later, then 6h and 1s after the first alert
    first = Alert.objects.get()
    later = services.rule_evaluate(rule_id=rule.pk, now=first.occurred_at + timedelta(hours=1))
    after = services.rule_evaluate(
        rule_id=rule.pk, now=first.occurred_at + timedelta(hours=6, seconds=1)
    )
    # Then
    assert later.outcome == "cooling_down"
    assert (after.outcome, after.value, after.sample_size) == ("alerted", 0.1, 200)
    assert Alert.objects.count() == 2
    assert RetrainingJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_evaluate__two_evaluators_at_once__one_alert_and_one_job(broker):
    # Given: breaching figures folded before the rule exists, then the rule, committed
    make_churn()
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=0)
    traffic.post()
    analytics_services.aggregations_run()
    fresh, _ = make_rule()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(services.rule_evaluate(rule_id=fresh.pk, now=NOW).outcome)
        except BaseException as error:  # reported below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    # When: two threads (two connections) judge it at the same moment
    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then: one alerted and opened the job, the other waited for its lock and cooled down
    assert errors == []
    assert sorted(outcomes) == ["alerted", "cooling_down"]
    assert Alert.objects.filter(rule=fresh).count() == 1
    assert RetrainingJob.objects.filter(rule=fresh).count() == 1


@pytest.mark.django_db(transaction=True)
def test_job_constraint__two_overlapping_jobs_inserted_at_once__the_database_refuses_one():
    # Given: a rule and two connections that each insert a job in its cooldown, at once
    make_churn()
    rule, _ = make_rule()
    barrier = threading.Barrier(2)
    results: list[str] = []

    def insert(offset: int) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                created = NOW + timedelta(minutes=offset)
                RetrainingJob.objects.create(**_job_fields(rule, created))
            results.append("inserted")
        except IntegrityError as error:
            results.append(
                "refused" if "retrainingjob_one_per_rule_cooldown" in str(error) else "?"
            )
        except OperationalError as error:
            # Two inserts checking the constraint against each other at once: PostgreSQL
            # aborts one as a deadlock (evaluation avoids this by holding the rule's lock).
            results.append("refused" if "deadlock detected" in str(error) else "?")
        finally:
            connection.close()

    # When
    threads = [threading.Thread(target=insert, args=(offset,)) for offset in (0, 30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then
    assert sorted(results) == ["inserted", "refused"]
    assert RetrainingJob.objects.filter(rule=rule).count() == 1


def _job_fields(rule: Any, created: datetime) -> dict[str, Any]:
    return {
        "model": rule.model,
        "rule": rule,
        "metric": rule.metric,
        "comparator": rule.comparator,
        "threshold": rule.threshold,
        "observed_value": 0.1,
        "sample_size": 500,
        "window": rule.window,
        "created_at": created,
        "blocks_until": created + rule.cooldown,
    }


@pytest.mark.django_db
def test_job_constraint__a_job_after_the_cooldown__accepted():
    # Given: a job of the rule, and one whose range starts where the first one's ends
    make_churn()
    rule, _ = make_rule()
    RetrainingJob.objects.create(**_job_fields(rule, NOW))
    # When
    RetrainingJob.objects.create(**_job_fields(rule, NOW + rule.cooldown))
    # Then
    assert RetrainingJob.objects.filter(rule=rule).count() == 2


@pytest.mark.django_db(transaction=True)
def test_aggregation__one_rule_cannot_be_judged__counted_as_error_and_others_still_run(broker):
    # Given: a plan rule whose attribute the model then stops breaking down by, and a DE rule
    make_churn()
    make_rule(name="plan-accuracy", segment={"plan": "pro"})
    make_rule()
    registry_services.model_update(name="churn", segment_attributes=["country"], actor=ACTOR)
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=200)
    traffic.post()
    # When
    result = analytics_services.aggregations_run()
    # Then
    assert result["rules"] == report(evaluated=1, quiet=1, errors=1)


@pytest.mark.django_db(transaction=True)
def test_aggregation__disabled_rule__not_judged(broker):
    # Given
    make_churn()
    rule, _ = make_rule()
    services.rule_set_enabled(rule_id=rule.pk, enabled=False, actor=ACTOR)
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=0)
    traffic.post()
    # When
    result = analytics_services.aggregations_run()
    # Then
    assert result["rules"] == report()
    assert Alert.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_evaluate__action_alert_with_webhook__alert_and_a_delivery_message_but_no_job(broker):
    # Given
    make_churn()
    rule, secret = make_rule(action="alert", webhook_url="http://127.0.0.1:9/hook")
    assert secret is not None
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=0)
    traffic.post()
    # When
    result = analytics_services.aggregations_run()
    # Then
    assert result["rules"] == report(evaluated=1, alerted=1)
    assert (Alert.objects.count(), RetrainingJob.objects.count()) == (1, 0)
    assert (broker.llen("notifications"), broker.llen("retraining")) == (1, 0)

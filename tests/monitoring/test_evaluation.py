"""Rule evaluation after aggregation: breaches, min_samples, cooldown, concurrency."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.analytics import services as analytics_services
from apps.monitoring import services
from apps.monitoring.models import Alert, JobEventType, JobStatus, RetrainingJob, RuleFailure
from apps.monitoring.services.evaluation import evaluation_window, is_breach
from apps.registry import services as registry_services
from tests.conftest import strict_json
from tests.monitoring.conftest import ACTOR, NOW, Traffic, hours_ago, make_churn, make_rule

EMPTY_REPORT = {
    "evaluated": 0,
    "alerted": 0,
    "jobs": 0,
    "quiet": 0,
    "insufficient": 0,
    "cooling_down": 0,
    "errors": 0,
    "backing_off": 0,
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


@pytest.mark.django_db(transaction=True)
def test_aggregation__rule_keeps_failing__recorded_backs_off_shown_in_readyz_then_recovers(
    broker, make_client
):
    # Given a rule that cannot be judged (its segment attribute was dropped from the model)
    # beside one that can, and traffic that breaches the second
    make_churn()
    broken, _ = make_rule(name="plan-accuracy", segment={"plan": "pro"})
    make_rule()
    registry_services.model_update(name="churn", segment_attributes=["country"], actor=ACTOR)
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=0)
    traffic.post()
    # When the aggregation runs
    first = analytics_services.aggregations_run()
    # Then the good rule alerts, the broken one is recorded with its error and a retry time
    assert first["rules"] == report(evaluated=1, alerted=1, jobs=1, errors=1)
    failure = RuleFailure.objects.get(rule=broken)
    assert failure.attempts == 1
    assert failure.retry_at > timezone.now()
    # And /readyz is degraded, naming the rule, and /metrics counts it
    client = make_client("read")
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"
    assert ready["rules"]["failing"][0]["name"] == "plan-accuracy"
    assert any("'plan-accuracy'" in problem for problem in ready["problems"])
    assert "kaizen_rules_failing 1.0" in client.get("/metrics").content.decode()
    # When the aggregation runs again before its retry time
    second = analytics_services.aggregations_run()
    # Then the broken rule is not judged again (no new error), the other still is
    assert second["rules"] == report(evaluated=1, cooling_down=1, backing_off=1)
    assert RuleFailure.objects.get(rule=broken).attempts == 1
    # When its retry time has come and it still fails
    RuleFailure.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    analytics_services.aggregations_run()
    # Then the wait doubles
    failure = RuleFailure.objects.get(rule=broken)
    assert failure.attempts == 2
    assert failure.retry_at - failure.last_failed_at == timedelta(seconds=60)
    # When the cause is gone and its time comes
    registry_services.model_update(
        name="churn", segment_attributes=["country", "plan"], actor=ACTOR
    )
    RuleFailure.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    third = analytics_services.aggregations_run()
    # Then it is judged again, its record is gone and /readyz is ready
    assert third["rules"]["errors"] == 0
    assert third["rules"]["evaluated"] == 2
    assert not RuleFailure.objects.exists()
    assert client.get("/readyz").json()["status"] == "ready"


def store_raw_prediction(model: str, **columns: Any) -> str:
    """A prediction row inserted around the API's bounds (as an old database may hold)."""
    from apps.registry.models import ModelVersion

    identifier = str(uuid.uuid4())
    version = ModelVersion.objects.get(model__name=model, version="1")
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO ingest_prediction (id, occurred_at, model_version_id, actor, "  # noqa: S608 - names of this test
            f"content_hash, {names}) VALUES (%s, %s, %s, 'tests', %s, {marks})",
            [identifier, NOW, version.pk, b"0" * 16, *columns.values()],
        )
    return identifier


@pytest.mark.django_db(transaction=True)
def test_aggregation__poisoned_events_of_another_model__rule_still_fires_and_reads_work(
    broker, make_client
):
    # Given a DE accuracy rule on churn, and another model whose stored events hold numbers
    # no projection could sum (written around the API's bounds)
    make_churn()
    make_rule()
    other, _ = registry_services.model_create(
        name="fraud", task="regression", segment_attributes=[], actor=ACTOR
    )
    registry_services.model_version_register(model="fraud", version="1", actor=ACTOR)
    for columns in (
        {"output_value": 1e308, "latency_ms": float("inf")},
        {"output_value": -1e308, "latency_ms": float("nan")},
        {"output_score": float("inf"), "output_value": 1.0},
    ):
        store_raw_prediction("fraud", **columns)
    make_rule(
        name="fraud-mae",
        model="fraud",
        metric="mae",
        segment=None,
        threshold=10.0,
        comparator="gt",
        min_samples=1,
    )
    # And churn's accuracy collapses in DE
    traffic = Traffic()
    traffic.add(country="DE", count=220, correct=0)
    traffic.post()
    # When the aggregation runs
    result = analytics_services.aggregations_run()
    # Then churn's rule fires and opens a job; fraud's has no data to judge
    assert result["rules"] == report(evaluated=2, alerted=1, jobs=1, insufficient=1)
    assert RetrainingJob.objects.get().rule.name == "de-accuracy"
    # And every read of the loop answers JSON without NaN or Infinity
    client = make_client("read")
    for path in (
        "/api/v1/alerts",
        "/api/v1/retraining-jobs",
        "/api/v1/events?limit=1000",
        "/api/v1/models/fraud/performance",
        "/readyz",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:300])
        strict_json(response.content)


@pytest.mark.django_db(transaction=True)
def test_alerts__stored_observed_value_not_finite__listed_as_null(broker, make_client):
    # Given an alert stored with an infinite observed value (as an old database may hold)
    make_churn()
    rule, _ = make_rule()
    Alert.objects.create(
        rule=rule,
        model=rule.model,
        metric="accuracy",
        comparator="lt",
        threshold=0.8,
        observed_value=float("inf"),
        sample_size=10,
        window=timedelta(hours=2),
        window_start=NOW - timedelta(hours=2),
        window_end=NOW,
        segment={"country": "DE"},
        action="alert",
        occurred_at=NOW,
    )
    # When the alerts and the feed are read
    client = make_client("read")
    alerts = client.get("/api/v1/alerts")
    feed = client.get("/api/v1/events?limit=1000")
    # Then both answer, the value shown as null
    assert alerts.status_code == 200 and feed.status_code == 200
    assert strict_json(alerts.content)["results"][0]["observed_value"] is None
    strict_json(feed.content)

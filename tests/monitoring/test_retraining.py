"""The retraining queue: the full loop, retries, permanent failures, leases and recovery."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.analytics import services as analytics_services
from apps.core.errors import Conflict, ValidationFailed
from apps.experiments.models import Experiment
from apps.monitoring import services
from apps.monitoring.models import (
    Alert,
    JobEventType,
    JobStatus,
    RetrainingJob,
    RetrainingJobEvent,
    Rule,
)
from apps.monitoring.services import JobNotHeld, PermanentTrainingError
from apps.registry.models import ModelVersion
from tests.monitoring.conftest import NOW, Traffic, make_churn, make_rule

WORKER = "worker:tests"
TRAINERS = "tests.monitoring.test_retraining"


def raising_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    raise RuntimeError("the feature store timed out")


def permanent_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    raise PermanentTrainingError("no labeled data")


def fixed_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    return {"version": "7", "metrics": {"holdout_accuracy": 0.9}, "tags": {"job": str(job.id)}}


def taken_version_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    # Version 1 is registered with other (empty) content: the registry answers Conflict.
    return {"version": "1", "metrics": {"holdout_accuracy": 0.9}}


def invalid_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    return {"version": "8", "metrics": {"holdout_accuracy": "high"}}


def queued_job(rule: Rule, **fields: Any) -> RetrainingJob:
    """A queued job of `rule`, as evaluation opens it (set-up through the ORM)."""
    values: dict[str, Any] = {
        "model": rule.model,
        "rule": rule,
        "metric": rule.metric,
        "comparator": rule.comparator,
        "threshold": rule.threshold,
        "observed_value": 0.5,
        "sample_size": 250,
        "window": rule.window,
        "segment": {"country": "DE"},
        "open_canary": rule.open_canary,
        "created_at": NOW,
        "blocks_until": NOW + rule.cooldown,
    }
    values.update(fields)
    return RetrainingJob.objects.create(**values)


def event_types(job: RetrainingJob) -> list[str]:
    return list(
        RetrainingJobEvent.objects.filter(job=job).order_by("seq").values_list("type", flat=True)
    )


@pytest.fixture
def rule(churn) -> Rule:
    made, _ = make_rule()
    return made


# --- the full loop ---


@pytest.mark.django_db(transaction=True)
def test_loop__accuracy_falls__reference_trainer_registers_a_version_and_opens_the_canary(
    broker, settings
):
    # Given: a retrain rule with open_canary; DE accuracy 50% on data whose truth follows
    # the features; the aggregation opens a job
    settings.KAIZEN_TRAINER = "apps.monitoring.trainers.reference_trainer"
    make_churn()
    rule, _ = make_rule(open_canary=True)
    traffic = Traffic()
    traffic.add(country="DE", count=250, correct=125)
    traffic.add(country="FR", count=150, correct=150)
    traffic.post()
    analytics_services.aggregations_run()
    job = RetrainingJob.objects.get()
    # When: a worker runs it
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then: the job succeeded with version 3 (above 1 and 2), registered with its figures
    job.refresh_from_db()
    assert (result.outcome, job.status, job.attempts, job.error) == (
        "succeeded",
        JobStatus.SUCCEEDED,
        1,
        "",
    )
    version = ModelVersion.objects.get(model__name="churn", version="3")
    assert job.result_version == version
    assert version.metrics["training_rows"] + version.metrics["holdout_rows"] == 400
    assert version.metrics["holdout_rows"] == 80
    assert version.metrics["holdout_accuracy"] >= 0.9
    assert 0.0 <= version.metrics["holdout_f1_macro"] <= 1.0
    assert sorted(feature["name"] for feature in version.features) == [
        "active",
        "plan",
        "tenure_days",
    ]
    assert sum(feature["importance"] for feature in version.features) == pytest.approx(1.0)
    assert version.features[0]["name"] == "tenure_days"  # the one the truth follows
    assert version.hyperparameters["algorithm"] == "LogisticRegression"
    assert version.tags["training_rows"] == 400
    assert version.tags["retraining_job"] == str(job.pk)
    assert version.tags["training_data_start"] <= version.tags["training_data_end"]
    start, end = version.tags["training_data_start"], version.tags["training_data_end"]
    assert version.dataset_versions == [
        {"name": "churn/labeled-predictions", "version": f"{start}..{end}"}
    ]
    assert version.created_by == WORKER
    # and the canary runs: control on production (1), canary on 3, 10% coverage, ramped
    experiment = Experiment.objects.get(key=job.canary_experiment)
    assert (experiment.status, experiment.coverage, experiment.model.name) == (
        "running",
        0.1,
        "churn",
    )
    assert [(v.key, v.model_version.version, v.weight) for v in experiment.variants.all()] == [
        ("control", "1", 0.5),
        ("canary", "3", 0.5),
    ]
    assert [(step.coverage, step.after) for step in experiment.ramp.all()] == [
        (0.1, timedelta(0)),
        (0.25, timedelta(hours=24)),
        (0.5, timedelta(hours=48)),
    ]
    assert event_types(job) == [
        JobEventType.QUEUED,
        JobEventType.STARTED,
        JobEventType.SUCCEEDED,
    ]
    assert rule.pk == job.rule_id


@pytest.mark.django_db
def test_reference_trainer__regression_model__ridge_with_mae_and_rmse(settings):
    # Given: a regression model whose truth is twice a feature, posted with value feedback
    from apps.ingest import services as ingest_services
    from apps.registry import services as registry_services

    registry_services.model_create(name="price", task="regression", actor="tests")
    registry_services.model_version_register(model="price", version="1", actor="tests")
    predictions, feedback = [], []
    for number in range(50):
        prediction_id = f"00000000-0000-4000-8000-{number:012d}"
        predictions.append(
            {
                "id": prediction_id,
                "model": "price",
                "model_version": "1",
                "features": {"size": number},
                "output": {"value": 1.0},
                "occurred_at": NOW.isoformat(),
            }
        )
        feedback.append(
            {
                "id": f"00000000-0000-4000-9000-{number:012d}",
                "prediction_id": prediction_id,
                "metric": "price",
                "value": 2.0 * number,
                "occurred_at": NOW.isoformat(),
            }
        )
    ingest_services.predictions_ingest(body=json.dumps({"events": predictions}).encode(), actor="t")
    ingest_services.feedback_ingest(body=json.dumps({"events": feedback}).encode(), actor="t")
    price_rule, _ = make_rule(
        name="mae", model="price", metric="mae", segment=None, comparator="gt"
    )
    job = queued_job(price_rule, segment=None)
    # When
    from apps.monitoring.trainers import reference_trainer

    payload = reference_trainer(job)
    # Then: a ridge fit of a linear truth is near exact on the holdout
    assert payload["version"] == "2"
    assert payload["hyperparameters"]["algorithm"] == "Ridge"
    assert payload["metrics"]["holdout_rows"] == 10
    assert payload["metrics"]["holdout_mae"] < 2.0
    assert payload["metrics"]["holdout_rmse"] >= payload["metrics"]["holdout_mae"]
    assert payload["features"] == [{"name": "size", "importance": 1.0}]


# --- failures and retries ---


@pytest.mark.django_db
def test_run__trainer_raises_every_time__failed_with_its_error_after_max_attempts(rule, settings):
    # Given: three attempts allowed and a trainer that always raises
    settings.KAIZEN_TRAINER = f"{TRAINERS}.raising_trainer"
    settings.KAIZEN_RETRAINING_MAX_ATTEMPTS = 3
    settings.KAIZEN_RETRAINING_BACKOFF_SECONDS = 60
    job = queued_job(rule)
    # When: the worker runs it three times (the retries the first two failures schedule)
    outcomes = []
    delays = []
    for _ in range(3):
        outcomes.append(services.retraining_job_run(job_id=str(job.pk), worker=WORKER).outcome)
        job.refresh_from_db()
        if job.not_before is not None:
            delays.append(round((job.not_before - job.updated_at).total_seconds()))
    # Then: queued twice with backoff 60s then 120s, then failed for good with the error
    assert outcomes == ["queued", "queued", "failed"]
    assert delays == [60, 120]
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert job.error == "RuntimeError: the feature store timed out"
    assert job.finished_at is not None and job.lease_expires_at is None
    assert event_types(job) == [
        JobEventType.STARTED,
        JobEventType.REQUEUED,
        JobEventType.STARTED,
        JobEventType.REQUEUED,
        JobEventType.STARTED,
        JobEventType.FAILED,
    ]
    errors = RetrainingJobEvent.objects.filter(job=job).exclude(error="").values_list("error")
    assert {error for (error,) in errors} == {"RuntimeError: the feature store timed out"}
    # and a fourth run changes nothing
    assert services.retraining_job_run(job_id=str(job.pk), worker=WORKER).outcome == "skipped"
    assert len(event_types(job)) == 6


@pytest.mark.django_db(transaction=True)
def test_run__transient_failure__the_retry_is_sent_to_the_retraining_queue_with_a_delay(
    broker, settings
):
    # Given
    settings.KAIZEN_TRAINER = f"{TRAINERS}.raising_trainer"
    make_churn()
    made, _ = make_rule()
    job = queued_job(made)
    # When
    services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then: one message for the job, due later (an eta), on the retraining queue
    assert broker.llen("retraining") == 1
    message = json.loads(broker.lindex("retraining", 0))
    assert message["headers"]["task"] == "monitoring.retraining.run"
    assert str(job.pk) in message["headers"]["argsrepr"]
    assert message["headers"]["eta"] is not None


@pytest.mark.django_db
def test_run__permanent_training_error__failed_after_one_attempt(rule, settings):
    # Given
    settings.KAIZEN_TRAINER = f"{TRAINERS}.permanent_trainer"
    job = queued_job(rule)
    # When
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert (result.outcome, job.status, job.attempts) == ("failed", JobStatus.FAILED, 1)
    assert job.error == "PermanentTrainingError: no labeled data"


@pytest.mark.django_db
def test_run__reference_trainer_with_too_little_data__failed_at_once(rule, settings):
    # Given: no labeled prediction at all
    settings.KAIZEN_TRAINER = "apps.monitoring.trainers.reference_trainer"
    job = queued_job(rule)
    # When
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert (result.outcome, job.attempts) == ("failed", 1)
    assert job.error == (
        "PermanentTrainingError: 0 labeled predictions with features; the reference trainer "
        "needs at least 20."
    )


@pytest.mark.django_db
def test_run__trainer_picks_a_taken_version__requeued_and_nothing_registered(rule, settings):
    # Given
    settings.KAIZEN_TRAINER = f"{TRAINERS}.taken_version_trainer"
    job = queued_job(rule)
    versions = ModelVersion.objects.count()
    # When
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert (result.outcome, job.status, job.attempts) == ("queued", JobStatus.QUEUED, 1)
    assert job.error.startswith("The registry refused the trained version: Version '1'")
    assert ModelVersion.objects.count() == versions


@pytest.mark.django_db
def test_run__trainer_returns_invalid_content__failed_and_nothing_registered(rule, settings):
    # Given
    settings.KAIZEN_TRAINER = f"{TRAINERS}.invalid_trainer"
    job = queued_job(rule)
    # When
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert (result.outcome, job.status) == ("failed", JobStatus.FAILED)
    assert "metrics.holdout_accuracy" in job.error
    assert not ModelVersion.objects.filter(version="8").exists()


@pytest.mark.django_db
def test_run__no_trainer_configured__left_queued_for_external_trainers(rule, settings):
    # Given
    settings.KAIZEN_TRAINER = ""
    job = queued_job(rule)
    # When
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert (result.outcome, job.status, job.attempts) == (
        "left_to_external_trainers",
        JobStatus.QUEUED,
        0,
    )
    assert event_types(job) == []


@pytest.mark.django_db
def test_run__twice__second_run_changes_nothing(rule, settings):
    # Given
    settings.KAIZEN_TRAINER = f"{TRAINERS}.fixed_trainer"
    job = queued_job(rule)
    services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # When
    again = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    job.refresh_from_db()
    assert again.outcome == "skipped"
    assert job.result_version is not None
    assert (job.status, job.attempts, job.result_version.version) == (
        JobStatus.SUCCEEDED,
        1,
        "7",
    )
    assert event_types(job) == [JobEventType.STARTED, JobEventType.SUCCEEDED]


# --- leases and recovery ---


@pytest.mark.django_db
def test_recover__worker_died_mid_job__job_returns_to_queue_and_then_completes(rule, settings):
    # Given: a job claimed by a worker that died: still running, its lease expired
    settings.KAIZEN_TRAINER = f"{TRAINERS}.fixed_trainer"
    settings.KAIZEN_RETRAINING_LEASE_SECONDS = 60
    job = queued_job(rule)
    claimed_at = timezone.now() - timedelta(minutes=5)
    services.retraining_job_claim(job_id=job.pk, actor="worker:dead", now=claimed_at)
    # When: the recovery beat runs, then a worker runs the job
    recovered = services.retraining_jobs_recover()
    job.refresh_from_db()
    requeued_status, requeued_error = job.status, job.error
    result = services.retraining_job_run(job_id=str(job.pk), worker=WORKER)
    # Then
    assert recovered == {"requeued": 1, "failed": 0, "resent": 0}
    assert requeued_status == JobStatus.QUEUED
    assert requeued_error.startswith("The lease of worker:dead expired at ")
    job.refresh_from_db()
    assert (result.outcome, job.status, job.attempts, job.claimed_by) == (
        "succeeded",
        JobStatus.SUCCEEDED,
        2,
        WORKER,
    )
    assert event_types(job) == [
        JobEventType.STARTED,
        JobEventType.REQUEUED,
        JobEventType.STARTED,
        JobEventType.SUCCEEDED,
    ]
    requeue = RetrainingJobEvent.objects.get(job=job, type=JobEventType.REQUEUED)
    assert requeue.actor == "system:lease"


@pytest.mark.django_db
def test_recover__lease_expired_on_the_last_attempt__failed(rule, settings):
    # Given
    settings.KAIZEN_RETRAINING_MAX_ATTEMPTS = 1
    settings.KAIZEN_RETRAINING_LEASE_SECONDS = 60
    job = queued_job(rule)
    services.retraining_job_claim(
        job_id=job.pk, actor="worker:dead", now=timezone.now() - timedelta(minutes=5)
    )
    # When
    recovered = services.retraining_jobs_recover()
    # Then
    job.refresh_from_db()
    assert recovered == {"requeued": 0, "failed": 1, "resent": 0}
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)


@pytest.mark.django_db
def test_recover__lease_still_running__nothing_changes(rule, settings):
    # Given
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="worker:alive")
    # When
    recovered = services.retraining_jobs_recover()
    # Then
    job.refresh_from_db()
    assert recovered == {"requeued": 0, "failed": 0, "resent": 0}
    assert (job.status, job.claimed_by) == (JobStatus.RUNNING, "worker:alive")


@pytest.mark.django_db
def test_recover__queued_job_nobody_took_for_a_lease__its_message_sent_again(rule, settings):
    # Given: a job queued long ago, its message lost
    settings.KAIZEN_RETRAINING_LEASE_SECONDS = 60
    job = queued_job(rule)
    RetrainingJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    # When
    first = services.retraining_jobs_recover()
    second = services.retraining_jobs_recover()
    # Then: sent once; the second run finds it fresh
    assert (first["resent"], second["resent"]) == (1, 0)


# --- the claim / complete / fail use cases ---


@pytest.mark.django_db
def test_claim__running_job__conflict_and_nothing_changes(rule):
    # Given
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    # When / Then
    with pytest.raises(Conflict):
        services.retraining_job_claim(job_id=job.pk, actor="trainer:b")
    job.refresh_from_db()
    assert (job.claimed_by, job.attempts) == ("trainer:a", 1)


@pytest.mark.django_db
def test_complete__by_someone_else__job_not_held_and_nothing_registered(rule):
    # Given
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    # When / Then
    with pytest.raises(JobNotHeld):
        services.retraining_job_complete(job_id=job.pk, actor="trainer:b", version={"version": "9"})
    assert not ModelVersion.objects.filter(version="9").exists()


@pytest.mark.django_db
def test_complete__twice_with_the_same_version__second_answers_the_job(rule):
    # Given
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    services.retraining_job_complete(job_id=job.pk, actor="trainer:a", version={"version": "9"})
    # When
    again = services.retraining_job_complete(
        job_id=job.pk, actor="trainer:a", version={"version": "9"}
    )
    # Then
    assert again.result_version is not None
    assert (again.status, again.result_version.version) == (JobStatus.SUCCEEDED, "9")
    assert event_types(job) == [JobEventType.STARTED, JobEventType.SUCCEEDED]


@pytest.mark.django_db
def test_complete__unknown_fields__validation_failed_and_job_still_running(rule):
    # Given
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    # When / Then
    with pytest.raises(ValidationFailed) as raised:
        services.retraining_job_complete(
            job_id=job.pk, actor="trainer:a", version={"version": "9", "weights": [1]}
        )
    assert raised.value.details == [{"field": "weights", "message": "Unknown field."}]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


@pytest.mark.django_db
def test_complete__canary_asked_but_no_production_alias__succeeded_with_the_reason(churn):
    # Given: a model without a production alias
    from apps.registry.models import Alias

    Alias.objects.filter(model=churn).delete()
    canary_rule, _ = make_rule(open_canary=True)
    job = queued_job(canary_rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    # When
    done = services.retraining_job_complete(
        job_id=job.pk, actor="trainer:a", version={"version": "9"}
    )
    # Then
    assert (done.status, done.canary_experiment) == (JobStatus.SUCCEEDED, "")
    assert done.canary_error == "Model 'churn' has no alias 'production'."
    assert Experiment.objects.count() == 0


@pytest.mark.django_db
def test_fail__retry_with_attempts_left__queued_again(rule, settings):
    # Given
    settings.KAIZEN_RETRAINING_MAX_ATTEMPTS = 2
    job = queued_job(rule)
    services.retraining_job_claim(job_id=job.pk, actor="trainer:a")
    # When
    failed = services.retraining_job_fail(
        job_id=job.pk, actor="trainer:a", error="GPU lost", retry=True
    )
    # Then
    assert (failed.status, failed.error, failed.claimed_by) == (JobStatus.QUEUED, "GPU lost", "")
    assert Alert.objects.count() == 0

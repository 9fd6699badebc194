"""Monitoring's Celery tasks: options, routing, beat, and a real worker on the real broker."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker

from apps.analytics import services as analytics_services
from apps.monitoring import tasks
from apps.monitoring.models import JobStatus, RetrainingJob
from apps.monitoring.services.dispatch import send
from config.celery import app as celery_app
from tests.monitoring.conftest import Traffic, make_churn, make_rule

WAIT_SECONDS = 60


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        (tasks.run_retraining_job, "retraining"),
        (tasks.deliver_webhook, "notifications"),
        (tasks.recover_retraining_jobs, "default"),
    ],
)
def test_task__any__acks_late_rejected_on_worker_loss_and_routed_to_its_queue(task, queue):
    # When
    route = celery_app.amqp.router.route({}, task.name, args=(), kwargs={})  # type: ignore[attr-defined]  # celery-types omits AMQP.router
    # Then: a worker killed mid-task leaves the message on the broker for another worker
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
    assert route["queue"].name == queue
    assert task.soft_time_limit < task.time_limit


def test_training_task__time_limit__below_the_default_lease(settings):
    # A live worker must never outlive its job's lease (the job would be handed out twice).
    assert tasks.run_retraining_job.time_limit < settings.KAIZEN_RETRAINING_LEASE_SECONDS


def test_beat__recovery__scheduled_every_minute():
    entry = celery_app.conf.beat_schedule["monitoring-recover-jobs"]
    assert (entry["task"], entry["schedule"]) == ("monitoring.jobs.recover", 60.0)


def _drop_broker_pools() -> None:
    """Celery caches its connection pools; without them the next send dials conf.broker_url."""
    celery_app.pool.force_close_all()  # type: ignore[attr-defined]  # a kombu connection pool at run time
    celery_app._pool = None  # type: ignore[attr-defined]  # Celery's private pool cache
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]  # likewise, producers


def test_send__broker_unreachable__logged_and_false_never_raised(caplog):
    # Given: the real client pointed at an address where no broker listens
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    _drop_broker_pools()
    try:
        # When
        sent = send("monitoring.notifications.deliver", "00000000-0000-0000-0000-000000000000")
    finally:
        celery_app.conf.broker_url = original
        _drop_broker_pools()
    # Then
    assert sent is False
    assert "task.enqueue_failed" in caplog.text


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
@pytest.mark.django_db(transaction=True)
def test_worker__rule_fires__a_real_worker_trains_and_registers_the_version(broker, settings):
    # Given: a breaching rule whose aggregation queued a job and its message on the broker
    settings.KAIZEN_TRAINER = "apps.monitoring.trainers.reference_trainer"
    make_churn()
    make_rule()
    traffic = Traffic()
    traffic.add(country="DE", count=200, correct=100)
    traffic.post()
    analytics_services.aggregations_run()
    job = RetrainingJob.objects.get()
    assert broker.llen("retraining") == 1
    # When: a worker consumes the retraining queue from Redis
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"
    ):
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status in {JobStatus.SUCCEEDED, JobStatus.FAILED}:
                break
            time.sleep(0.2)
    # Then
    assert (job.status, job.error) == (JobStatus.SUCCEEDED, "")
    assert job.result_version is not None and job.result_version.version == "3"
    assert job.claimed_by.startswith("worker:")
    assert broker.llen("retraining") == 0

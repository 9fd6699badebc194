"""Celery tasks of monitoring (thin: load by id, call one service, safe to run twice).

- monitoring.retraining.run (queue `retraining`): claim a job and train it. acks_late with
  reject_on_worker_lost: a worker killed mid-job leaves the message to be delivered again,
  and the job's lease brings it back to the queue in any case (monitoring.jobs.recover).
  The time limits stay below the default lease (KAIZEN_RETRAINING_LEASE_SECONDS, 1h) so a
  live worker never outlives its lease.
- monitoring.notifications.deliver (queue `notifications`): one webhook attempt per run,
  retried with backoff for transient failures.
- monitoring.jobs.recover (queue `default`, beat every minute): expired leases, and the
  messages a broker outage lost (queued jobs, undelivered alerts) sent again.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import OperationalError

from apps.monitoring import services

TRAINING_SOFT_TIME_LIMIT = 3000
TRAINING_TIME_LIMIT = 3300


@shared_task(
    bind=True,
    name="monitoring.retraining.run",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    ignore_result=True,
    soft_time_limit=TRAINING_SOFT_TIME_LIMIT,
    time_limit=TRAINING_TIME_LIMIT,
)
def run_retraining_job(self: Task[Any, Any], job_id: str) -> str:
    worker = f"worker:{self.request.hostname or 'unknown'}"
    return services.retraining_job_run(job_id=job_id, worker=worker).outcome


@shared_task(
    bind=True,
    name="monitoring.notifications.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook(self: Task[Any, Any], alert_id: str) -> str:
    attempt = int(self.request.retries) + 1
    result = services.webhook_deliver(alert_id=alert_id, attempt=attempt)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in, max_retries=attempt)
    return result.outcome


@shared_task(
    name="monitoring.jobs.recover",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=50,
    time_limit=60,
)
def recover_retraining_jobs() -> dict[str, int]:
    recovered = services.retraining_jobs_recover()
    return {**recovered, "webhooks_resent": services.webhooks_resend_lost()}

"""The retraining queue: claim, complete, fail, run with the configured trainer, recover.

Lifecycle: queued → running → succeeded | failed, and running → queued again when a
transient failure leaves attempts (KAIZEN_RETRAINING_MAX_ATTEMPTS) or a lease expires.
Each transition locks the job row, writes, and appends a RetrainingJobEvent with the actor,
the error and the full state after it, in one transaction.

Whoever runs a job first claims it: a worker (task monitoring.retraining.run, with the
trainer KAIZEN_TRAINER names) or an external trainer over REST. A claim sets a lease of
KAIZEN_RETRAINING_LEASE_SECONDS; a job still running when its lease expires (its worker was
killed, its external trainer vanished) goes back to the queue, or fails once its attempts
are spent. Every attempt counts at its claim, so a job that kills its worker every time
still ends. The trainer runs outside any transaction: it may take minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.core import backoff
from apps.core.errors import ApplicationError, Conflict, NotFound, ValidationFailed
from apps.monitoring import selectors
from apps.monitoring.models import JobEventType, JobStatus, RetrainingJob, RetrainingJobEvent
from apps.monitoring.services.canary import canary_open
from apps.monitoring.services.dispatch import enqueue_on_commit, trainer_configured
from apps.registry import services as registry_services

logger = logging.getLogger(__name__)

JOB_CONSTRAINT = "retrainingjob_one_per_rule_cooldown"
RUN_TASK = "monitoring.retraining.run"
LEASE_ACTOR = "system:lease"
ERROR_MAX_LENGTH = 10_000
MAX_BACKOFF_SECONDS = 3600
RECOVER_BATCH = 100
VERSION_FIELDS = (
    "version",
    "hyperparameters",
    "metrics",
    "features",
    "dataset_versions",
    "artifact_uri",
    "artifact_sha256",
    "code_version",
    "tags",
)


class PermanentTrainingError(Exception):
    """A trainer's failure that another attempt would repeat (e.g. too little data)."""


class JobNotHeld(Conflict):
    """The job is not running for this actor (not claimed, finished, or its lease was lost)."""


Trainer = Callable[[RetrainingJob], Mapping[str, Any]]


def max_attempts() -> int:
    return max(1, int(settings.KAIZEN_RETRAINING_MAX_ATTEMPTS))


def lease_seconds() -> int:
    return max(1, int(settings.KAIZEN_RETRAINING_LEASE_SECONDS))


def backoff_seconds(attempt: int) -> int:
    """Wait before attempt `attempt + 1`: the base doubled per attempt, capped at an hour."""
    base = max(0, int(settings.KAIZEN_RETRAINING_BACKOFF_SECONDS))
    return int(backoff.backoff_seconds(attempt, base=base, cap=MAX_BACKOFF_SECONDS))


def record_job_event(
    *, job: RetrainingJob, kind: JobEventType, actor: str, at: datetime, error: str = ""
) -> RetrainingJobEvent:
    return RetrainingJobEvent.objects.create(
        job=job,
        type=kind,
        actor=actor,
        error=error,
        state=selectors.job_as_dict(job),
        occurred_at=at,
    )


def _save(job: RetrainingJob, at: datetime, *fields: str) -> None:
    job.updated_at = at
    job.save(update_fields=[*fields, "updated_at"])


def _clip(error: str) -> str:
    return error[:ERROR_MAX_LENGTH]


# --- claims and outcomes ------------------------------------------------------------------------


@transaction.atomic
def retraining_job_claim(*, job_id: Any, actor: str, now: datetime | None = None) -> RetrainingJob:
    """Queued → running for `actor`, with a lease; Conflict when the job is not queued."""
    job = selectors.job_locked(job_id=job_id)
    if job.status != JobStatus.QUEUED:
        raise Conflict(f"Job {job.id} is {job.status}; only a queued job can be claimed.")
    at = now or timezone.now()
    job.status = JobStatus.RUNNING
    job.claimed_by = actor
    job.attempts += 1
    job.lease_expires_at = at + timedelta(seconds=lease_seconds())
    job.not_before = None
    job.started_at = at
    _save(
        job, at, "status", "claimed_by", "attempts", "lease_expires_at", "not_before", "started_at"
    )
    record_job_event(job=job, kind=JobEventType.STARTED, actor=actor, at=at)
    logger.info("retraining_job.started", extra={"job": str(job.id), "attempt": job.attempts})
    return job


def _running_for(job: RetrainingJob, actor: str) -> None:
    if job.status != JobStatus.RUNNING:
        raise JobNotHeld(f"Job {job.id} is {job.status}, not running.")
    if job.claimed_by != actor:
        raise JobNotHeld(f"Job {job.id} is claimed by someone else; claim a queued job first.")


def _version_payload(version: Any) -> dict[str, Any]:
    if not isinstance(version, Mapping):
        raise ValidationFailed("The new version must be a JSON object (the registry's body).")
    unknown = sorted(set(map(str, version)) - set(VERSION_FIELDS))
    details = [{"field": name[:100], "message": "Unknown field."} for name in unknown]
    if "version" not in version:
        details.append({"field": "version", "message": "This field is required."})
    if details:
        raise ValidationFailed("The new version is invalid.", details=details)
    return dict(version)


@transaction.atomic
def retraining_job_complete(
    *, job_id: Any, actor: str, version: Any, now: datetime | None = None
) -> RetrainingJob:
    """Running → succeeded: register the trained version (and open the canary if asked).

    The same completion again (same version) answers the job as it is. A version the
    registry refuses raises its error and leaves the job running.
    """
    payload = _version_payload(version)
    job = selectors.job_locked(job_id=job_id)
    finished = job.status == JobStatus.SUCCEEDED and job.result_version is not None
    if (
        finished
        and job.result_version is not None
        and job.result_version.version == payload["version"]
    ):
        return job
    _running_for(job, actor)
    registered, _ = registry_services.model_version_register(
        model=job.model.name, actor=actor, **payload
    )
    at = now or timezone.now()
    job.status = JobStatus.SUCCEEDED
    job.result_version = registered
    job.finished_at = at
    job.lease_expires_at = None
    job.error = ""
    if job.open_canary:
        try:
            with transaction.atomic():
                job.canary_experiment = canary_open(
                    model=job.model.name,
                    version=registered.version,
                    job_id=str(job.id),
                    actor=actor,
                )
        except ApplicationError as error:
            job.canary_error = error.message[:1024]
            logger.warning("retraining_job.canary_not_opened", extra={"job": str(job.id)})
    _save(
        job,
        at,
        "status",
        "result_version",
        "finished_at",
        "lease_expires_at",
        "error",
        "canary_experiment",
        "canary_error",
    )
    record_job_event(job=job, kind=JobEventType.SUCCEEDED, actor=actor, at=at)
    logger.info(
        "retraining_job.succeeded", extra={"job": str(job.id), "version": registered.version}
    )
    return job


def _requeue_or_fail(
    job: RetrainingJob, *, error: str, retry: bool, actor: str, at: datetime
) -> RetrainingJob:
    job.error = _clip(error)
    job.lease_expires_at = None
    if retry and job.attempts < max_attempts():
        delay = backoff_seconds(job.attempts)
        job.status = JobStatus.QUEUED
        job.claimed_by = ""
        job.not_before = at + timedelta(seconds=delay)
        _save(job, at, "status", "claimed_by", "not_before", "lease_expires_at", "error")
        record_job_event(job=job, kind=JobEventType.REQUEUED, actor=actor, at=at, error=job.error)
        enqueue_on_commit(RUN_TASK, str(job.id), countdown=delay, only_with_trainer=True)
        logger.info("retraining_job.requeued", extra={"job": str(job.id), "delay": delay})
        return job
    job.status = JobStatus.FAILED
    job.finished_at = at
    _save(job, at, "status", "finished_at", "lease_expires_at", "error")
    record_job_event(job=job, kind=JobEventType.FAILED, actor=actor, at=at, error=job.error)
    logger.warning("retraining_job.failed", extra={"job": str(job.id), "attempts": job.attempts})
    return job


@transaction.atomic
def retraining_job_fail(
    *, job_id: Any, actor: str, error: str, retry: bool = False, now: datetime | None = None
) -> RetrainingJob:
    """Running → failed with `error`, or back to queued when `retry` and attempts are left."""
    job = selectors.job_locked(job_id=job_id)
    _running_for(job, actor)
    return _requeue_or_fail(job, error=error, retry=retry, actor=actor, at=now or timezone.now())


# --- the worker's run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    outcome: str
    job: RetrainingJob | None = None


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def retraining_job_run(*, job_id: str, worker: str) -> RunResult:
    """Claim the job, train with KAIZEN_TRAINER, and complete or fail it (the task's body).

    Safe to run twice: a job that is not queued is left alone ("skipped"). A trainer's
    exception is transient (retried with backoff while attempts are left) unless it is a
    PermanentTrainingError; a version the registry refuses fails the job at once. A worker
    whose lease ran out meanwhile finds the job taken from it ("lease_lost").
    """
    if not trainer_configured():
        return RunResult("left_to_external_trainers")
    try:
        job = retraining_job_claim(job_id=job_id, actor=worker)
    except (NotFound, Conflict):
        return RunResult("skipped")
    try:
        return _train(job, worker)
    except JobNotHeld:
        logger.warning("retraining_job.lease_lost", extra={"job": str(job.id), "worker": worker})
        return RunResult("lease_lost")


def _train(job: RetrainingJob, worker: str) -> RunResult:
    trainer: Trainer = import_string(str(settings.KAIZEN_TRAINER))
    try:
        payload = trainer(job)
    except PermanentTrainingError as error:
        failed = retraining_job_fail(job_id=job.pk, actor=worker, error=_describe(error))
        return RunResult(failed.status, failed)
    except Exception as error:  # a trainer may raise anything: transient unless it says not
        logger.exception("retraining_job.trainer_raised", extra={"job": str(job.id)})
        failed = retraining_job_fail(
            job_id=job.pk, actor=worker, error=_describe(error), retry=True
        )
        return RunResult(failed.status, failed)
    try:
        done = retraining_job_complete(job_id=job.pk, actor=worker, version=payload)
    except JobNotHeld:
        raise
    except ApplicationError as error:
        # A version taken meanwhile (Conflict) is worth another attempt; bad content is not.
        message = f"The registry refused the trained version: {error.message} {error.details}"
        failed = retraining_job_fail(
            job_id=job.pk, actor=worker, error=message, retry=isinstance(error, Conflict)
        )
        return RunResult(failed.status, failed)
    return RunResult(done.status, done)


# --- recovery -----------------------------------------------------------------------------------


def retraining_jobs_recover(
    *, now: datetime | None = None, limit: int = RECOVER_BATCH
) -> dict[str, int]:
    """Jobs whose lease expired go back to the queue (or fail, attempts spent); queued jobs
    nobody took for a lease's length are sent to the workers again. Safe to run twice."""
    at = now or timezone.now()
    expired = list(
        RetrainingJob.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=at)
        .order_by("lease_expires_at")
        .values_list("id", flat=True)[:limit]
    )
    requeued = failed = 0
    for job_id in expired:
        with transaction.atomic():
            job = selectors.job_locked(job_id=job_id)
            lease = job.lease_expires_at
            if job.status != JobStatus.RUNNING or lease is None or lease >= at:
                continue
            error = f"The lease of {job.claimed_by} expired at {lease.isoformat()}."
            job = _requeue_or_fail(job, error=error, retry=True, actor=LEASE_ACTOR, at=at)
            if job.status == JobStatus.QUEUED:
                requeued += 1
            else:
                failed += 1
    return {"requeued": requeued, "failed": failed, "resent": _resend_stale(at, limit)}


def _resend_stale(at: datetime, limit: int) -> int:
    """Queued jobs untouched for a lease's length: their message was lost; send it again."""
    if not trainer_configured():
        return 0
    stale_before = at - timedelta(seconds=lease_seconds())
    with transaction.atomic():
        ids = list(
            RetrainingJob.objects.select_for_update(skip_locked=True)
            .filter(status=JobStatus.QUEUED, updated_at__lt=stale_before)
            .order_by("created_at")
            .values_list("id", flat=True)[:limit]
        )
        RetrainingJob.objects.filter(pk__in=ids).update(updated_at=at)
        for job_id in ids:
            enqueue_on_commit(RUN_TASK, str(job_id))
    return len(ids)

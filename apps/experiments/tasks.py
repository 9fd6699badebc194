"""Celery tasks of experiments: the ramp advancer that beat runs every minute."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.experiments import services

logger = logging.getLogger(__name__)


@shared_task(
    name="experiments.advance_ramps",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=50,
    time_limit=60,
)
def advance_ramps() -> int:
    """Apply every due ramp step (capped per run; the rest go in the next run).

    Safe to run twice: an applied step is marked in the transaction that applies it.
    """
    advanced = services.ramp_advance_due()
    if advanced:
        logger.info("experiment.ramps_advanced", extra={"experiments": advanced})
    return advanced

"""Celery tasks of the aggregation workers (thin: one service call, safe to run twice)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import OperationalError

from apps.analytics import services

# A beat run starts no fold after this many seconds (each fold is bounded by
# KAIZEN_FOLD_TIMEOUT_SECONDS, 60 by default): it ends well inside the soft time limit, and
# the next run continues.
MAX_SECONDS_PER_RUN = 120


@shared_task(
    name="analytics.aggregate",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
)
def aggregate() -> dict[str, Any]:
    """Fold new events into every projection (skipping any folded elsewhere right now), then
    evaluate the rules."""
    return services.aggregations_run(max_seconds=MAX_SECONDS_PER_RUN)

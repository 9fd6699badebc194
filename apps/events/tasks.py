"""Celery tasks of the event log."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task

from apps.events import services


@shared_task(
    name="events.heartbeat",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=5,
    time_limit=10,
)
def heartbeat() -> None:
    """Record that a worker consumed from the broker (shown in /readyz)."""
    services.heartbeat_record(at=datetime.now(UTC))

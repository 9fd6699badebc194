"""A real Celery worker on the real Redis broker runs the heartbeat that /readyz reports."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.cache import cache

from apps.events.selectors import HEARTBEAT_KEY
from apps.events.tasks import heartbeat
from config.celery import QUEUE_NAMES
from config.celery import app as celery_app

WAIT_SECONDS = 30


def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def _empty_queues() -> None:
    _broker().delete(*QUEUE_NAMES)


def _queue_lengths() -> dict[str, int]:
    broker = _broker()
    return {name: int(broker.llen(name)) for name in QUEUE_NAMES}


def _worker_state(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200
    state: dict = response.json()["worker"]
    return state


@pytest.mark.django_db
@pytest.mark.xdist_group("processes")
def test_heartbeat__sent_with_no_worker__one_message_on_the_default_queue_only():
    # Given
    _empty_queues()
    try:
        # When
        heartbeat.delay()
        # Then
        assert _queue_lengths() == {
            "default": 1,
            "aggregation": 0,
            "retraining": 0,
            "notifications": 0,
        }
    finally:
        _empty_queues()


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_heartbeat__real_worker_on_the_broker__readyz_reports_it(transactional_db, anonymous):
    # Given: no heartbeat recorded and nothing queued
    _empty_queues()
    cache.delete(HEARTBEAT_KEY)
    assert _worker_state(anonymous) == {"status": "unknown", "last_heartbeat": None}
    sent_at = datetime.now(UTC)
    # When: a worker consumes the task from Redis, twice delivered
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=20, loglevel="WARNING"
    ):
        heartbeat.delay()
        heartbeat.delay()
        deadline = time.monotonic() + WAIT_SECONDS
        while _queue_lengths()["default"] and time.monotonic() < deadline:
            time.sleep(0.1)
        while _worker_state(anonymous)["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.1)
    # Then: the worker ran it; /readyz shows when, and the queue is drained
    state = _worker_state(anonymous)
    assert state["status"] == "ok"
    assert datetime.fromisoformat(state["last_heartbeat"]) >= sent_at
    assert state["age_seconds"] >= 0
    assert _queue_lengths() == {"default": 0, "aggregation": 0, "retraining": 0, "notifications": 0}

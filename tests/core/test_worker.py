"""A real Celery worker on the real Redis broker runs the heartbeat that /readyz reports."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache

from apps.events.selectors import HEARTBEAT_KEY
from apps.events.tasks import heartbeat
from config.celery import QUEUE_NAMES
from config.celery import app as celery_app

WAIT_SECONDS = 30


def _worker_state(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200
    state: dict = response.json()["worker"]
    return state


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("events.heartbeat", "default"),
        ("analytics.aggregate", "aggregation"),
        ("monitoring.retraining.run", "retraining"),
        ("monitoring.notifications.send", "notifications"),
    ],
)
def test_routes__task_name__its_queue(task, queue):
    # When
    route = celery_app.amqp.router.route({}, task, args=(), kwargs={})  # type: ignore[attr-defined]  # celery-types omits AMQP.router
    # Then
    assert route["queue"].name == queue
    assert queue in QUEUE_NAMES


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_heartbeat__real_worker_on_the_broker__readyz_reports_it(transactional_db, anonymous):
    # Given: no heartbeat recorded
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
        while _worker_state(anonymous)["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.1)
    # Then: the worker ran it and /readyz shows when
    state = _worker_state(anonymous)
    assert state["status"] == "ok"
    assert datetime.fromisoformat(state["last_heartbeat"]) >= sent_at
    assert state["age_seconds"] >= 0

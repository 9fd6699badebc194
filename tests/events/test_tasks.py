"""The heartbeat task: safe to run twice; /readyz reports the last one a worker processed."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.cache import cache

from apps.events import tasks
from apps.events.selectors import HEARTBEAT_KEY


@pytest.fixture
def no_heartbeat():
    cache.delete(HEARTBEAT_KEY)
    yield
    cache.delete(HEARTBEAT_KEY)


@pytest.mark.django_db
def test_readyz__no_heartbeat_yet__worker_status_unknown(anonymous, no_heartbeat):
    # When
    response = anonymous.get("/readyz")
    # Then
    assert response.status_code == 200
    assert response.json()["worker"] == {"status": "unknown", "last_heartbeat": None}


@pytest.mark.django_db
def test_heartbeat__run_twice__readyz_shows_the_latest_heartbeat(anonymous, no_heartbeat):
    # Given / When: the task body run as a worker would run it, twice
    tasks.heartbeat()
    first = datetime.fromisoformat(cache.get(HEARTBEAT_KEY))
    tasks.heartbeat()
    second = datetime.fromisoformat(cache.get(HEARTBEAT_KEY))
    response = anonymous.get("/readyz")
    # Then: one key, holding the second beat; /readyz stays ready
    assert second >= first
    assert second.utcoffset() is not None
    assert response.status_code == 200
    worker = response.json()["worker"]
    assert set(worker) == {"status", "last_heartbeat", "age_seconds"}
    assert worker["status"] == "ok"
    assert worker["last_heartbeat"] == second.isoformat()
    assert worker["age_seconds"] >= 0


def test_heartbeat_task__declared_safe_to_redeliver():
    # Then: STYLE.md's task contract
    assert tasks.heartbeat.name == "events.heartbeat"
    assert tasks.heartbeat.acks_late is True
    assert tasks.heartbeat.reject_on_worker_lost is True
    assert tasks.heartbeat.ignore_result is True

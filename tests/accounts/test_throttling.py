"""Per-key rate limiting: 429 with Retry-After past the rate; fails open when Redis is down.

The window clock is pinned (a fixed `timer`), so counts never straddle a window boundary
and Retry-After is exact. The fail-open test runs a Redis server of its own and stops it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from apps.accounts import throttling

URL = "/api/v1/events"
# 10 s into a minute window: 50 s remain.
PINNED_NOW = 1_800_000_000.0 + 10.0


def _rest_framework_with_rate(rate: str | None) -> dict[str, Any]:
    return {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": rate}}


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttling, "clock", lambda: PINNED_NOW)
    # A previous failure's pause must not leak into this test.
    monkeypatch.setattr(throttling, "_skip_until", 0.0)


@pytest.fixture
def three_per_minute() -> Iterator[None]:
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate("3/minute")):
        yield


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.django_db
def test_throttle__fourth_request_at_three_per_minute__429_with_retry_after(
    make_client, three_per_minute
):
    # Given
    client = make_client("read")
    # When
    statuses = [client.get(URL).status_code for _ in range(3)]
    refused = client.get(URL)
    # Then
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert _error(refused) == {
        "code": "throttled",
        "message": "Too many requests; retry in 50 s.",
        "details": [],
    }


@pytest.mark.django_db
def test_throttle__one_key_over_its_rate__other_keys_unaffected(make_client, three_per_minute):
    # Given
    busy = make_client("read")
    for _ in range(4):
        busy.get(URL)
    # When
    other = make_client("read")
    # Then
    assert [other.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    assert busy.get(URL).status_code == 429


@pytest.mark.django_db
def test_throttle__next_window__allowed_again(make_client, three_per_minute, monkeypatch):
    # Given: a key that used up its window
    client = make_client("read")
    assert [client.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    # When: the clock reaches the next window
    monkeypatch.setattr(throttling, "clock", lambda: PINNED_NOW + 50.0)
    # Then
    assert client.get(URL).status_code == 200


@pytest.mark.django_db
def test_throttle__rate_read_from_settings_per_request__changes_apply(make_client):
    # Given
    client = make_client("read")
    # When
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate("1/minute")):
        tight = [client.get(URL).status_code for _ in range(2)]
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate(None)):
        unlimited = [client.get(URL).status_code for _ in range(5)]
    # Then
    assert tight == [200, 429]
    assert unlimited == [200] * 5


@pytest.mark.django_db
def test_throttle__refused_requests__not_counted_against_other_requests_of_no_key(
    anonymous, three_per_minute
):
    # When: requests without a key are refused (401) before any throttling
    statuses = [anonymous.get(URL).status_code for _ in range(5)]
    # Then
    assert statuses == [401] * 5


@pytest.mark.django_db
def test_throttle__redis_stops_mid_test__requests_pass_and_limiter_recovers(
    make_client, three_per_minute, own_redis, caplog
):
    # Given: throttling works against the test's own Redis
    client = make_client("read")
    assert [client.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    # When: Redis stops
    own_redis.stop()
    other = make_client("read")
    with caplog.at_level(logging.WARNING, logger="apps.accounts.throttling"):
        down = [other.get(URL) for _ in range(6)]
        over = client.get(URL)
    # Then: every request of a key not known to be over its limit is answered (fail open),
    # none 5xx; Redis was tried once, then left alone for a pause, so later requests spend
    # no time on connection attempts
    assert [response.status_code for response in down] == [200] * 6
    assert all(response.json()["results"] == [] for response in down)
    limiter_logs = [
        record.message for record in caplog.records if record.name == "apps.accounts.throttling"
    ]
    assert limiter_logs == ["rate_limit.unavailable"]
    # And the key this process saw over its limit stays refused until its window ends
    assert over.status_code == 429
    # When: Redis is back (empty) and the pause is over
    own_redis.start()
    throttling._skip_until = 0.0
    back = [make_client("read")]
    statuses = [back[0].get(URL).status_code for _ in range(4)]
    # Then: the limit applies again
    assert statuses == [200, 200, 200, 429]


def _as_processes(count: int) -> list[dict[str, Any]]:
    """Lease tables of `count` processes: swapped in one at a time to act as each."""
    return [{} for _ in range(count)]


def _request_as(process: dict[str, Any], monkeypatch: pytest.MonkeyPatch, prefix: str) -> bool:
    monkeypatch.setattr(throttling, "_leases", process)
    return throttling.rate_limit_wait(prefix) is None


@pytest.mark.django_db
def test_rate_limit__leases_over_three_processes__exactly_the_limit_passes(monkeypatch):
    # Given: 500/minute, so each process leases 5 requests at a time from Redis
    prefix = f"lease-{time.time_ns()}"
    processes = _as_processes(3)
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate("500/minute")):
        assert throttling.current_rate() == throttling.Rate(limit=500, seconds=60)
        assert throttling.current_rate().lease == 5  # type: ignore[union-attr]
        # When: 700 requests arrive round-robin at the three processes
        allowed = [_request_as(processes[n % 3], monkeypatch, prefix) for n in range(700)]
    # Then: the processes together let exactly the limit through, then refuse
    assert sum(allowed) == 500
    assert not any(allowed[550:])


@pytest.mark.django_db
def test_rate_limit__lease_held_by_an_idle_process__at_most_one_lease_lost(monkeypatch):
    # Given: one process served a single request and holds the rest of its lease
    prefix = f"idle-{time.time_ns()}"
    idle, busy = _as_processes(2)
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate("500/minute")):
        assert _request_as(idle, monkeypatch, prefix)
        # When: another process takes the rest of the window's traffic
        allowed = sum(_request_as(busy, monkeypatch, prefix) for _ in range(600))
    # Then: it gets the limit less the idle process's whole lease (the documented price)
    assert allowed == 500 - 5


@pytest.mark.django_db
def test_rate_limit__high_limit__one_redis_round_trip_per_lease(monkeypatch):
    # Given: 6,000/minute, leases of 60
    prefix = f"trips-{time.time_ns()}"
    counter = caches["default"].make_and_validate_key(
        f"throttle:api_key:{prefix}:{int(PINNED_NOW // 60)}"
    )
    client = throttling._redis_client()
    with override_settings(REST_FRAMEWORK=_rest_framework_with_rate("6000/minute")):
        # When: 61 requests
        for _ in range(61):
            assert throttling.rate_limit_wait(prefix) is None
    # Then: Redis counted two leases, not 61 increments
    assert int(client.get(counter) or 0) == 120

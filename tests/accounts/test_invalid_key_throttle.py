"""Failed authentication is throttled per client address: 429 with Retry-After past the limit,
a valid key from the same address unaffected, failing open when Redis is down.

The window clock is pinned, so Retry-After is exact; each test sends from addresses of its
own (a window's counter in the real Redis outlives the test).
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from apps.accounts import services, throttling
from apps.accounts.addresses import client_address, counted_address

URL = "/api/v1/events"
# 10 s into a minute window: 50 s remain.
PINNED_NOW = 1_800_000_000.0 + 10.0
THROTTLED = {
    "code": "throttled",
    "message": "Too many requests with a missing or invalid API key from this address; "
    "retry in 50 s.",
    "details": [],
}


def _rates(invalid_key: str | None) -> dict[str, Any]:
    return {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_key": "100000/minute", "invalid_key": invalid_key},
    }


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttling, "clock", lambda: PINNED_NOW)
    monkeypatch.setattr(throttling, "_skip_until", 0.0)


@pytest.fixture
def three_failures_per_minute() -> Iterator[None]:
    with override_settings(REST_FRAMEWORK=_rates("3/minute")):
        yield


def fresh_address() -> str:
    """An address no other test (or earlier run within the window) has used."""
    return str(ipaddress.IPv6Address(uuid.uuid4().int))


def client_from(address: str, authorization: str | None = None) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def valid_key(*scopes: str) -> str:
    _, raw = services.api_key_create(application="tests", name="valid", scopes=list(scopes))
    return f"Bearer {raw}"


def revoked_key() -> str:
    key, raw = services.api_key_create(application="tests", name="revoked", scopes=["read"])
    services.api_key_revoke(key=key)
    return f"Bearer {raw}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer kz_000000000000_" + "0" * 43,
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "revoked",
    ],
    ids=["no-key", "unknown-key", "garbage-key", "other-scheme", "revoked-key"],
)
def test_failed_authentication__past_the_limit_from_one_address__429_with_retry_after(
    three_failures_per_minute, authorization
):
    # Given
    if authorization == "revoked":
        authorization = revoked_key()
    client = client_from(fresh_address(), authorization)
    # When
    statuses = [client.get(URL).status_code for _ in range(3)]
    refused = client.get(URL)
    # Then
    assert statuses == [401, 401, 401]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert refused["Content-Type"] == "application/json"
    assert refused.json() == {"error": THROTTLED}


@pytest.mark.django_db
def test_failed_authentication__address_throttled__valid_key_from_it_still_answered(
    three_failures_per_minute,
):
    # Given: an address over its limit of failures
    address = fresh_address()
    attacker = client_from(address, "Bearer kz_000000000000_" + "1" * 43)
    assert [attacker.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]
    # When: a valid key is sent from the same address, then the bad one again
    valid = client_from(address, valid_key("read"))
    answers = [valid.get(URL) for _ in range(5)]
    again = attacker.get(URL)
    # Then: the valid key is not affected, nor counted; the bad one stays refused
    assert [answer.status_code for answer in answers] == [200] * 5
    assert answers[0].json()["results"] == []
    assert again.status_code == 429


@pytest.mark.django_db
def test_failed_authentication__one_address_throttled__other_addresses_unaffected(
    three_failures_per_minute,
):
    # Given
    busy = client_from(fresh_address())
    assert [busy.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]
    # When
    other = client_from(fresh_address())
    # Then
    assert [other.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]


@pytest.mark.django_db
def test_failed_authentication__assignment_endpoint__throttled_like_every_view(
    three_failures_per_minute,
):
    # Given: the assignment endpoint authenticates outside DRF's dispatch
    client = client_from(fresh_address(), "Bearer kz_000000000000_" + "2" * 43)
    body = {"experiment": "e", "subject": "s"}
    # When
    statuses = [
        client.post("/api/v1/assignments", body, format="json").status_code for _ in range(3)
    ]
    refused = client.post("/api/v1/assignments", body, format="json")
    # Then
    assert statuses == [401, 401, 401]
    assert (refused.status_code, refused["Retry-After"]) == (429, "50")
    assert refused.json() == {"error": THROTTLED}


@pytest.mark.django_db
def test_failed_authentication__next_window__401_again(three_failures_per_minute, monkeypatch):
    # Given
    client = client_from(fresh_address())
    assert [client.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]
    # When: the clock reaches the next window
    monkeypatch.setattr(throttling, "clock", lambda: PINNED_NOW + 50.0)
    # Then
    assert client.get(URL).status_code == 401


@pytest.mark.django_db
def test_failed_authentication__no_limit_configured__never_throttled():
    # Given
    client = client_from(fresh_address())
    # When
    with override_settings(REST_FRAMEWORK=_rates(None)):
        statuses = [client.get(URL).status_code for _ in range(10)]
    # Then
    assert statuses == [401] * 10


@pytest.mark.django_db
def test_failed_authentication__successful_requests__not_counted(three_failures_per_minute):
    # Given: many successful requests from one address
    address = fresh_address()
    valid = client_from(address, valid_key("read"))
    assert [valid.get(URL).status_code for _ in range(10)] == [200] * 10
    # When
    failing = client_from(address)
    # Then: the address still has its whole allowance of failures
    assert [failing.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]


@pytest.mark.django_db
def test_failed_authentication__redis_stops__fails_open_then_limits_again(
    three_failures_per_minute, own_redis, caplog
):
    # Given: failures counted in the test's own Redis
    address = fresh_address()
    client = client_from(address)
    assert [client.get(URL).status_code for _ in range(2)] == [401, 401]
    # When: Redis stops
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="apps.accounts.throttling"):
        down = [client.get(URL) for _ in range(4)]
        valid = client_from(address, valid_key("read")).get(URL)
    # Then: failures are answered 401, never 429 or 5xx; Redis was tried once, then left alone
    assert [response.status_code for response in down] == [401] * 4
    assert all(response.json()["error"]["code"] == "unauthenticated" for response in down)
    assert valid.status_code == 200
    limiter_logs = [
        record.message for record in caplog.records if record.name == "apps.accounts.throttling"
    ]
    assert limiter_logs == ["rate_limit.unavailable"]
    # When: Redis is back (empty) and the pause is over
    own_redis.start()
    throttling._skip_until = 0.0
    # Then: the limit applies again
    assert [client.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]


# The client address


def _request(remote: str | None, forwarded: str | None = None) -> Any:
    request = RequestFactory().get("/")
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote
    return request


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # No trusted proxy: the header is the client's own word, never used.
        (0, "203.0.113.7", "198.51.100.1", "203.0.113.7"),
        (0, "203.0.113.7", None, "203.0.113.7"),
        (0, None, None, ""),
        # One proxy: the address it appended (the right-most); what the client sent is left.
        (1, "10.0.0.2", "198.51.100.1", "198.51.100.1"),
        (1, "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        (1, "10.0.0.2", " 2001:db8::1 ", "2001:db8::1"),
        # Two proxies: the second from the right.
        (2, "10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.9", "198.51.100.1"),
        # Fewer entries than proxies, or not an address: the TCP peer.
        (2, "10.0.0.2", "198.51.100.1", "10.0.0.2"),
        (1, "10.0.0.2", None, "10.0.0.2"),
        (1, "10.0.0.2", "unknown", "10.0.0.2"),
        (1, "10.0.0.2", "198.51.100.1, ", "10.0.0.2"),
    ],
)
def test_client_address__trusted_proxy_count__expected_address(
    proxies, remote, forwarded, expected
):
    # When
    with override_settings(KAIZEN_TRUSTED_PROXY_COUNT=proxies):
        found = client_address(_request(remote, forwarded))
    # Then
    assert found == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
        ("2001:0db8:0001:0002::1", "2001:db8:1:2::"),
        ("2001:db8:1:2::", "2001:db8:1:2::"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("", ""),
        ("not-an-address", "not-an-address"),
    ],
)
def test_counted_address__address__ipv6_by_its_64_network(address, expected):
    assert counted_address(address) == expected


@pytest.mark.django_db
def test_failed_authentication__new_address_per_request_in_one_ipv6_64__counted_together(
    three_failures_per_minute,
):
    # Given: a client drawing a new address from its /64 for every request
    network = ipaddress.IPv6Network((uuid.uuid4().int >> 64 << 64, 64))
    addresses = [str(network[n]) for n in (1, 2, 3, 2**63)]
    # When
    statuses = [client_from(address).get(URL).status_code for address in addresses]
    # Then
    assert statuses == [401, 401, 401, 429]


@pytest.mark.django_db
def test_failed_authentication__many_addresses__keys_leases_kept(
    three_failures_per_minute, monkeypatch
):
    # Given: a key holding a lease, and room for three addresses' leases
    monkeypatch.setattr(throttling, "MAX_LEASES", 3)
    valid = client_from(fresh_address(), valid_key("read"))
    assert valid.get(URL).status_code == 200
    leases_of_keys = dict(throttling._leases)
    # When: failures arrive from five addresses
    statuses = [client_from(fresh_address()).get(URL).status_code for _ in range(5)]
    # Then: the addresses' table was cleared once full (3, then 1 and 2 again), never the
    # keys' table
    assert statuses == [401] * 5
    assert len(leases_of_keys) == 1
    assert throttling._leases == leases_of_keys
    assert len(throttling._other_leases) == 2


@pytest.mark.django_db
def test_failed_authentication__behind_one_trusted_proxy__clients_counted_apart(
    three_failures_per_minute,
):
    # Given: two clients whose requests all reach Kaizen from the same proxy
    proxy = fresh_address()
    first = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=fresh_address())
    second = APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=fresh_address())
    with override_settings(KAIZEN_TRUSTED_PROXY_COUNT=1):
        # When
        refused = [first.get(URL).status_code for _ in range(4)]
        others = [second.get(URL).status_code for _ in range(3)]
    # Then
    assert refused == [401, 401, 401, 429]
    assert others == [401, 401, 401]


@pytest.mark.django_db
def test_failed_authentication__no_trusted_proxy__forged_forwarded_for_does_not_escape(
    three_failures_per_minute,
):
    # Given: a client that sends a new X-Forwarded-For with every request
    address = fresh_address()
    # When
    statuses = [
        APIClient(REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=fresh_address()).get(URL).status_code
        for _ in range(4)
    ]
    # Then
    assert statuses == [401, 401, 401, 429]

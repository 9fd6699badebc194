"""The admin login locks a username+address out after repeated wrong passwords (django-axes).

Logins go through the admin's real login form (Django's test client posts it; CSRF checks
are off in the test client). Each test logs in from an address of its own.
"""

from __future__ import annotations

import ipaddress
import runpy
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.addresses import counted_address

BASE_DIR = Path(__file__).resolve().parent.parent.parent
LOGIN = "/admin/login/"
PASSWORD = "the-right-password-42"


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser(username="ops", password=PASSWORD, email="")


def fresh_address() -> str:
    return str(ipaddress.IPv6Address(uuid.uuid4().int))


def log_in(client: Client, password: str, username: str = "ops", **extra: Any) -> Any:
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def logged_in(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"] == "/admin/")


def fail(client: Client, times: int, username: str = "ops") -> list[int]:
    return [log_in(client, "wrong", username).status_code for _ in range(times)]


@pytest.mark.django_db
def test_admin_login__five_wrong_passwords__right_password_refused_with_lockout_page(operator):
    # Given
    client = Client(REMOTE_ADDR=fresh_address())
    # When: four wrong passwords get the form again; the fifth locks the pair out
    statuses = fail(client, 5)
    refused = log_in(client, PASSWORD)
    # Then: the right password is refused too, with an HTML page, not JSON, and no session
    assert statuses == [200, 200, 200, 200, 429]
    assert refused.status_code == 429
    assert refused["Content-Type"] == "text/html; charset=utf-8"
    assert refused["Retry-After"] == "900"
    page = refused.content.decode()
    assert "<title>Login locked | Django site admin</title>" in page
    assert "5 wrong passwords in a row for\n<strong>ops</strong> from this address." in page
    assert "Try again in 15 minutes." in page
    assert 'name="password"' not in page
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_admin_login__locked_ajax_request__still_the_html_page(operator):
    # Given
    client = Client(REMOTE_ADDR=fresh_address())
    fail(client, 5)
    # When: a script asks as an XMLHttpRequest (axes would answer JSON)
    refused = log_in(client, PASSWORD, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    # Then
    assert refused.status_code == 429
    assert refused["Content-Type"] == "text/html; charset=utf-8"
    assert b"Login locked" in refused.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command",
    [
        ["axes_reset"],
        ["axes_reset_username", "ops"],
        ["axes_reset_ip_username", "ADDRESS", "ops"],
    ],
    ids=["axes_reset", "axes_reset_username", "axes_reset_ip_username"],
)
def test_admin_login__locked_then_reset_command__right_password_works(operator, command):
    # Given: a locked-out pair
    address = fresh_address()
    client = Client(REMOTE_ADDR=address)
    fail(client, 5)
    assert log_in(client, PASSWORD).status_code == 429
    # When
    # (an IPv6 address is recorded, and reset, as its /64's first address)
    call_command(*[counted_address(address) if part == "ADDRESS" else part for part in command])
    # Then
    assert logged_in(log_in(client, PASSWORD))
    assert AccessAttempt.objects.count() == 0


@pytest.mark.django_db
def test_admin_login__lockout_older_than_cool_off__right_password_works(operator):
    # Given: a lockout whose last failure was 15 minutes ago
    client = Client(REMOTE_ADDR=fresh_address())
    fail(client, 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    # When
    response = log_in(client, PASSWORD)
    # Then
    assert logged_in(response)


@pytest.mark.django_db
def test_admin_login__locked_pair__other_address_and_other_username_unaffected(operator):
    # Given: ops locked out from one address
    User.objects.create_superuser(username="other", password=PASSWORD, email="")
    address = fresh_address()
    fail(Client(REMOTE_ADDR=address), 5)
    # When
    same_user_elsewhere = log_in(Client(REMOTE_ADDR=fresh_address()), PASSWORD)
    other_user_here = log_in(Client(REMOTE_ADDR=address), PASSWORD, username="other")
    # Then
    assert logged_in(same_user_elsewhere)
    assert logged_in(other_user_here)


@pytest.mark.django_db
def test_admin_login__new_address_per_attempt_in_one_ipv6_64__locked_all_the_same(operator):
    # Given: a client drawing a new address from its /64 for every attempt
    network = ipaddress.IPv6Network((uuid.uuid4().int >> 64 << 64, 64))
    clients = [Client(REMOTE_ADDR=str(network[n])) for n in (1, 2, 3, 4, 5, 2**63)]
    # When
    statuses = [log_in(client, "wrong").status_code for client in clients[:5]]
    refused = log_in(clients[5], PASSWORD)
    # Then
    assert statuses == [200, 200, 200, 200, 429]
    assert refused.status_code == 429


@pytest.mark.django_db
def test_admin_login__success_after_four_failures__count_starts_again(operator):
    # Given: four wrong passwords, then the right one
    client = Client(REMOTE_ADDR=fresh_address())
    assert fail(client, 4) == [200] * 4
    assert logged_in(log_in(client, PASSWORD))
    client.logout()
    # When: four more wrong passwords
    statuses = fail(client, 4)
    # Then: no lockout (the failures before the success no longer count)
    assert statuses == [200] * 4
    assert logged_in(log_in(client, PASSWORD))


@pytest.mark.django_db
@override_settings(AXES_FAILURE_LIMIT=2, AXES_COOLOFF_TIME=None)
def test_admin_login__configured_limit_and_no_cool_off__locked_until_reset(operator):
    # Given
    client = Client(REMOTE_ADDR=fresh_address())
    # When
    statuses = fail(client, 2)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(days=30))
    refused = log_in(client, PASSWORD)
    # Then
    assert statuses == [200, 429]
    assert refused.status_code == 429
    assert not refused.has_header("Retry-After")
    assert b"It stays locked until an administrator unlocks it." in refused.content


@pytest.mark.django_db
def test_admin_lockout__api_key_from_the_same_address__answered(operator):
    # Given: the admin login locked out from an address
    address = fresh_address()
    fail(Client(REMOTE_ADDR=address), 5)
    _, raw = services.api_key_create(application="tests", name="reader", scopes=["read"])
    api = APIClient(REMOTE_ADDR=address)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    # When
    response = api.get("/api/v1/events")
    # Then: the API's keys never go through the admin's login
    assert response.status_code == 200
    assert response.json()["results"] == []


def _settings_read_from(environment: dict[str, str], monkeypatch: Any) -> dict[str, Any]:
    """What config/settings/base.py makes of `environment` (run afresh, in this process)."""
    for name in (
        "KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT",
        "KAIZEN_ADMIN_LOCKOUT_MINUTES",
        "KAIZEN_INVALID_KEY_RATE_LIMIT",
        "KAIZEN_TRUSTED_PROXY_COUNT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    read = runpy.run_path(str(BASE_DIR / "config" / "settings" / "base.py"))
    cool_off = read["AXES_COOLOFF_TIME"]
    return {
        "limit": read["AXES_FAILURE_LIMIT"],
        "cool_off": None if cool_off is None else cool_off.total_seconds(),
        "parameters": read["AXES_LOCKOUT_PARAMETERS"],
        "invalid_key": read["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"]["invalid_key"],
        "proxies": read["KAIZEN_TRUSTED_PROXY_COUNT"],
    }


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            {},
            {
                "limit": 5,
                "cool_off": 900.0,
                "parameters": [["username", "ip_address"]],
                "invalid_key": "60/minute",
                "proxies": 0,
            },
        ),
        (
            {
                "KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT": "10",
                "KAIZEN_ADMIN_LOCKOUT_MINUTES": "0",
                "KAIZEN_INVALID_KEY_RATE_LIMIT": "",
                "KAIZEN_TRUSTED_PROXY_COUNT": "1",
            },
            {
                "limit": 10,
                "cool_off": None,
                "parameters": [["username", "ip_address"]],
                "invalid_key": None,
                "proxies": 1,
            },
        ),
        (
            {"KAIZEN_ADMIN_LOCKOUT_MINUTES": "2.5", "KAIZEN_INVALID_KEY_RATE_LIMIT": "10/second"},
            {
                "limit": 5,
                "cool_off": 150.0,
                "parameters": [["username", "ip_address"]],
                "invalid_key": "10/second",
                "proxies": 0,
            },
        ),
    ],
    ids=["defaults", "configured", "fractional-minutes"],
)
def test_settings__environment__lockout_and_throttle_configured(environment, expected, monkeypatch):
    assert _settings_read_from(environment, monkeypatch) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT", "0"), ("KAIZEN_TRUSTED_PROXY_COUNT", "-1")],
)
def test_settings__impossible_value__refuses_to_boot_naming_it(name, value, monkeypatch):
    with pytest.raises(ImproperlyConfigured, match=name):
        _settings_read_from({name: value}, monkeypatch)


@pytest.mark.django_db
def test_make_run_demo_account__demo_locked_by_an_earlier_run__new_password_works(monkeypatch):
    # Given: `demo` locked out by wrong passwords typed during an earlier `make run`
    from config import launcher

    monkeypatch.setenv("KAIZEN_DEMO_PASSWORD", "first-run-password")
    launcher._demo_account()
    client = Client(REMOTE_ADDR=fresh_address())
    assert fail(client, 5, username="demo")[-1] == 429
    # When: the next `make run` refreshes the account
    monkeypatch.setenv("KAIZEN_DEMO_PASSWORD", "second-run-password")
    password, _ = launcher._demo_account()
    # Then: the password it prints works at once
    assert logged_in(log_in(client, password, username="demo"))


@pytest.mark.django_db
def test_admin_login__attempts_while_locked__neither_recorded_nor_extending_the_lockout(operator):
    # Given: a locked-out pair
    client = Client(REMOTE_ADDR=fresh_address())
    fail(client, 5)
    recorded = AccessAttempt.objects.values_list("failures_since_start", "post_data").get()
    # When: ten more attempts while locked, wrong and right passwords alike
    statuses = [log_in(client, "wrong" if n % 2 else PASSWORD).status_code for n in range(10)]
    # Then: all refused, and the attempt's row is as the lockout left it
    assert statuses == [429] * 10
    assert AccessAttempt.objects.values_list("failures_since_start", "post_data").get() == recorded
    assert recorded[0] == 5
    # And the lockout ends 15 minutes after the failure that caused it
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    assert logged_in(log_in(client, PASSWORD))

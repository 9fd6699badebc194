"""`manage.py create_api_key`: the key alone on the last line, usable; bad input creates nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey, Application


def _run(*arguments: str) -> list[str]:
    out = StringIO()
    call_command("create_api_key", *arguments, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_create_api_key__name_and_scopes__last_line_is_a_working_key():
    # When
    lines = _run("--name", "ci", "--scopes", "ingest,read")
    # Then
    raw = lines[-1]
    assert raw.startswith("kz_")
    assert raw.strip() == raw
    assert all(raw not in line for line in lines[:-1])
    key = ApiKey.objects.get()
    assert (key.name, key.application.name, key.scopes) == ("ci", "ci", ["ingest", "read"])
    assert key.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert key.created_by == "cli"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/events").status_code == 200


@pytest.mark.django_db
def test_create_api_key__application_and_expiry__stored():
    # When
    _run("--name", "ci", "--scopes", "manage", "--application", "shop", "--expires-in-days", "30")
    # Then
    key = ApiKey.objects.get()
    assert key.application.name == "shop"
    assert key.expires_at is not None
    remaining = key.expires_at - datetime.now(UTC)
    assert timedelta(days=29) < remaining <= timedelta(days=30)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments",
    [
        ("--name", "ci", "--scopes", "ingest,admin"),
        ("--name", "ci", "--scopes", ""),
        ("--name", "ci", "--scopes", ",,"),
        ("--name", "ci"),
        ("--scopes", "read"),
        ("--name", "ci", "--scopes", "read", "--expires-in-days", "0"),
        ("--name", "ci", "--scopes", "read", "--expires-in-days", "-3"),
        ("--name", "ci", "--scopes", "read", "--expires-in-days", "soon"),
        ("--name", "n" * 101, "--scopes", "read"),
        ("--name", "", "--scopes", "read"),
    ],
    ids=[
        "unknown-scope",
        "empty-scopes",
        "only-commas",
        "no-scopes",
        "no-name",
        "zero-days",
        "negative-days",
        "days-not-a-number",
        "name-too-long",
        "empty-name",
    ],
)
def test_create_api_key__bad_arguments__command_error_and_nothing_created(arguments):
    # When
    with pytest.raises(CommandError):
        _run(*arguments)
    # Then
    assert ApiKey.objects.count() == 0
    assert Application.objects.count() == 0

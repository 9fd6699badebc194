"""API keys: random (>= 256 bits), shown once, stored as a SHA-256 digest, revocable, expiring."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.accounts import services
from apps.accounts.models import ApiKey, Application
from apps.core.errors import ValidationFailed

KEY_FORMAT = re.compile(r"^kz_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


def _part(raw: str, name: str) -> str:
    match = KEY_FORMAT.match(raw)
    assert match is not None, raw
    return match[name]


def _secret_bytes(raw: str) -> bytes:
    return base64.urlsafe_b64decode(_part(raw, "secret") + "=")


@pytest.mark.django_db
def test_api_key_create__any_key__has_the_documented_format_and_prefix():
    # When
    key, raw = services.api_key_create(application="app", name="ci", scopes=["read"])
    # Then
    match = KEY_FORMAT.match(raw)
    assert match is not None
    assert match["prefix"] == key.prefix
    assert len(_secret_bytes(raw)) == 32  # 256 bits of secret


@pytest.mark.django_db
def test_api_key_create__many_keys__secrets_distinct_and_every_bit_varies():
    # Given / When
    raws = [
        services.api_key_create(application="app", name=f"k{n}", scopes=["read"])[1]
        for n in range(200)
    ]
    secrets_ = [int.from_bytes(_secret_bytes(raw)) for raw in raws]
    # Then: 256 free bits: none fixed at 0 or 1 across keys, about half of them set
    assert len(set(secrets_)) == 200
    assert len({_part(raw, "prefix") for raw in raws}) == 200
    every_or = 0
    every_and = (1 << 256) - 1
    for secret in secrets_:
        every_or |= secret
        every_and &= secret
    assert every_or == (1 << 256) - 1
    assert every_and == 0
    ones = sum(bin(secret).count("1") for secret in secrets_)
    assert 200 * 128 - 2000 < ones < 200 * 128 + 2000


@pytest.mark.django_db
def test_api_key_create__stored_row__holds_only_the_sha256_digest():
    # When
    key, raw = services.api_key_create(
        application="app", name="ci", scopes=["ingest", "read"], actor="cli"
    )
    # Then: the digest is there, the key and its secret nowhere in the row
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert stored.scopes == ["ingest", "read"]
    assert stored.created_by == "cli"
    secret = _part(raw, "secret")
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM accounts_apikey k WHERE id = %s", [key.pk])
        (row_text,) = cursor.fetchone()
    assert raw not in row_text
    assert secret not in row_text
    assert secret[:16] not in row_text


@pytest.mark.django_db
def test_api_key_authenticate__every_fresh_key__authenticates():
    # Given: base64url secrets contain "_" about half the time; each key must still work
    raws = [
        services.api_key_create(application="app", name=f"k{n}", scopes=["read"])[1]
        for n in range(40)
    ]
    assert any("_" in _part(raw, "secret") for raw in raws)
    # When
    found = [services.api_key_authenticate(raw) for raw in raws]
    # Then
    assert [key is not None for key in found] == [True] * 40


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),
        lambda raw: raw.upper(),
        lambda raw: raw + "x",
        lambda raw: raw[:-1],
        lambda raw: raw.replace("kz_", "kx_"),
        lambda raw: "kz_" + "0" * 12 + raw[15:],
        lambda raw: raw.split("_", 2)[0] + "_" + raw.split("_", 2)[1],
        lambda raw: "",
        lambda raw: "_".join(["kz", "", ""]),
    ],
    ids=[
        "last-char",
        "upper",
        "longer",
        "shorter",
        "scheme",
        "other-prefix",
        "no-secret",
        "empty",
        "empty-parts",
    ],
)
def test_api_key_authenticate__altered_key__none(mangle):
    # Given
    _, raw = services.api_key_create(application="app", name="ci", scopes=["read"])
    # When / Then
    assert services.api_key_authenticate(mangle(raw)) is None


@pytest.mark.django_db
def test_api_key_revoke__twice__first_revocation_time_kept_and_key_refused():
    # Given
    key, raw = services.api_key_create(application="app", name="ci", scopes=["read"])
    first = datetime(2026, 1, 1, tzinfo=UTC)
    # When
    services.api_key_revoke(key=key, at=first)
    services.api_key_revoke(key=key, at=first + timedelta(days=1))
    # Then
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first
    assert services.api_key_authenticate(raw) is None


@pytest.mark.django_db
def test_api_key_authenticate__expired_key__none_and_unexpired__found():
    # Given
    now = datetime.now(UTC)
    _, expired = services.api_key_create(
        application="app", name="old", scopes=["read"], expires_at=now - timedelta(seconds=1)
    )
    _, valid = services.api_key_create(
        application="app", name="new", scopes=["read"], expires_at=now + timedelta(days=1)
    )
    # When / Then
    assert services.api_key_authenticate(expired) is None
    assert services.api_key_authenticate(valid) is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["admin"]}, "scopes"),
        ({"scopes": ["read", "READ"]}, "scopes"),
        ({"scopes": [" ", ""]}, "scopes"),
        ({"name": ""}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"application": "a" * 101}, "application"),
    ],
)
def test_api_key_create__invalid_input__validation_failed_and_nothing_stored(arguments, field):
    # Given
    given = {"application": "app", "name": "ci", "scopes": ["read"]} | arguments
    # When
    with pytest.raises(ValidationFailed) as raised:
        services.api_key_create(**given)
    # Then
    assert [detail["field"] for detail in raised.value.details] == [field]
    assert ApiKey.objects.count() == 0
    assert Application.objects.count() == 0


@pytest.mark.django_db
def test_api_key_create__repeated_scopes__stored_once_sorted():
    # When
    key, _ = services.api_key_create(
        application="app", name="ci", scopes=["read", " ingest", "read"]
    )
    # Then
    assert key.scopes == ["ingest", "read"]

"""The per-process API key cache: no database query per request, revocation still immediate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from apps.accounts import services
from apps.accounts.authentication import KeyPrincipal, authenticate_bearer
from apps.accounts.models import ApiKey


@override_settings(KAIZEN_API_KEY_CACHE_SECONDS=60)
@pytest.mark.django_db
def test_authenticate__cached_key__no_query(django_assert_num_queries):
    # Given a key looked up once
    key, raw = services.api_key_create(application="app", name="k", scopes=["read"])
    assert services.api_key_authenticate(raw) == key
    # When it is used again
    with django_assert_num_queries(0):
        again = services.api_key_authenticate(raw)
    # Then the cache answered
    assert again == key


@override_settings(KAIZEN_API_KEY_CACHE_SECONDS=60)
@pytest.mark.django_db
def test_authenticate__revoked_through_service__refused_at_once():
    # Given a cached key
    key, raw = services.api_key_create(application="app", name="k", scopes=["read"])
    services.api_key_authenticate(raw)
    # When it is revoked
    services.api_key_revoke(key=key)
    # Then it no longer authenticates, cache or not
    assert services.api_key_authenticate(raw) is None


@override_settings(KAIZEN_API_KEY_CACHE_SECONDS=60)
@pytest.mark.django_db
def test_authenticate__cached_key_expires__refused():
    # Given a cached key that expires in the past (as seen by the cached copy's expiry)
    key, raw = services.api_key_create(
        application="app",
        name="k",
        scopes=["read"],
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    cached = services.api_key_authenticate(raw)
    assert cached is not None
    cached.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    # Then the expiry is checked on every use
    assert services.api_key_authenticate(raw) is None
    assert ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).exists()


@override_settings(KAIZEN_API_KEY_CACHE_SECONDS=60)
@pytest.mark.django_db
def test_authenticate__wrong_secret_same_prefix__refused_even_when_prefix_cached():
    key, raw = services.api_key_create(application="app", name="k", scopes=["read"])
    services.api_key_authenticate(raw)
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert services.api_key_authenticate(forged) is None


@override_settings(KAIZEN_API_KEY_CACHE_SECONDS=60)
@pytest.mark.django_db
def test_authenticate_bearer__scopes_changed_then_key_looked_up_again__new_scopes():
    # Given a key whose principal was made from the cached key
    key, raw = services.api_key_create(application="app", name="k", scopes=["read"])
    header = f"Bearer {raw}".encode()
    first = _principal(header)
    assert _principal(header) is first
    assert first.scopes == {"read"}
    # When its scopes change and the key cache lets go of it (as its time runs out)
    ApiKey.objects.filter(pk=key.pk).update(scopes=["read", "ingest"])
    services.api_key_cache_clear()
    # Then the caller is seen with the new scopes
    assert _principal(header).scopes == {"read", "ingest"}


def _principal(header: bytes) -> KeyPrincipal:
    caller = authenticate_bearer(header)
    assert caller is not None
    return caller[0]

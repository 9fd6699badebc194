"""Bearer authentication and scopes over HTTP: 401 with WWW-Authenticate, 403, 405 before 403."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import ApiKey

URL = "/api/v1/events"  # GET needs `read`


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["details"] == []
    error: dict[str, Any] = body["error"]
    return error


def _client(authorization: str | None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


@pytest.fixture
def raw_key(db: None) -> str:
    return services.api_key_create(application="app", name="ci", scopes=["read"])[1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNzd29yZA==",
        "Token {key}",
        "{key}",
        "Bearer {key} extra",
        "Bearer kz_000000000000_" + "A" * 43,
        "Bearer kz_short",
        "Bearer not-a-key",
        "Bearer {key}x",
        "Bearer {prefix_only}",
        "Bearer é",
    ],
    ids=[
        "missing",
        "empty",
        "bearer-alone",
        "bearer-space",
        "basic",
        "token-scheme",
        "no-scheme",
        "extra-part",
        "unknown",
        "malformed-short",
        "malformed-text",
        "wrong-secret",
        "prefix-only",
        "non-ascii",
    ],
)
def test_request__missing_malformed_or_unknown_key__401_with_www_authenticate(
    raw_key, authorization
):
    # Given
    if authorization is not None:
        authorization = authorization.format(key=raw_key, prefix_only=raw_key.rsplit("_", 1)[0])
    keys_before = list(ApiKey.objects.values_list("id", "revoked_at", "last_used_at"))
    # When
    response = _client(authorization).get(URL)
    # Then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="kaizen"'
    assert _error(response)["code"] == "unauthenticated"
    assert list(ApiKey.objects.values_list("id", "revoked_at", "last_used_at")) == keys_before


@pytest.mark.django_db
def test_request__valid_key_any_scheme_case__200(raw_key):
    # When
    responses = [_client(f"{scheme} {raw_key}").get(URL) for scheme in ("Bearer", "bearer")]
    # Then
    assert [response.status_code for response in responses] == [200, 200]


@pytest.mark.django_db
def test_request__revoked_key__401(raw_key):
    # Given
    key = services.api_key_authenticate(raw_key)
    assert key is not None
    assert _client(f"Bearer {raw_key}").get(URL).status_code == 200
    services.api_key_revoke(key=key)
    # When
    response = _client(f"Bearer {raw_key}").get(URL)
    # Then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="kaizen"'
    assert _error(response) == {
        "code": "unauthenticated",
        "message": "Unknown, revoked or expired API key.",
        "details": [],
    }


@pytest.mark.django_db
def test_request__expired_key__401():
    # Given
    _, raw = services.api_key_create(
        application="app",
        name="old",
        scopes=["read"],
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    # When
    response = _client(f"Bearer {raw}").get(URL)
    # Then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="kaizen"'
    assert _error(response)["code"] == "unauthenticated"


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [("ingest",), ("manage",), ("ingest", "manage")])
def test_request__key_without_the_needed_scope__403(make_client, scopes):
    # When
    response = make_client(*scopes).get(URL)
    # Then
    assert response.status_code == 403
    assert _error(response) == {
        "code": "forbidden",
        "message": "This API key lacks the scope this request needs.",
        "details": [],
    }


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [("ingest",), ("read",), ("ingest", "read", "manage")])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_request__method_the_view_lacks__405_whatever_the_scope(make_client, scopes, method):
    # When
    response = getattr(make_client(*scopes), method)(URL, {}, format="json")
    # Then: 405 beats 403; the Allow header lists what exists
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["head", "options"])
def test_request__head_and_options__need_what_get_needs(make_client, method):
    # When
    allowed = getattr(make_client("read"), method)(URL)
    refused = getattr(make_client("ingest"), method)(URL)
    # Then
    assert allowed.status_code == 200
    assert refused.status_code == 403

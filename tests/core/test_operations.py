"""The operations endpoints: /healthz, /readyz, /metrics, the schema and docs."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_healthz__no_key__answers_ok(anonymous):
    # When
    response = anonymous.get("/healthz")
    # Then
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz__database_and_redis_up__ready_with_broker_state(anonymous):
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["broker"] == {"status": "ok"}


@pytest.mark.django_db
def test_schema__no_key__is_openapi_3(anonymous):
    response = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
    assert "/api/v1/events" in response.json()["paths"]

"""Shared fixtures: API clients holding keys of given scopes, against the real database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.accounts import services as account_services

ClientFactory = Callable[..., APIClient]


@pytest.fixture
def make_client(db: None) -> ClientFactory:
    """An APIClient authenticated with a fresh key of the given scopes."""

    def make(*scopes: str, application: str = "tests") -> APIClient:
        _, raw = account_services.api_key_create(
            application=application, name="-".join(scopes) or "none", scopes=scopes or ["read"]
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def reader(make_client: ClientFactory) -> APIClient:
    return make_client("read")


@pytest.fixture
def manager(make_client: ClientFactory) -> APIClient:
    return make_client("read", "manage")


@pytest.fixture
def ingester(make_client: ClientFactory) -> APIClient:
    return make_client("ingest")


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()

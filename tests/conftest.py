"""Shared fixtures: API clients holding keys of given scopes, against the real database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts import services as account_services

ClientFactory = Callable[..., APIClient]


def _not_json(constant: str) -> Any:
    raise AssertionError(f"the answer holds {constant}, which is not JSON")


def strict_json(content: bytes) -> Any:
    """An answer's body as JSON, failing on NaN and ±Infinity (Python's json reads them)."""
    return json.loads(content, parse_constant=_not_json)


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Forget what this process cached of rows an earlier test rolled back or flushed.

    Model version ids, experiment configuration, API keys and rate-limit leases are cached
    per process (they never go away in production); a test database does roll them back
    under the process.
    """
    from apps.accounts import services as accounts_services
    from apps.accounts import throttling
    from apps.experiments import selectors as experiment_selectors
    from apps.ingest import selectors as ingest_selectors

    caches = (
        ingest_selectors.model_version_cache_clear,
        experiment_selectors.config_cache_clear,
        accounts_services.api_key_cache_clear,
        throttling.leases_clear,
    )
    for clear in caches:
        clear()
    yield
    for clear in caches:
        clear()


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

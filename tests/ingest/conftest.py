"""Fixtures of the ingestion tests: the churn model and process caches reset per test."""

from __future__ import annotations

import pytest

from apps.registry.models import ModelVersion
from tests.ingest.factories import register_churn


@pytest.fixture
def churn(db: None) -> dict[str, ModelVersion]:
    return register_churn()

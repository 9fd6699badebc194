"""Fixtures of the ingestion tests: the churn model and process caches reset per test."""

from __future__ import annotations

import pytest

from apps.experiments import selectors as experiment_selectors
from apps.ingest import selectors
from apps.registry.models import ModelVersion
from tests.ingest.factories import register_churn


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Each test's rows are rolled back, so ids cached by an earlier test would dangle.
    selectors.model_version_cache_clear()
    experiment_selectors.config_cache_clear()
    yield
    selectors.model_version_cache_clear()
    experiment_selectors.config_cache_clear()


@pytest.fixture
def churn(db: None) -> dict[str, ModelVersion]:
    return register_churn()

"""Bodies of ingestion requests, and the registry/experiment rows they refer to."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from rest_framework.test import APIClient

from apps.experiments import services as experiment_services
from apps.experiments.models import Experiment
from apps.registry.models import ModelVersion
from tests.experiments.factories import ExperimentFactory, VariantFactory
from tests.registry.factories import MLModelFactory, ModelVersionFactory

OCCURRED_AT = "2026-11-01T10:00:00Z"


def register_churn() -> dict[str, ModelVersion]:
    """Model `churn` with versions 2 and 3."""
    model = MLModelFactory.create(name="churn")
    return {
        version: ModelVersionFactory.create(model=model, version=version) for version in ("2", "3")
    }


def churn_experiment(versions: dict[str, ModelVersion], key: str = "churn-v3-vs-v2") -> Experiment:
    """An experiment of `churn`: control serves version 2, treatment version 3."""
    experiment = ExperimentFactory.create(key=key, model=versions["2"].model, status="running")
    VariantFactory.create(
        experiment=experiment, key="control", model_version=versions["2"], position=0
    )
    VariantFactory.create(
        experiment=experiment, key="treatment", model_version=versions["3"], position=1
    )
    experiment_services.config_changed()
    return experiment


def prediction(**fields: Any) -> dict[str, Any]:
    """A valid prediction of churn@3; `fields` override (None removes a field)."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "model": "churn",
        "model_version": "3",
        "subject": "user-1842",
        "attributes": {"country": "DE", "plan": "pro"},
        "features": {"tenure_days": 412, "sessions_7d": 3},
        "output": {"label": "churn", "score": 0.83},
        "explanation": {"tenure_days": -0.12, "sessions_7d": 0.31},
        "latency_ms": 12.5,
        "occurred_at": OCCURRED_AT,
    }
    return _apply(body, fields)


def feedback(**fields: Any) -> dict[str, Any]:
    """A valid click feedback on a random prediction id; `fields` override (None removes)."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "prediction_id": str(uuid.uuid4()),
        "metric": "click",
        "value": 1,
        "occurred_at": OCCURRED_AT,
    }
    return _apply(body, fields)


def _apply(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def post(client: APIClient, path: str, body: Any, **extra: Any) -> Any:
    """POST `body` (bytes as they are, anything else as JSON) with the JSON content type."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    content_type = extra.pop("content_type", "application/json")
    # Django sends bytes as they are (the stub says str).
    return client.generic("POST", path, data, content_type=content_type, **extra)  # type: ignore[arg-type]

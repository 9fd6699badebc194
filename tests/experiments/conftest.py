"""Fixtures of the experiments tests: a registered model with versions, and a valid config."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apps.experiments import services
from apps.experiments.validation import parse_payload
from tests.experiments.factories import MLModelFactory, ModelVersionFactory

ACTOR = "user:alice"

PAYLOAD: dict[str, Any] = {
    "key": "churn-v3-vs-v2",
    "model": "churn",
    "description": "Does v3 keep more customers?",
    "hypothesis": "v3 lifts clicks by 5%",
    "variants": [
        {"key": "control", "model_version": "2", "weight": 0.5},
        {"key": "treatment", "model_version": "3", "weight": 0.5},
    ],
    "control": "control",
    "metrics": [{"key": "click", "type": "binomial"}, {"key": "revenue", "type": "mean"}],
    "primary_metric": "click",
    "guardrail_metrics": ["revenue"],
    "breakdown_attributes": ["country"],
}


@pytest.fixture
def churn(db):
    model = MLModelFactory(name="churn", segment_attributes=["country", "plan"])
    for version in ("1", "2", "3"):
        ModelVersionFactory(model=model, version=version)
    return model


@pytest.fixture
def payload() -> dict[str, Any]:
    return copy.deepcopy(PAYLOAD)


@pytest.fixture
def make_experiment(churn):
    """Create (and optionally start) an experiment through the service."""

    def make(start: bool = False, **changes: Any):
        body = copy.deepcopy(PAYLOAD)
        body.update(changes)
        experiment = services.experiment_create(spec=parse_payload(body), actor=ACTOR)
        if start:
            experiment = services.experiment_start(key=experiment.key, actor=ACTOR)
        return experiment

    return make

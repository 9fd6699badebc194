"""An experiment world built through the REST API, and the raw values to check against."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

NOW = datetime.now(UTC).replace(microsecond=0)


def at(minutes: int = 0) -> str:
    return (NOW - timedelta(minutes=60) + timedelta(minutes=minutes)).isoformat()


@dataclass
class World:
    """What the test posted, kept raw so expectations come from it, not from Kaizen."""

    admin: APIClient
    key: str
    variants: tuple[str, ...]
    # subject -> variants it was exposed to, in order of arrival
    exposures: dict[str, list[str]] = field(default_factory=dict)
    # subject -> metric -> sum of numeric feedback on its tagged predictions
    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def post(self, path: str, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 1000):
            response = self.admin.post(
                path, {"events": events[start : start + 1000]}, format="json"
            )
            assert response.status_code == 201, response.json()

    def predict(self, subject: str, variant: str, country: str) -> dict[str, Any]:
        if subject not in self.exposures:
            self.attributes[subject] = {"country": country}
        self.exposures.setdefault(subject, [])
        if variant not in self.exposures[subject]:
            self.exposures[subject].append(variant)
        return {
            "id": str(uuid.uuid4()),
            "model": "churn",
            "model_version": {"control": "1", "treatment": "2", "other": "3"}[variant],
            "subject": subject,
            "experiment": self.key,
            "variant": variant,
            "attributes": {"country": country},
            "output": {"score": 0.5},
            "occurred_at": at(),
        }

    def feedback(self, prediction: dict[str, Any], metric: str, value: float) -> dict[str, Any]:
        subject = prediction["subject"]
        sums = self.sums.setdefault(subject, {})
        sums[metric] = sums.get(metric, 0.0) + value
        return {
            "id": str(uuid.uuid4()),
            "prediction_id": prediction["id"],
            "metric": metric,
            "value": value,
            "occurred_at": at(1),
        }

    def units(self) -> dict[str, list[str]]:
        """variant -> subjects exposed to that variant only."""
        found: dict[str, list[str]] = {variant: [] for variant in self.variants}
        for subject, seen in self.exposures.items():
            if len(seen) == 1:
                found[seen[0]].append(subject)
        return found

    def values(
        self, variant: str, metric: str, binomial: bool, country: str | None = None
    ) -> list[float]:
        out = []
        for subject in self.units()[variant]:
            if country is not None and self.attributes[subject]["country"] != country:
                continue
            value = self.sums.get(subject, {}).get(metric, 0.0)
            out.append((1.0 if value > 0 else 0.0) if binomial else value)
        return out


@pytest.fixture
def admin(make_client) -> APIClient:
    return make_client("ingest", "read", "manage")


@pytest.fixture
def world(admin: APIClient) -> World:
    """A running three-variant experiment on model churn (versions 1, 2, 3)."""
    # Given a model with three versions and an experiment between them
    response = admin.post(
        "/api/v1/models",
        {
            "name": "churn",
            "task": "binary_classification",
            "positive_label": "churn",
            "segment_attributes": ["country"],
        },
        format="json",
    )
    assert response.status_code in (200, 201), response.json()
    for version in ("1", "2", "3"):
        response = admin.post("/api/v1/models/churn/versions", {"version": version}, format="json")
        assert response.status_code in (200, 201), response.json()
    key = f"exp-{uuid.uuid4().hex[:8]}"
    response = admin.post(
        "/api/v1/experiments",
        {
            "key": key,
            "model": "churn",
            "variants": [
                {"key": "control", "model_version": "1", "weight": 0.4},
                {"key": "treatment", "model_version": "2", "weight": 0.4},
                {"key": "other", "model_version": "3", "weight": 0.2},
            ],
            "control": "control",
            "metrics": [{"key": "click", "type": "binomial"}, {"key": "revenue", "type": "mean"}],
            "primary_metric": "click",
            "breakdown_attributes": ["country"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert admin.post(f"/api/v1/experiments/{key}/start").status_code == 200
    return World(admin=admin, key=key, variants=("control", "treatment", "other"))


def populate(world: World, *, subjects: int, seed: int) -> None:
    """Random tagged predictions and feedback; some feedback is posted before its prediction."""
    rng = random.Random(seed)
    rates = {"control": 0.2, "treatment": 0.3, "other": 0.25}
    predictions: list[dict[str, Any]] = []
    early: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    for number in range(subjects):
        subject = f"s{seed}-{number}"
        variant = rng.choices(world.variants, weights=[0.4, 0.4, 0.2])[0]
        country = rng.choice(["DE", "FR", "US"])
        for _ in range(rng.randint(1, 3)):
            prediction = world.predict(subject, variant, country)
            predictions.append(prediction)
            if rng.random() < rates[variant]:
                (early if rng.random() < 0.2 else late).append(
                    world.feedback(prediction, "click", 1)
                )
            if rng.random() < 0.5:
                late.append(world.feedback(prediction, "revenue", round(rng.expovariate(0.1), 2)))
    world.post("/api/v1/feedback", early)
    world.post("/api/v1/predictions", predictions)
    world.post("/api/v1/feedback", late)

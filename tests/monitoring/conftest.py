"""A registered model, rules made through the services, and predictions with labels posted
through ingestion, kept raw so expectations come from what the test posted."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings

from apps.ingest import services as ingest_services
from apps.monitoring import services
from apps.monitoring.models import Rule
from apps.monitoring.validation import parse_rule
from apps.registry import services as registry_services
from apps.registry.models import MLModel

ACTOR = "user:alice"
# A few minutes into the current hour's window, whatever the minute the test runs at.
NOW = datetime.now(UTC)
RULE: dict[str, Any] = {
    "name": "de-accuracy",
    "model": "churn",
    "metric": "accuracy",
    "segment": {"country": "DE"},
    # Two hours: the posted hour stays in the window even if the clock turns an hour meanwhile.
    "window": "2h",
    "comparator": "lt",
    "threshold": 0.8,
    "min_samples": 200,
    "cooldown": "6h",
    "action": "retrain",
}


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The real broker with the monitoring queues emptied before and after."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("retraining", "notifications")
    yield client
    client.delete("retraining", "notifications")


def make_churn() -> MLModel:
    """Binary model `churn` (segments country, plan), versions 1 and 2, production → 1."""
    model, _ = registry_services.model_create(
        name="churn",
        task="binary_classification",
        positive_label="churn",
        segment_attributes=["country", "plan"],
        actor=ACTOR,
    )
    for version in ("1", "2"):
        registry_services.model_version_register(model="churn", version=version, actor=ACTOR)
    registry_services.alias_move(model="churn", alias="production", version="1", actor=ACTOR)
    return model


@pytest.fixture
def churn(db: None) -> MLModel:
    return make_churn()


def make_rule(**changes: Any) -> tuple[Rule, str | None]:
    body = {**RULE, **changes}
    spec, _ = parse_rule(body, allow_private=True)
    return services.rule_create(spec=spec, actor=ACTOR)


@dataclass
class Traffic:
    """Predictions of churn@1 with their true labels, posted through ingestion."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        *,
        country: str,
        count: int,
        correct: int,
        at: datetime | None = None,
        version: str = "1",
    ) -> None:
        """`count` labeled predictions in `country`, the first `correct` of them right.

        The truth follows the features (churn when tenure is short), so a trainer can learn it.
        """
        moment = (at or NOW).isoformat().replace("+00:00", "Z")
        for number in range(count):
            tenure = self.rng.randint(1, 400)
            plan = self.rng.choice(["free", "pro"])
            truth = "churn" if tenure < 150 else "stay"
            wrong = "stay" if truth == "churn" else "churn"
            prediction_id = str(uuid.uuid4())
            self.predictions.append(
                {
                    "id": prediction_id,
                    "model": "churn",
                    "model_version": version,
                    "subject": f"{country}-{number}",
                    "attributes": {"country": country, "plan": plan},
                    "features": {"tenure_days": tenure, "plan": plan, "active": tenure > 30},
                    "output": {"label": truth if number < correct else wrong},
                    "latency_ms": 10.0,
                    "occurred_at": moment,
                }
            )
            self.feedback.append(
                {
                    "id": str(uuid.uuid4()),
                    "prediction_id": prediction_id,
                    "metric": "label",
                    "label": truth,
                    "occurred_at": moment,
                }
            )

    def post(self) -> None:
        for start in range(0, len(self.predictions), 1000):
            body = {"events": self.predictions[start : start + 1000]}
            ingest_services.predictions_ingest(body=orjson.dumps(body), actor="tests")
        for start in range(0, len(self.feedback), 1000):
            body = {"events": self.feedback[start : start + 1000]}
            ingest_services.feedback_ingest(body=orjson.dumps(body), actor="tests")
        self.predictions.clear()
        self.feedback.clear()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)

"""One of everything a path can name (model, version, alias, experiment, prediction, feedback,
rule, alert, retraining job), for the tests that aim hostile parameters at every endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from apps.ingest import services as ingest_services
from apps.monitoring.models import Alert, RetrainingJob
from apps.registry.models import ModelVersion
from tests.ingest.factories import churn_experiment, feedback, prediction
from tests.monitoring.conftest import make_churn, make_rule

EXPERIMENT = "churn-v3-vs-v2"
NOW = datetime.now(UTC)


@dataclass(frozen=True)
class World:
    prediction: str
    feedback: str
    rule: str
    alert: str
    job: str

    def value(self, path: str, parameter: str) -> str:
        """The value of `parameter` in `path` (an OpenAPI path) that names an existing row."""
        named = {
            "name": "churn",
            "version": "2",
            "alias": "production",
            "key": EXPERIMENT,
            "rule_id": self.rule,
            "alert_id": self.alert,
            "job_id": self.job,
            "id": self.feedback if path.startswith("/api/v1/feedback") else self.prediction,
        }
        return named[parameter]


def build_world() -> World:
    """Model churn (versions 1 and 2, production → 1), a running experiment between them, a
    prediction of it with a feedback, a rule, an alert of the rule and a queued job."""
    model = make_churn()
    versions = {version.version: version for version in ModelVersion.objects.filter(model=model)}
    churn_experiment({"2": versions["1"], "3": versions["2"]}, key=EXPERIMENT)
    predicted = prediction(model_version="2")
    ingest_services.predictions_ingest(body=orjson.dumps(predicted), actor="tests")
    answered = feedback(prediction_id=predicted["id"])
    ingest_services.feedback_ingest(body=orjson.dumps(answered), actor="tests")
    rule, _ = make_rule()
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    alert = Alert.objects.create(
        rule=rule,
        model=model,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=rule.threshold,
        observed_value=0.5,
        sample_size=250,
        window=rule.window,
        window_start=start,
        window_end=start + rule.window,
        segment={"country": "DE"},
        action=rule.action,
        occurred_at=NOW,
    )
    job = RetrainingJob.objects.create(
        model=model,
        rule=rule,
        alert=alert,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=rule.threshold,
        observed_value=0.5,
        sample_size=250,
        window=rule.window,
        segment={"country": "DE"},
        created_at=NOW,
        blocks_until=NOW + rule.cooldown,
    )
    return World(
        prediction=predicted["id"],
        feedback=answered["id"],
        rule=str(rule.pk),
        alert=str(alert.pk),
        job=str(job.pk),
    )

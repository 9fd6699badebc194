"""The performance projection and its reads: numbers against scikit-learn/numpy on raw events.

Every world is posted through the REST API and kept raw here, so expectations come from
what the test posted, never from Kaizen's tables.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from apps.analytics import selectors, services
from apps.analytics.models import (
    ConfusionCell,
    LatencyCell,
    PerformanceCell,
    PerformanceSegment,
    PredictionOutcome,
)
from apps.analytics.performance_metrics import RELATIVE_ERROR
from apps.analytics.projections import runner
from apps.analytics.projections.performance import (
    TOP_VALUES,
    PerformanceProjection,
    performance_projection,
)
from apps.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db(transaction=True)

# Six whole hours ending at the current hour, so the default range (7 days) covers them.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
COUNTRIES = ("DE", "FR", "US")


class WorkerKilled(BaseException):
    """A worker dying mid-fold: nothing in Kaizen catches it (as nothing can catch SIGKILL)."""


def at(hours: int, minutes: int = 0, seconds: int = 0) -> datetime:
    return HOUR + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class Posted:
    """A model and the raw events posted for it."""

    client: APIClient
    model: str
    task: str
    positive_label: str = "churn"
    threshold: float = 0.5
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # prediction id -> [(occurred_at, posting order, label | value)]
    truths: dict[str, list[tuple[datetime, int, Any]]] = field(default_factory=dict)
    posted_feedback: int = 0

    def post(self, path: str, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 1000):
            response = self.client.post(
                path, {"events": events[start : start + 1000]}, format="json"
            )
            assert response.status_code == 201, response.json()

    def prediction(
        self,
        *,
        version: str = "1",
        occurred_at: datetime,
        attributes: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        latency_ms: float | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "model": self.model,
            "model_version": version,
            "occurred_at": text(occurred_at),
        }
        if attributes is not None:
            event["attributes"] = attributes
        if error is not None:
            event["error"] = error
        else:
            event["output"] = output
        if latency_ms is not None:
            event["latency_ms"] = latency_ms
        self.predictions[event["id"]] = {**event, "at": occurred_at}
        return event

    def feedback(
        self,
        prediction_id: str,
        *,
        occurred_at: datetime,
        label: str | None = None,
        value: float | None = None,
        metric: str = "label",
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "prediction_id": prediction_id,
            "metric": metric,
            "occurred_at": text(occurred_at),
        }
        if label is not None:
            event["label"] = label
        else:
            event["value"] = value
        # Label feedback is the truth of classifiers, value feedback that of regressions.
        if (label is not None) == (self.task != "regression"):
            self.posted_feedback += 1
            self.truths.setdefault(prediction_id, []).append(
                (occurred_at, self.posted_feedback, label if label is not None else value)
            )
        return event

    # --- expectations from the raw events -------------------------------------------------

    def truth(self, prediction_id: str) -> Any:
        found = self.truths.get(prediction_id)
        return max(found)[2] if found else None

    def predicted(self, event: dict[str, Any]) -> Any:
        output = event.get("output")
        if output is None:
            return None
        if self.task == "binary_classification":
            if "label" in output:
                return output["label"] == self.positive_label
            if "score" in output:
                return output["score"] >= self.threshold
            return None
        if self.task == "multiclass_classification":
            return output.get("label")
        return output.get("value")

    def groups(
        self,
        *,
        bucket: str = "hour",
        attribute: str | None = None,
        version: str | None = None,
        segment_of: Callable[[dict[str, Any]], Any] | None = None,
    ) -> dict[tuple[str, str, Any], list[dict[str, Any]]]:
        """(bucket start, version, segment) -> the predictions in that row."""
        found: dict[tuple[str, str, Any], list[dict[str, Any]]] = defaultdict(list)
        for event in self.predictions.values():
            if version is not None and event["model_version"] != version:
                continue
            moment: datetime = event["at"]
            start = moment.replace(minute=0, second=0, microsecond=0)
            if bucket == "day":
                start = start.replace(hour=0)
            if attribute is None:
                segment = None
            elif segment_of is not None:
                segment = {attribute: segment_of(event)}
            else:
                raw = (event.get("attributes") or {}).get(attribute)
                segment = {attribute: None if raw is None else str(raw)}
            key = (text(start), event["model_version"], repr(segment))
            found[key].append(event)
        return found

    def labeled(self, events: Iterable[dict[str, Any]]) -> list[tuple[Any, Any]]:
        """(predicted, truth) of the events with both."""
        pairs = []
        for event in events:
            guess, truth = self.predicted(event), self.truth(event["id"])
            if guess is not None and truth is not None:
                if self.task == "binary_classification":
                    truth = truth == self.positive_label
                pairs.append((guess, truth))
        return pairs


def register(
    client: APIClient,
    name: str,
    task: str,
    *,
    versions: Iterable[str] = ("1", "2"),
    threshold: float = 0.5,
    segment_attributes: Iterable[str] = ("country", "plan"),
) -> Posted:
    body: dict[str, Any] = {
        "name": name,
        "task": task,
        "segment_attributes": list(segment_attributes),
    }
    if task == "binary_classification":
        body.update(positive_label="churn", decision_threshold=threshold)
    response = client.post("/api/v1/models", body, format="json")
    assert response.status_code == 201, response.json()
    for version in versions:
        response = client.post(
            f"/api/v1/models/{name}/versions", {"version": version}, format="json"
        )
        assert response.status_code == 201, response.json()
    return Posted(client=client, model=name, task=task, threshold=threshold)


def aggregate(client: APIClient) -> None:
    response = client.post("/api/v1/aggregations/run")
    assert response.status_code == 200, response.json()


def performance(client: APIClient, model: str, **params: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/models/{model}/performance", params)
    assert response.status_code == 200, response.json()
    return response.json()


def rows_by_key(body: dict[str, Any]) -> dict[tuple[str, str, Any], dict[str, Any]]:
    return {(row["start"], row["version"], repr(row["segment"])): row for row in body["results"]}


def assert_latency(row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    latencies = np.array([e["latency_ms"] for e in events if "latency_ms" in e], dtype=float)
    for name, q in (("latency_p50", 50), ("latency_p95", 95), ("latency_p99", 99)):
        if latencies.size == 0:
            assert row[name] is None
            continue
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert abs(row[name] - exact) <= RELATIVE_ERROR * exact * (1 + 1e-9), (name, exact)


def assert_counts(posted: Posted, row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    errors = sum(1 for e in events if "error" in e)
    assert row["count"] == len(events)
    assert row["errors"] == errors
    assert row["error_rate"] == pytest.approx(errors / len(events), rel=1e-12)
    assert row["labeled"] == len(posted.labeled(events))
    assert_latency(row, events)


def assert_binary(posted: Posted, row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    assert_counts(posted, row, events)
    pairs = posted.labeled(events)
    assert row["mae"] is None and row["rmse"] is None
    if not pairs:
        assert (row["accuracy"], row["precision"], row["recall"], row["f1"]) == (None,) * 4
        return
    y_pred = [guess for guess, _ in pairs]
    y_true = [truth for _, truth in pairs]
    assert row["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), rel=1e-12)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=True, zero_division=np.nan
    )
    for name, expected in (("precision", precision), ("recall", recall), ("f1", f1)):
        if math.isnan(expected):
            assert row[name] is None, name
        else:
            assert row[name] == pytest.approx(expected, rel=1e-12), name


def assert_multiclass(posted: Posted, row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    assert_counts(posted, row, events)
    pairs = posted.labeled(events)
    if not pairs:
        assert (row["accuracy"], row["precision"], row["recall"], row["f1"]) == (None,) * 4
        return
    y_pred = [guess for guess, _ in pairs]
    y_true = [truth for _, truth in pairs]
    assert row["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), rel=1e-12)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    assert row["precision"] == pytest.approx(precision, rel=1e-12)
    assert row["recall"] == pytest.approx(recall, rel=1e-12)
    assert row["f1"] == pytest.approx(f1, rel=1e-12)
    assert row["mae"] is None and row["rmse"] is None


def assert_regression(posted: Posted, row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    assert_counts(posted, row, events)
    pairs = posted.labeled(events)
    assert (row["accuracy"], row["precision"], row["recall"], row["f1"]) == (None,) * 4
    if not pairs:
        assert row["mae"] is None and row["rmse"] is None
        return
    errors = np.array([guess - truth for guess, truth in pairs])
    assert row["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-9)
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-9)


CHECKS = {
    "binary_classification": assert_binary,
    "multiclass_classification": assert_multiclass,
    "regression": assert_regression,
}


def assert_matches(posted: Posted, **query: Any) -> int:
    """Every row of the endpoint against the raw events; the number of rows."""
    params = {key: value for key, value in query.items() if value is not None}
    params.setdefault("start", text(at(-1)))
    params.setdefault("end", text(at(8)))
    body = performance(posted.client, posted.model, **params)
    rows = rows_by_key(body)
    expected = posted.groups(
        bucket=query.get("bucket") or "hour",
        attribute=query.get("segment"),
        version=query.get("version"),
    )
    assert sorted(rows) == sorted(expected)
    for key, events in expected.items():
        CHECKS[posted.task](posted, rows[key], events)
    return len(rows)


# --- worlds ---------------------------------------------------------------------------------


def attributes(rng: random.Random) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    found: dict[str, Any] = {"country": rng.choice(COUNTRIES)}
    if roll > 0.15:
        found["plan"] = rng.choice(["free", "pro"])
    return found


CLASSES = ["a", "b", "c", "d"]


def output(posted: Posted, rng: random.Random) -> dict[str, Any]:
    if posted.task == "binary_classification":
        score = round(rng.random(), 3)
        found: dict[str, Any] = {"score": score}
        if rng.random() < 0.4:
            found["label"] = "churn" if score > 0.7 else "stay"
        return found
    if posted.task == "multiclass_classification":
        return {"label": rng.choice(CLASSES)} if rng.random() < 0.95 else {"score": 0.3}
    return {"value": round(rng.gauss(50, 20), 4)}


def truth(posted: Posted, rng: random.Random, event: dict[str, Any]) -> dict[str, Any]:
    """A truth feedback for `event`, some minutes to hours after it (never in the future)."""
    when = event["at"] + timedelta(minutes=rng.randrange(1, 600), seconds=rng.randrange(60))
    when = min(when, datetime.now(UTC) - timedelta(seconds=rng.randrange(1, 3000)))
    if posted.task == "binary_classification":
        label = "churn" if rng.random() < 0.35 else "stay"
        return posted.feedback(event["id"], occurred_at=when, label=label)
    if posted.task == "multiclass_classification":
        return posted.feedback(event["id"], occurred_at=when, label=rng.choice(CLASSES))
    value = round(rng.gauss(50, 20), 4)
    return posted.feedback(event["id"], occurred_at=when, value=value, metric="actual")


def other_kind(posted: Posted, event: dict[str, Any]) -> dict[str, Any]:
    """Feedback of the kind that is never the truth of this task."""
    if posted.task == "regression":
        return posted.feedback(event["id"], occurred_at=event["at"], label="no", metric="note")
    return posted.feedback(event["id"], occurred_at=event["at"], value=1, metric="click")


def populate(posted: Posted, *, predictions: int, seed: int, hours: int = 6) -> None:
    """Random predictions over `hours` hours, truth feedback posted before, with and after
    them, some revised later (the latest occurred_at wins); some predictions fail."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    early: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    relabels: list[dict[str, Any]] = []
    for number in range(predictions):
        failed = rng.random() < 0.07
        event = posted.prediction(
            version=rng.choice(["1", "2"]),
            occurred_at=at(rng.randrange(hours), rng.randrange(60), number % 60),
            attributes=attributes(rng),
            output=None if failed else output(posted, rng),
            error="timeout" if failed else None,
            latency_ms=None if rng.random() < 0.1 else round(rng.lognormvariate(3, 1), 3),
        )
        events.append(event)
        if rng.random() < 0.7:
            (early if rng.random() < 0.2 else late).append(
                truth(posted, rng, posted.predictions[event["id"]])
            )
            if rng.random() < 0.25:
                relabels.append(truth(posted, rng, posted.predictions[event["id"]]))
        if rng.random() < 0.2:
            late.append(other_kind(posted, posted.predictions[event["id"]]))
    posted.post("/api/v1/feedback", early)
    posted.post("/api/v1/predictions", events)
    posted.post("/api/v1/feedback", late)
    posted.post("/api/v1/feedback", relabels)


@pytest.fixture
def admin(make_client) -> APIClient:
    return make_client("ingest", "read", "manage")


def snapshot() -> dict[str, list[tuple]]:
    """Every table of the projection, with segment ids replaced by what they stand for."""
    segments = {
        row[0]: row[1:]
        for row in PerformanceSegment.objects.values_list(
            "id", "model_id", "attribute", "kind", "value"
        )
    }

    def cells(model: Any, *columns: str) -> list[tuple]:
        rows = model.objects.values_list("segment_id", *columns)
        return sorted(((segments[row[0]], *row[1:]) for row in rows), key=repr)

    outcomes = sorted(
        (
            (*row[:-1], sorted(segments[segment] for segment in row[-1]))
            for row in PredictionOutcome.objects.values_list(
                "prediction_id",
                "model_version_id",
                "bucket",
                "labeled",
                "predicted_positive",
                "actual_positive",
                "predicted",
                "actual",
                "error",
                "segments",
            )
        ),
        key=repr,
    )
    return {
        "segments": sorted(segments.values()),
        "outcomes": outcomes,
        "cells": cells(
            PerformanceCell,
            "model_version_id",
            "bucket",
            "predictions",
            "errors",
            "labeled",
            "true_positives",
            "false_positives",
            "false_negatives",
            "true_negatives",
            "error_sum",
            "absolute_error_sum",
            "squared_error_sum",
        ),
        "latency": cells(LatencyCell, "model_version_id", "bucket", "bin", "count"),
        "confusion": cells(
            ConfusionCell, "model_version_id", "bucket", "predicted", "actual", "count"
        ),
    }


# --- numbers against the references ---------------------------------------------------------


@pytest.mark.parametrize("segment", [None, "country", "plan"])
def test_performance__binary_model__matches_sklearn_on_raw_events(admin, segment):
    # Given a binary model (threshold 0.6) with labeled, relabeled and failed predictions
    posted = register(admin, "churn-bin", "binary_classification", threshold=0.6)
    populate(posted, predictions=400, seed=11)
    # When the aggregation runs
    aggregate(admin)
    # Then every hour × version (× segment) row equals scikit-learn on the raw events
    assert assert_matches(posted, segment=segment) > 10


def test_performance__multiclass_model__macro_metrics_match_sklearn(admin):
    # Given a multiclass model
    posted = register(admin, "topics", "multiclass_classification")
    populate(posted, predictions=400, seed=12)
    # When the aggregation runs
    aggregate(admin)
    # Then accuracy and macro precision/recall/F1 equal scikit-learn's per row and segment
    assert assert_matches(posted) > 10
    assert assert_matches(posted, segment="country") > 10
    # And the confusion cells of "all" hold scikit-learn's confusion matrix
    classes = ["a", "b", "c", "d"]
    pairs = posted.labeled(posted.predictions.values())
    expected = confusion_matrix([t for _, t in pairs], [g for g, _ in pairs], labels=classes)
    everything = PerformanceSegment.objects.get(kind="all")
    stored = np.zeros((4, 4), dtype=int)
    for guess, truth, count in ConfusionCell.objects.filter(segment_id=everything.id).values_list(
        "predicted", "actual", "count"
    ):
        stored[classes.index(truth), classes.index(guess)] += count
    assert stored.tolist() == expected.tolist()


def test_performance__regression_model__mae_rmse_match_numpy(admin):
    # Given a regression model whose truths are value feedback (some revised later)
    posted = register(admin, "demand", "regression")
    populate(posted, predictions=400, seed=13)
    # When the aggregation runs
    aggregate(admin)
    # Then MAE and RMSE per row equal numpy's on (prediction − latest value)
    assert assert_matches(posted) > 10
    assert assert_matches(posted, segment="plan", version="2") > 5


def test_performance__bucket_day__rolls_hours_up(admin):
    # Given predictions across two UTC days, and more than one version
    posted = register(admin, "churn-days", "binary_classification")
    rng = random.Random(14)
    midnight = HOUR.replace(hour=0) - timedelta(days=1)
    events = []
    for number in range(120):
        moment = midnight + timedelta(hours=rng.randrange(-5, 5), minutes=number % 60)
        event = posted.prediction(
            version=rng.choice(["1", "2"]),
            occurred_at=moment,
            attributes={"country": rng.choice(COUNTRIES)},
            output={"score": rng.random()},
            latency_ms=rng.uniform(1, 500),
        )
        events.append(event)
    labels = [
        posted.feedback(
            e["id"], occurred_at=midnight + timedelta(hours=6), label=rng.choice(["churn", "x"])
        )
        for e in events[::2]
    ]
    posted.post("/api/v1/predictions", events)
    posted.post("/api/v1/feedback", labels)
    aggregate(admin)
    # When performance is asked per day over the two days
    params = {
        "start": text(midnight - timedelta(days=1)),
        "end": text(midnight + timedelta(days=1)),
    }
    body = performance(admin, posted.model, bucket="day", **params)
    # Then there is one row per day × version, with the figures of the whole day
    assert body["bucket"] == "day"
    assert {row["start"] for row in body["results"]} == {
        text(midnight - timedelta(days=1)),
        text(midnight),
    }
    expected = posted.groups(bucket="day")
    assert sorted(rows_by_key(body)) == sorted(expected)
    for key, group in expected.items():
        assert_binary(posted, rows_by_key(body)[key], group)
    # And the day rows are the sums of the hour rows
    hours = performance(admin, posted.model, **params)["results"]
    assert sum(row["count"] for row in body["results"]) == sum(row["count"] for row in hours)
    assert sum(row["labeled"] for row in body["results"]) == 60
    assert_matches(posted, segment="country", bucket="day", **params)


def test_performance__relabel_after_fold__moves_the_counts(admin):
    # Given a binary prediction labeled "stay" and folded: a true negative
    posted = register(admin, "churn-relabel", "binary_classification")
    event = posted.prediction(
        occurred_at=at(1), attributes={"country": "DE"}, output={"score": 0.2}, latency_ms=3.0
    )
    posted.post("/api/v1/predictions", [event])
    posted.post("/api/v1/feedback", [posted.feedback(event["id"], occurred_at=at(2), label="stay")])
    aggregate(admin)
    cell = PerformanceCell.objects.get(segment_id=PerformanceSegment.objects.get(kind="all").id)
    assert (cell.labeled, cell.true_negatives, cell.false_negatives) == (1, 1, 0)
    # When a later label says "churn", and an older one (by occurred_at) says "stay" again
    posted.post(
        "/api/v1/feedback",
        [
            posted.feedback(event["id"], occurred_at=at(3), label="churn"),
            posted.feedback(event["id"], occurred_at=at(2, 30), label="stay"),
        ],
    )
    aggregate(admin)
    # Then the latest label wins: the prediction moved from TN to FN, in every cell
    for cell in PerformanceCell.objects.all():
        assert (cell.predictions, cell.labeled, cell.true_negatives, cell.false_negatives) == (
            1,
            1,
            0,
            1,
        )
    assert PerformanceCell.objects.count() == 3  # all, country=DE, plan absent
    row = performance(admin, posted.model, start=text(at(0)), end=text(at(2)))["results"][0]
    assert (row["accuracy"], row["recall"], row["precision"]) == (0.0, 0.0, None)


def test_performance__multiclass_relabel__confusion_cell_moves_and_empty_one_goes(admin):
    # Given a multiclass prediction "a" labeled "a", folded
    posted = register(admin, "topics-relabel", "multiclass_classification", versions=["1"])
    event = posted.prediction(occurred_at=at(1), output={"label": "a"})
    posted.post("/api/v1/predictions", [event])
    posted.post("/api/v1/feedback", [posted.feedback(event["id"], occurred_at=at(2), label="a")])
    aggregate(admin)
    assert set(ConfusionCell.objects.values_list("predicted", "actual", "count")) == {("a", "a", 1)}
    # When it is relabeled "b"
    posted.post("/api/v1/feedback", [posted.feedback(event["id"], occurred_at=at(3), label="b")])
    aggregate(admin)
    # Then the pair moved, and no zero row stays behind
    assert set(ConfusionCell.objects.values_list("predicted", "actual", "count")) == {("a", "b", 1)}
    assert ConfusionCell.objects.count() == 3  # all, country absent, plan absent


def test_performance__feedback_before_its_prediction__joined_when_it_comes(admin):
    # Given label feedback folded while its prediction has not arrived
    posted = register(admin, "churn-early", "binary_classification")
    prediction_id = str(uuid.uuid4())
    label = posted.feedback(prediction_id, occurred_at=at(2), label="churn")
    posted.post("/api/v1/feedback", [label])
    aggregate(admin)
    assert PredictionOutcome.objects.count() == 0
    # When the prediction comes
    event = posted.prediction(occurred_at=at(1), output={"label": "churn"})
    event["id"] = prediction_id
    posted.predictions = {prediction_id: {**event, "at": at(1)}}
    posted.post("/api/v1/predictions", [event])
    aggregate(admin)
    # Then it is labeled: a true positive
    cell = PerformanceCell.objects.get(segment_id=PerformanceSegment.objects.get(kind="all").id)
    assert (cell.predictions, cell.labeled, cell.true_positives) == (1, 1, 1)


def test_performance__more_values_than_the_top__the_rest_is_other(admin):
    # Given TOP_VALUES distinct countries first, then three new ones, the literal "other",
    # a number and a missing attribute
    posted = register(admin, "churn-wide", "binary_classification", versions=["1"])
    first = [
        posted.prediction(
            occurred_at=at(1), attributes={"country": f"C{n:03}"}, output={"score": 1}
        )
        for n in range(TOP_VALUES)
    ]
    posted.post("/api/v1/predictions", first)
    later = [
        posted.prediction(occurred_at=at(1), attributes={"country": value}, output={"score": 1})
        for value in ("X1", "X2", "X3", "other", "C000")
    ]
    later.append(
        posted.prediction(occurred_at=at(1), attributes={"plan": "pro"}, output={"score": 1})
    )
    later.append(
        posted.prediction(occurred_at=at(1), attributes={"country": 7}, output={"score": 1})
    )
    posted.post("/api/v1/predictions", later)
    aggregate(admin)
    # When performance is broken down by country
    body = performance(admin, posted.model, segment="country", start=text(at(0)), end=text(at(2)))
    # Then the first TOP_VALUES values have rows; the rest counts as "other"; absent is null
    counts = {row["segment"]["country"]: row["count"] for row in body["results"]}
    expected: dict[str | None, int] = {
        **{f"C{n:03}": 1 for n in range(TOP_VALUES)},
        "C000": 2,
        "other": 5,  # X1, X2, X3, the literal "other", 7
        None: 1,
    }
    assert counts == expected
    assert [row["segment"]["country"] for row in body["results"]][-2:] == [None, "other"]
    # And a rule on a value past the top finds no cell of its own
    assert selectors.performance_metric_value(
        model=posted.model, metric="count", start=at(0), end=at(2), segment={"country": "X1"}
    ) == (0.0, 0)
    assert selectors.performance_metric_value(
        model=posted.model, metric="count", start=at(0), end=at(2), segment={"country": "other"}
    ) == (5.0, 5)


def test_performance__segment_value_types__reported_as_their_json_text(admin):
    # Given attribute values that are numbers and booleans
    posted = register(admin, "churn-types", "binary_classification", versions=["1"])
    events = [
        posted.prediction(occurred_at=at(1), attributes={"country": value}, output={"score": 1})
        for value in (7, 1.5, True)
    ]
    posted.post("/api/v1/predictions", events)
    aggregate(admin)
    body = performance(admin, posted.model, segment="country", start=text(at(0)), end=text(at(2)))
    # Then each is the text of its stored JSON value (ingestion stores numbers as floats)
    assert sorted(row["segment"]["country"] for row in body["results"]) == ["1.5", "7.0", "true"]


# --- performance_metric_value (the rules' interface) ----------------------------------------


def test_metric_value__binary_window_and_segment__matches_sklearn(admin):
    # Given a binary model's events
    posted = register(admin, "churn-rule", "binary_classification", threshold=0.6)
    populate(posted, predictions=300, seed=15)
    aggregate(admin)
    # When a rule asks for accuracy in country=DE over hours 1..4, all versions
    start, end = at(1), at(4)
    value, samples = selectors.performance_metric_value(
        model=posted.model, metric="accuracy", start=start, end=end, segment={"country": "DE"}
    )
    # Then it is scikit-learn's over the labeled DE predictions of [start, end)
    chosen = [
        e
        for e in posted.predictions.values()
        if start <= e["at"] < end and (e.get("attributes") or {}).get("country") == "DE"
    ]
    pairs = posted.labeled(chosen)
    assert samples == len(pairs)
    assert value == pytest.approx(
        accuracy_score([t for _, t in pairs], [g for g, _ in pairs]), rel=1e-12
    )
    # And prediction metrics count predictions
    rate, count = selectors.performance_metric_value(
        model=posted.model, metric="error_rate", start=start, end=end, segment={"country": "DE"}
    )
    assert count == len(chosen)
    assert rate == pytest.approx(sum("error" in e for e in chosen) / len(chosen), rel=1e-12)
    # And one version alone counts only its predictions
    value, samples = selectors.performance_metric_value(
        model=posted.model, metric="count", start=start, end=end, version="2"
    )
    expected = sum(
        1
        for e in posted.predictions.values()
        if start <= e["at"] < end and e["model_version"] == "2"
    )
    assert (value, samples) == (float(expected), expected)
    # And a metric the task has not, or a window without data, is None
    assert selectors.performance_metric_value(
        model=posted.model, metric="mae", start=start, end=end
    ) == (None, samples_all_labeled(posted, start, end))
    assert selectors.performance_metric_value(
        model=posted.model, metric="accuracy", start=at(-30), end=at(-20)
    ) == (None, 0)


def samples_all_labeled(posted: Posted, start: datetime, end: datetime) -> int:
    return len(posted.labeled(e for e in posted.predictions.values() if start <= e["at"] < end))


def test_metric_value__regression_and_latency__match_numpy(admin):
    posted = register(admin, "demand-rule", "regression")
    populate(posted, predictions=300, seed=16)
    aggregate(admin)
    start, end = at(0), at(6)
    pairs = posted.labeled(posted.predictions.values())
    errors = np.array([g - t for g, t in pairs])
    value, samples = selectors.performance_metric_value(
        model=posted.model, metric="rmse", start=start, end=end
    )
    assert value == pytest.approx(float(np.sqrt(np.mean(errors**2))), rel=1e-9)
    assert samples == len(pairs)
    latencies = [e["latency_ms"] for e in posted.predictions.values() if "latency_ms" in e]
    value, count = selectors.performance_metric_value(
        model=posted.model, metric="latency_p95", start=start, end=end
    )
    exact = float(np.percentile(latencies, 95, method="inverted_cdf"))
    assert count == len(posted.predictions)
    assert value is not None and abs(value - exact) <= RELATIVE_ERROR * exact * (1 + 1e-9)


@pytest.mark.parametrize(
    ("arguments", "field_name"),
    [
        ({"metric": "auc"}, "metric"),
        ({"segment": {"device": "ios"}}, "segment"),
        ({"segment": {"country": "DE", "plan": "pro"}}, "segment"),
        ({"start": datetime(2026, 1, 1)}, "start"),  # noqa: DTZ001 - the naive time under test
        ({"end": at(-10)}, "end"),
    ],
)
def test_metric_value__bad_arguments__validation_failed(admin, arguments, field_name):
    register(admin, "churn-args", "binary_classification")
    call = {"model": "churn-args", "metric": "accuracy", "start": at(0), "end": at(1), **arguments}
    with pytest.raises(ValidationFailed) as caught:
        selectors.performance_metric_value(**call)
    assert caught.value.details[0]["field"] == field_name


# --- exactly once ---------------------------------------------------------------------------


def three_models(admin: APIClient, seed: int) -> list[Posted]:
    worlds = [
        register(admin, f"bin-{seed}", "binary_classification", threshold=0.6),
        register(admin, f"multi-{seed}", "multiclass_classification"),
        register(admin, f"reg-{seed}", "regression"),
    ]
    return worlds


def test_fold__incremental_in_small_windows__equals_one_rebuild(admin):
    # Given events of three tasks folded in many small windows as they arrived
    worlds = three_models(admin, 1)
    for number, posted in enumerate(worlds):
        populate(posted, predictions=80, seed=20 + number)
    while runner.fold_next(performance_projection, chunk=37):
        pass
    for number, posted in enumerate(worlds):
        populate(posted, predictions=80, seed=30 + number)
    while runner.fold_next(performance_projection, chunk=53):
        pass
    incremental = snapshot()
    # When the projection is rebuilt from the log
    services.projection_rebuild(name="performance")
    # Then every table is exactly the same
    assert snapshot() == incremental
    assert incremental["confusion"] and incremental["latency"]
    assert any(row[-1] != 0 for row in incremental["cells"])


def test_fold__crash_after_partial_work__rerun_counts_once(admin, monkeypatch):
    # Given a run that dies after writing the outcomes, before the watermark
    for number, posted in enumerate(three_models(admin, 2)):
        populate(posted, predictions=60, seed=40 + number)
    original = PerformanceProjection.refold_model

    def crash(self, cursor, window, *, model_id):
        raise WorkerKilled

    # A model change makes the fold call refold_model after its cells are written.
    response = admin.patch("/api/v1/models/bin-2", {"decision_threshold": 0.4}, format="json")
    assert response.status_code == 200, response.json()
    monkeypatch.setattr(PerformanceProjection, "refold_model", crash)
    with pytest.raises(WorkerKilled):
        runner.catch_up(performance_projection)
    # Then nothing of it stayed
    assert all(rows == [] for rows in snapshot().values())
    # When the next run goes through
    monkeypatch.setattr(PerformanceProjection, "refold_model", original)
    runner.catch_up(performance_projection)
    after_crash = snapshot()
    # Then the numbers are those of a clean rebuild
    services.projection_rebuild(name="performance")
    assert snapshot() == after_crash
    assert after_crash["cells"]


def test_fold__model_threshold_changed__history_refolded_like_a_rebuild(admin):
    # Given a binary model's events folded with threshold 0.6
    posted = register(admin, "churn-change", "binary_classification", threshold=0.6)
    populate(posted, predictions=150, seed=50)
    aggregate(admin)
    # When its threshold and segment attributes change, and more events come
    response = admin.patch(
        f"/api/v1/models/{posted.model}",
        {"decision_threshold": 0.3, "segment_attributes": ["plan"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    posted.threshold = 0.3
    populate(posted, predictions=50, seed=51)
    aggregate(admin)
    # Then every number follows the new facts, as a rebuild's would
    assert_matches(posted)
    assert_matches(posted, segment="plan")
    incremental = snapshot()
    services.projection_rebuild(name="performance")
    assert snapshot() == incremental
    assert {row[1] for row in incremental["segments"]} == {"", "plan"}


def test_aggregate__run_twice__second_changes_nothing(admin):
    posted = register(admin, "churn-twice", "binary_classification")
    populate(posted, predictions=50, seed=60)
    aggregate(admin)
    first = snapshot()
    aggregate(admin)
    assert snapshot() == first

"""GET /api/v1/models/{name}/performance: auth, defaults, shape and hostile parameters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.analytics.models import PerformanceCell

NOW = datetime.now(UTC)
PATH = "/api/v1/models/churn/performance"
ROW_FIELDS = {
    "start",
    "version",
    "segment",
    "count",
    "labeled",
    "errors",
    "error_rate",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "mae",
    "rmse",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "excluded_events",
}


def text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def admin(make_client) -> APIClient:
    return make_client("ingest", "read", "manage")


@pytest.fixture
def churn(admin: APIClient) -> APIClient:
    """Model churn (binary, segment attribute country) with versions 1 and 2."""
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
    assert response.status_code == 201, response.json()
    for version in ("1", "2"):
        response = admin.post("/api/v1/models/churn/versions", {"version": version}, format="json")
        assert response.status_code == 201, response.json()
    return admin


def predict(client: APIClient, occurred_at: datetime, **fields: Any) -> str:
    event = {
        "id": str(uuid.uuid4()),
        "model": "churn",
        "model_version": "1",
        "attributes": {"country": "DE"},
        "output": {"label": "churn"},
        "latency_ms": 10.0,
        "occurred_at": text(occurred_at),
        **fields,
    }
    response = client.post("/api/v1/predictions", event, format="json")
    assert response.status_code == 201, response.json()
    return str(event["id"])


def label(client: APIClient, prediction_id: str, value: str) -> None:
    event = {
        "id": str(uuid.uuid4()),
        "prediction_id": prediction_id,
        "metric": "label",
        "label": value,
        "occurred_at": text(NOW - timedelta(minutes=1)),
    }
    response = client.post("/api/v1/feedback", event, format="json")
    assert response.status_code == 201, response.json()


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_performance__no_key__401(anonymous, churn):
    response = anonymous.get(PATH)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.django_db
def test_performance__ingest_key__403(ingester, churn):
    response = ingester.get(PATH)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_performance__write_methods__405(reader, churn, method):
    response = getattr(reader, method)(PATH)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- answers --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_performance__defaults__last_seven_days_by_hour_in_api_shape(churn, reader):
    # Given a labeled prediction an hour ago, an unlabeled one of version 2, a failed one,
    # and one eight days ago
    hour_ago = NOW - timedelta(hours=1)
    first = predict(churn, hour_ago)
    label(churn, first, "churn")
    predict(churn, hour_ago, model_version="2", output={"score": 0.1})
    predict(churn, hour_ago, output=None, error="timeout", latency_ms=None)
    predict(churn, NOW - timedelta(days=8))
    assert churn.post("/api/v1/aggregations/run").status_code == 200
    # When performance is asked with no parameters
    response = reader.get(PATH)
    # Then it answers the last 7 days by hour: one row per version, in API.md's shape
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"model", "bucket", "warning", "results"}
    assert (body["model"], body["bucket"], body["warning"]) == ("churn", "hour", None)
    start = text(hour_ago.replace(minute=0, second=0, microsecond=0))
    assert [set(row) for row in body["results"]] == [ROW_FIELDS, ROW_FIELDS]
    one, two = body["results"]
    assert one == {
        "start": start,
        "version": "1",
        "segment": None,
        "count": 2,
        "labeled": 1,
        "errors": 1,
        "error_rate": 0.5,
        "accuracy": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "mae": None,
        "rmse": None,
        "latency_p50": pytest.approx(10.0, rel=0.01),
        "latency_p95": pytest.approx(10.0, rel=0.01),
        "latency_p99": pytest.approx(10.0, rel=0.01),
        "excluded_events": 0,
    }
    assert (two["version"], two["count"], two["labeled"], two["accuracy"]) == ("2", 1, 0, None)
    # And one version, by country, gives that version's rows per value
    response = reader.get(PATH, {"version": "2", "segment": "country"})
    assert [(row["version"], row["segment"]) for row in response.json()["results"]] == [
        ("2", {"country": "DE"})
    ]


@pytest.mark.django_db(transaction=True)
def test_performance__many_rows__constant_number_of_queries(
    churn, reader, django_assert_max_num_queries
):
    # Given predictions over 30 hours
    for hours in range(30):
        predict(churn, NOW - timedelta(hours=hours, minutes=1))
    churn.post("/api/v1/aggregations/run")
    assert PerformanceCell.objects.count() == 60
    # When performance is read, Then the query count does not grow with the rows
    with django_assert_max_num_queries(8):
        response = reader.get(PATH, {"segment": "country"})
    assert len(response.json()["results"]) == 30


@pytest.mark.django_db
def test_performance__far_edges_of_time__empty_not_an_error(churn, reader):
    for start, end in (
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
        ("9999-12-31T00:00:00Z", "9999-12-31T23:59:59.999999Z"),
    ):
        for bucket in ("hour", "day"):
            response = reader.get(PATH, {"start": start, "end": end, "bucket": bucket})
            assert response.status_code == 200, response.json()
            assert response.json()["results"] == []


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field_name"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"bucket": "HOUR"}, "bucket"),
        ({"segment": "plan"}, "segment"),
        ({"segment": "x" * 5000}, "segment"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-13-01T00:00:00Z"}, "start"),
        ({"start": "2026-11-26T10:00:00"}, "start"),
        ({"end": "2026-11-26T10:00:00"}, "end"),
        ({"end": "2026-11-26T10:00:00+25:00"}, "end"),
        ({"start": "2026-11-26T10:00:00 00:00"}, "start"),  # an unencoded '+'
        ({"start": "9" * 10000}, "start"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
        ({"end": "9999-12-31T23:00:00-05:00"}, "end"),
        ({"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T10:00:00Z"}, "end"),
        ({"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T09:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}, "start"),
        (
            {"start": "0001-01-01T00:00:00Z", "end": "9999-01-01T00:00:00Z", "bucket": "day"},
            "start",
        ),
        ({"start": "9999-12-31T23:30:00Z"}, "end"),
    ],
)
def test_performance__bad_parameters__400(reader, churn, params, field_name):
    response = reader.get(PATH, params)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field_name


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/models/nope/performance",
        "/api/v1/models/" + "x" * 300 + "/performance",
        "/api/v1/models/%00/performance",
        "/api/v1/models/..%2F/performance",
    ],
)
def test_performance__unknown_model__404(reader, churn, path):
    response = reader.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["9", "x" * 500, "1 OR 1=1"])
def test_performance__unknown_version__404(reader, churn, version):
    response = reader.get(PATH, {"version": version})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_schema__documents_the_performance_endpoint(anonymous):
    response = anonymous.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    operation = response.json()["paths"]["/api/v1/models/{name}/performance"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} >= {
        "version",
        "segment",
        "bucket",
        "start",
        "end",
    }

"""The ingestion endpoints: keys and scopes, 201 bodies, GET by id, 405s, feed and schema."""

from __future__ import annotations

import time
import uuid

import pytest

from apps.events.selectors import safe_horizon
from apps.ingest.models import Feedback, Prediction
from tests.ingest.factories import feedback, post, prediction, register_churn

pytestmark = pytest.mark.django_db

COLLECTIONS = ["/api/v1/predictions", "/api/v1/feedback"]


def _body(path):
    return prediction() if path.endswith("predictions") else feedback()


@pytest.mark.parametrize("path", COLLECTIONS)
def test_post__no_key__401_and_nothing_stored(anonymous, churn, path):
    # When
    response = post(anonymous, path, _body(path))
    # Then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert Prediction.objects.count() == 0
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize("path", COLLECTIONS)
def test_post__unknown_key__401(churn, make_client, path):
    client = make_client("ingest")
    client.credentials(HTTP_AUTHORIZATION="Bearer kz_000000000000_nope")
    response = post(client, path, _body(path))
    assert response.status_code == 401


@pytest.mark.parametrize("path", COLLECTIONS)
@pytest.mark.parametrize("scopes", [("read",), ("manage",), ("read", "manage")])
def test_post__key_without_ingest_scope__403_and_nothing_stored(make_client, churn, path, scopes):
    response = post(make_client(*scopes), path, _body(path))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert Prediction.objects.count() == 0
    assert Feedback.objects.count() == 0


def test_post_prediction__single_event__201_accepted_one(ingester, churn):
    # Given
    body = prediction()
    # When
    response = post(ingester, "/api/v1/predictions", body)
    # Then
    assert response.status_code == 201
    assert response.json() == {"accepted": 1, "duplicates": 0}
    stored = Prediction.objects.get()
    assert str(stored.id) == body["id"]
    assert stored.model_version_id == churn["3"].id
    assert stored.actor.startswith("api_key:tests/")


def test_post_prediction__batch__201_accepted_all(ingester, churn):
    body = {"events": [prediction() for _ in range(3)]}
    response = post(ingester, "/api/v1/predictions", body)
    assert response.status_code == 201
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert {str(row) for row in Prediction.objects.values_list("id", flat=True)} == {
        event["id"] for event in body["events"]
    }


def test_post_prediction__error_instead_of_output__stored(ingester, churn):
    body = prediction(output=None, error="timeout after 2 s")
    response = post(ingester, "/api/v1/predictions", body)
    assert response.status_code == 201
    stored = Prediction.objects.get()
    assert (stored.error, stored.output_label, stored.output_score) == (
        "timeout after 2 s",
        None,
        None,
    )


def test_post_feedback__batch__201_accepted_all(ingester):
    body = {"events": [feedback(), feedback(value=None, label="churn")]}
    response = post(ingester, "/api/v1/feedback", body)
    assert response.status_code == 201
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert {
        str(row_id): (value, label)
        for row_id, value, label in Feedback.objects.values_list("id", "value", "label")
    } == {body["events"][0]["id"]: (1.0, None), body["events"][1]["id"]: (None, "churn")}


def test_post_prediction__content_type_with_utf8_charset__accepted(ingester, churn):
    response = post(
        ingester,
        "/api/v1/predictions",
        prediction(),
        content_type="application/json; charset=UTF-8",
    )
    assert response.status_code == 201


@pytest.mark.parametrize("batch_size", [1, 20])  # one INSERT, or the COPY path
def test_get_prediction__stored__event_as_posted(ingester, reader, churn, batch_size):
    # Given a prediction posted with a +02:00 offset and integer features
    body = prediction(occurred_at="2026-11-01T12:00:00+02:00")
    others = [prediction() for _ in range(batch_size - 1)]
    post(ingester, "/api/v1/predictions", {"events": [*others, body]})
    # When it is read back with its id in upper case
    response = reader.get(f"/api/v1/predictions/{body['id'].upper()}")
    # Then
    assert response.status_code == 200
    shown = response.json()
    received_at = shown.pop("received_at")
    assert received_at.endswith("+00:00")
    assert shown == {
        "id": body["id"],
        "model": "churn",
        "model_version": "3",
        "occurred_at": "2026-11-01T10:00:00+00:00",
        "subject": "user-1842",
        "experiment": None,
        "variant": None,
        "attributes": {"country": "DE", "plan": "pro"},
        "features": {"tenure_days": 412.0, "sessions_7d": 3.0},
        "output": {"label": "churn", "score": 0.83},
        "error": None,
        "explanation": {"tenure_days": -0.12, "sessions_7d": 0.31},
        "latency_ms": 12.5,
    }


@pytest.mark.parametrize("batch_size", [1, 20])
def test_get_feedback__stored__event_as_posted(ingester, reader, batch_size):
    body = feedback(value=None, label="stay")
    post(
        ingester,
        "/api/v1/feedback",
        {"events": [body, *[feedback() for _ in range(batch_size - 1)]]},
    )
    response = reader.get(f"/api/v1/feedback/{body['id']}")
    assert response.status_code == 200
    shown = response.json()
    shown.pop("received_at")
    assert shown == {
        "id": body["id"],
        "prediction_id": body["prediction_id"],
        "metric": "click",
        "occurred_at": "2026-11-01T10:00:00+00:00",
        "value": None,
        "label": "stay",
    }


@pytest.mark.parametrize("kind", ["predictions", "feedback"])
@pytest.mark.parametrize(
    "event_id", ["0b6f3a52-8f0e-4c5e-9d3a-5b8f2c1d7e90", "not-a-uuid", "1" * 2000]
)
def test_get__unknown_or_malformed_id__404(reader, kind, event_id):
    response = reader.get(f"/api/v1/{kind}/{event_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("kind", ["predictions", "feedback"])
def test_get__no_key__401(anonymous, kind):
    assert anonymous.get(f"/api/v1/{kind}/{uuid.uuid4()}").status_code == 401


@pytest.mark.parametrize("kind", ["predictions", "feedback"])
def test_get__ingest_only_key__403(ingester, kind):
    assert ingester.get(f"/api/v1/{kind}/{uuid.uuid4()}").status_code == 403


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize("scopes", [("ingest",), ("read", "manage")])
def test_change_prediction__any_key__405_and_unchanged(
    make_client, ingester, churn, method, scopes
):
    # Given a stored prediction
    body = prediction()
    post(ingester, "/api/v1/predictions", body)
    before = Prediction.objects.values().get()
    # When
    client = make_client(*scopes)
    response = getattr(client, method)(
        f"/api/v1/predictions/{body['id']}", data=body, format="json"
    )
    # Then
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert Prediction.objects.values().get() == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_change_feedback__405_and_unchanged(make_client, ingester, method):
    body = feedback()
    post(ingester, "/api/v1/feedback", body)
    before = Feedback.objects.values().get()
    response = getattr(make_client("ingest", "read", "manage"), method)(
        f"/api/v1/feedback/{body['id']}", data=body, format="json"
    )
    assert response.status_code == 405
    assert Feedback.objects.values().get() == before


@pytest.mark.parametrize("method", ["put", "patch", "delete", "get"])
@pytest.mark.parametrize("path", COLLECTIONS)
def test_collection__other_methods__405(make_client, method, path):
    client = make_client("ingest", "read", "manage")
    response = getattr(client, method)(path)
    assert response.status_code == 405


def test_schema__ingestion__documented_single_or_batch(anonymous):
    # When
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    # Then both collections take one event or a batch and answer 201 with the counts
    for path, single in (
        ("/api/v1/predictions", "PredictionInRequest"),
        ("/api/v1/feedback", "FeedbackInRequest"),
    ):
        operation = schema["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        component = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
        assert {choice["$ref"].rsplit("/", 1)[1] for choice in component["oneOf"]} == {
            single,
            single.replace("InRequest", "BatchRequest"),
        }
        assert set(operation["responses"]) == {
            "201",
            "400",
            "401",
            "403",
            "409",
            "413",
            "415",
            "429",
        }
    assert "get" in schema["paths"]["/api/v1/predictions/{id}"]
    assert "get" in schema["paths"]["/api/v1/feedback/{id}"]


@pytest.mark.django_db(transaction=True)
def test_event_feed__posted_events__listed_with_their_types(make_client):
    # Given a prediction and a feedback event, committed
    register_churn()
    ingester = make_client("ingest")
    reader = make_client("read")
    predicted = prediction()
    fed_back = feedback(prediction_id=predicted["id"])
    post(ingester, "/api/v1/predictions", predicted)
    post(ingester, "/api/v1/feedback", fed_back)
    newest = max(Feedback.objects.get().xid, Prediction.objects.get().xid)
    deadline = time.monotonic() + 60
    while safe_horizon() <= newest and time.monotonic() < deadline:
        time.sleep(0.05)  # another test's open transaction holds the horizon back
    # When
    results = reader.get("/api/v1/events?limit=1000").json()["results"]
    # Then
    ingestion = [item for item in results if item["type"] in {"prediction", "feedback"}]
    assert [(item["type"], item["event"]["id"]) for item in ingestion] == [
        ("prediction", predicted["id"]),
        ("feedback", fed_back["id"]),
    ]
    assert ingestion[0]["event"] == reader.get(f"/api/v1/predictions/{predicted['id']}").json()
    assert ingestion[1]["event"] == reader.get(f"/api/v1/feedback/{fed_back['id']}").json()

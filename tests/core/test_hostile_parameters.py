"""Hostile path and query parameters, endpoint family by endpoint family: each answers its
exact 4xx with API.md's error body naming the parameter, never a 5xx, and changes nothing.

Also: the schema lists exactly the query parameters each view declares, every operation
refuses an unknown one, and the key is checked before the parameters.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from apps.core.query import declared
from apps.experiments.models import Exposure
from apps.ingest.models import Prediction
from apps.registry.models import MLModel
from tests.core.world import EXPERIMENT, World, build_world
from tests.ingest.factories import prediction
from tests.registry.factories import MLModelFactory

pytestmark = pytest.mark.django_db

FORGED = "WyIyMDAwLTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwxXQ"  # a cursor's payload, unsigned


@pytest.fixture
def world() -> World:
    return build_world()


@pytest.fixture
def client(make_client) -> APIClient:
    return make_client("ingest", "read", "manage")


def _url(path: str, query: dict[str, str] | None = None) -> str:
    """`path` and `query` percent-encoded byte for byte (as a hostile client sends them)."""
    if not query:
        return path
    encoded = "&".join(
        f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in query.items()
    )
    return f"{path}?{encoded}"


def _error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def _fields(response: Any) -> list[str]:
    return [detail.get("field", "") for detail in _error(response)["details"]]


# (path with {placeholders} filled from the world, query, status, code, fields)
CASES: list[tuple[str, dict[str, str], int, str, list[str]]] = [
    # registry
    ("/api/v1/models", {"limit": "-1"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"limit": "0"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"limit": "1e9"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"limit": "abc"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"limit": "٣"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"limit": "9" * 5000}, 400, "validation_error", ["limit"]),
    ("/api/v1/models", {"cursor": FORGED}, 400, "validation_error", ["cursor"]),
    ("/api/v1/models", {"cursor": "x" * 2000}, 400, "validation_error", ["cursor"]),
    ("/api/v1/models", {"name": "churn"}, 400, "validation_error", ["name"]),
    ("/api/v1/models/churn\x00", {}, 404, "not_found", ["name"]),
    ("/api/v1/models/churn\x1b[2J", {}, 404, "not_found", ["name"]),
    ("/api/v1/models/churn", {"expand": "versions"}, 400, "validation_error", ["expand"]),
    ("/api/v1/models/churn/versions", {"limit": "1001"}, 400, "validation_error", ["limit"]),
    ("/api/v1/models/churn/versions/2\x01", {}, 404, "not_found", ["version"]),
    ("/api/v1/models/churn/versions/" + "9" * 2000, {}, 404, "not_found", ["version"]),
    ("/api/v1/models/churn/aliases/production\n", {}, 404, "not_found", ["alias"]),
    # experiments and their results
    ("/api/v1/experiments", {"model": "churn\x00"}, 400, "validation_error", ["model"]),
    ("/api/v1/experiments", {"model": "churn\x85"}, 400, "validation_error", ["model"]),
    ("/api/v1/experiments", {"status": "done"}, 400, "validation_error", ["status"]),
    ("/api/v1/experiments", {"owner": "alice"}, 400, "validation_error", ["owner"]),
    (f"/api/v1/experiments/{EXPERIMENT}\x00", {}, 404, "not_found", ["key"]),
    (f"/api/v1/experiments/{EXPERIMENT}\x00/results", {}, 404, "not_found", ["key"]),
    (
        f"/api/v1/experiments/{EXPERIMENT}/results",
        {"segment": "country\x00"},
        400,
        "validation_error",
        ["segment"],
    ),
    (
        f"/api/v1/experiments/{EXPERIMENT}/results",
        {"metric": "click"},
        400,
        "validation_error",
        ["metric"],
    ),
    # model performance
    (
        "/api/v1/models/churn/performance",
        {"start": "9999-12-31T23:59:59-23:59"},
        400,
        "validation_error",
        ["start"],
    ),
    (
        "/api/v1/models/churn/performance",
        {"start": "0000-01-01T00:00:00Z"},
        400,
        "validation_error",
        ["start"],
    ),
    (
        "/api/v1/models/churn/performance",
        {"end": "2026-11-26T10:00:00+25:00"},
        400,
        "validation_error",
        ["end"],
    ),
    (
        "/api/v1/models/churn/performance",
        {"start": "2026-11-26T10:00:00"},
        400,
        "validation_error",
        ["start"],
    ),
    (
        "/api/v1/models/churn/performance",
        {"start": "2026-11-26T10:00:00Z\x00"},
        400,
        "validation_error",
        ["start"],
    ),
    ("/api/v1/models/churn/performance", {"bucket": "week"}, 400, "validation_error", ["bucket"]),
    (
        "/api/v1/models/churn/performance",
        {"version": "2\x00"},
        400,
        "validation_error",
        ["version"],
    ),
    ("/api/v1/models/churn/performance", {"model": "x"}, 400, "validation_error", ["model"]),
    ("/api/v1/models/churn\x00/performance", {}, 404, "not_found", ["name"]),
    # rules, alerts, retraining jobs
    ("/api/v1/rules", {"model": "\x00"}, 400, "validation_error", ["model"]),
    ("/api/v1/rules", {"enabled": "yes"}, 400, "validation_error", ["enabled"]),
    ("/api/v1/rules", {"metric": "accuracy"}, 400, "validation_error", ["metric"]),
    ("/api/v1/rules/{rule_id}\x00", {}, 404, "not_found", ["rule_id"]),
    ("/api/v1/alerts", {"rule": "٣"}, 400, "validation_error", ["rule"]),
    ("/api/v1/alerts", {"rule": "-1"}, 400, "validation_error", ["rule"]),
    ("/api/v1/alerts", {"acknowledged": "1"}, 400, "validation_error", ["acknowledged"]),
    ("/api/v1/alerts", {"model": "churn\x7f"}, 400, "validation_error", ["model"]),
    ("/api/v1/retraining-jobs", {"status": "done"}, 400, "validation_error", ["status"]),
    ("/api/v1/retraining-jobs", {"model": "a\x00"}, 400, "validation_error", ["model"]),
    ("/api/v1/retraining-jobs/{job_id}\x00", {}, 404, "not_found", ["job_id"]),
    # the event feed
    ("/api/v1/events", {"after": FORGED}, 400, "validation_error", ["after"]),
    ("/api/v1/events", {"cursor": FORGED}, 400, "validation_error", ["cursor"]),
    ("/api/v1/events", {"limit": "1e9"}, 400, "validation_error", ["limit"]),
    ("/api/v1/events", {"type": "prediction"}, 400, "validation_error", ["type"]),
    # stored events
    ("/api/v1/predictions/{id}\x00", {}, 404, "not_found", ["id"]),
    ("/api/v1/predictions/{id}", {"fields": "id"}, 400, "validation_error", ["fields"]),
    ("/api/v1/feedback/\x01", {}, 404, "not_found", ["id"]),
    # several problems at once: every one listed
    (
        "/api/v1/rules",
        {"limit": "0", "model": "a\x00", "enabled": "maybe"},
        400,
        "validation_error",
        ["limit", "model", "enabled"],
    ),
]


def _fill(path: str, world: World) -> str:
    for parameter in ("rule_id", "job_id", "id"):
        path = path.replace("{" + parameter + "}", world.value(path, parameter))
    return quote(path, safe="/")


@pytest.mark.parametrize(
    ("path", "query", "status", "code", "fields"),
    CASES,
    ids=[f"{path} {query}"[:80] for path, query, *_ in CASES],
)
def test_get__hostile_parameter__exact_error_naming_it(
    world, client, path, query, status, code, fields
):
    # When
    response = client.get(_url(_fill(path, world), query))
    # Then
    assert response.status_code == status
    assert _error(response)["code"] == code
    assert _fields(response) == fields


def test_list__cursor_of_another_list__400(world, client):
    # Given: a cursor the models list gave out
    MLModelFactory.create(name="zeta")
    cursor = client.get("/api/v1/models", {"limit": 1}).json()["next_cursor"]
    assert client.get("/api/v1/models", {"limit": 1, "cursor": cursor}).status_code == 200
    # When: it is given to other lists and to the feed
    answers = [
        client.get("/api/v1/models/churn/versions", {"cursor": cursor}),
        client.get("/api/v1/rules", {"cursor": cursor}),
        client.get("/api/v1/events", {"after": cursor}),
    ]
    # Then
    assert [response.status_code for response in answers] == [400, 400, 400]
    assert [_fields(response) for response in answers] == [["cursor"], ["cursor"], ["after"]]


def test_post__unknown_query_parameter__400_and_nothing_stored(world, client):
    # When
    predictions = client.generic(
        "POST",
        "/api/v1/predictions?dry_run=1",
        orjson.dumps(prediction(model_version="2")),
        content_type="application/json",
    )
    assignment = client.generic(
        "POST",
        "/api/v1/assignments?debug=1",
        orjson.dumps({"experiment": EXPERIMENT, "subject": "someone-new"}),
        content_type="application/json",
    )
    model = client.generic(
        "POST",
        "/api/v1/models?upsert=1",
        orjson.dumps({"name": "new-model", "task": "regression"}),
        content_type="application/json",
    )
    # Then
    assert [predictions.status_code, assignment.status_code, model.status_code] == [400, 400, 400]
    assert [_fields(predictions), _fields(assignment), _fields(model)] == [
        ["dry_run"],
        ["debug"],
        ["upsert"],
    ]
    assert Prediction.objects.count() == 1
    assert not Exposure.objects.filter(subject="someone-new").exists()
    assert not MLModel.objects.filter(name="new-model").exists()


def test_unknown_parameter__without_a_key__401_first(world, anonymous):
    # When
    response = anonymous.get("/api/v1/models", {"bogus": "1", "limit": "-1"})
    # Then: the key is checked before anything the request asks
    assert response.status_code == 401
    assert _error(response)["code"] == "unauthenticated"


def _operations() -> list[tuple[str, str, list[str]]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((path, method, sorted(names)))
    return found


OPERATIONS = _operations()


@pytest.mark.parametrize(("path", "method", "names"), OPERATIONS)
def test_schema__query_parameters__exactly_what_the_view_declares(path, method, names):
    # Given: the view method behind the operation
    concrete = path.replace("{", "").replace("}", "")
    view = resolve(concrete).func.cls  # type: ignore[attr-defined]
    # Then: the schema and the check read the same declaration
    assert sorted(parameter.name for parameter in declared(getattr(view, method))) == names


@pytest.mark.parametrize(("path", "method", "names"), OPERATIONS)
def test_every_operation__unknown_query_parameter__400_naming_it(
    world, client, path, method, names
):
    # Given: the path naming existing rows
    concrete = path
    for parameter in ("name", "version", "alias", "key", "rule_id", "alert_id", "job_id", "id"):
        if "{" + parameter + "}" in concrete:
            concrete = concrete.replace("{" + parameter + "}", world.value(path, parameter))
    # When
    response = client.generic(
        method.upper(),
        f"{concrete}?x-unknown=1",
        b"{}" if method in {"post", "put", "patch"} else b"",
        content_type="application/json",
    )
    # Then
    assert response.status_code == 400
    assert _error(response)["code"] == "validation_error"
    assert _fields(response) == ["x-unknown"]


def test_schema__every_operation__documents_the_errors_any_view_answers():
    # Given
    schema = SchemaGenerator().get_schema(request=None, public=True)
    # Then: 400 (parameters), key, scope and rate limit everywhere; 404 with a path
    # parameter; 413 and 415 with a body; each as API.md's error body
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            expected = {"400", "401", "403", "429"}
            expected |= {"404"} if "{" in path else set()
            expected |= {"413", "415"} if method in {"post", "put", "patch"} else set()
            responses = operation["responses"]
            assert expected <= set(responses), (method, path)
            for status in expected:
                content = responses[status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}

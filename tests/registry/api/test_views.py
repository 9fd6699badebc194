"""The registry endpoints: status codes, bodies, idempotency, auth, hostile input, pagination."""

from __future__ import annotations

from typing import Any

import pytest

from apps.registry import services
from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from tests.registry.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

MODEL_BODY: dict[str, Any] = {
    "name": "churn",
    "task": "binary_classification",
    "positive_label": "churn",
    "decision_threshold": 0.5,
    "segment_attributes": ["country", "plan"],
}
VERSION_BODY: dict[str, Any] = {
    "version": "3",
    "hyperparameters": {"C": 1.0, "layers": [64, 32]},
    "metrics": {"auc": 0.91},
    "features": [{"name": "tenure_days", "importance": 0.4}],
    "dataset_versions": [{"name": "churn-train", "version": "2026-11-01"}],
    "artifact_uri": "s3://models/churn/3/model.pkl",
    "artifact_sha256": "ab" * 32,
    "code_version": "9f2c1e0",
    "tags": {"team": "growth"},
}


def _fields(response) -> list[str]:
    return [detail.get("field") for detail in response.json()["error"]["details"]]


def _snapshot() -> tuple[list[Any], ...]:
    return (
        list(MLModel.objects.order_by("id").values()),
        list(ModelVersion.objects.order_by("id").values()),
        list(Alias.objects.order_by("id").values()),
        list(RegistryEvent.objects.order_by("seq").values_list("id", flat=True)),
    )


def _churn_with_versions(*versions: str) -> MLModel:
    model = MLModelFactory.create(name="churn")
    for version in versions:
        ModelVersionFactory.create(model=model, version=version)
    return model


# --- auth: every endpoint -------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/v1/models", "read"),
    ("post", "/api/v1/models", "manage"),
    ("get", "/api/v1/models/churn", "read"),
    ("patch", "/api/v1/models/churn", "manage"),
    ("get", "/api/v1/models/churn/versions", "read"),
    ("post", "/api/v1/models/churn/versions", "manage"),
    ("get", "/api/v1/models/churn/versions/1", "read"),
    ("get", "/api/v1/models/churn/aliases/production", "read"),
    ("put", "/api/v1/models/churn/aliases/production", "manage"),
    ("post", "/api/v1/models/churn/aliases/production/rollback", "manage"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_endpoint__no_key__401_and_nothing_changes(anonymous, method, path, scope):
    # Given
    _churn_with_versions("1")
    before = _snapshot()
    # When
    response = getattr(anonymous, method)(path, {"version": "1"}, format="json")
    # Then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert _snapshot() == before


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_endpoint__wrong_scope__403_and_nothing_changes(make_client, method, path, scope):
    # Given: a key with every scope but the one needed
    _churn_with_versions("1")
    client = make_client(*sorted({"ingest", "read", "manage"} - {scope}))
    before = _snapshot()
    # When
    response = getattr(client, method)(path, {"version": "1"}, format="json")
    # Then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/models/churn"),
        ("put", "/api/v1/models/churn/versions/1"),
        ("delete", "/api/v1/models/churn/versions/1"),
        ("delete", "/api/v1/models/churn/aliases/production"),
    ],
)
def test_endpoint__unsupported_method__405(manager, method, path):
    _churn_with_versions("1")
    response = getattr(manager, method)(path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- models ---------------------------------------------------------------------------------


def test_post_models__new__201_with_model(manager):
    # When
    response = manager.post("/api/v1/models", MODEL_BODY, format="json")
    # Then
    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in MODEL_BODY} == MODEL_BODY
    assert body["description"] == ""
    assert body["aliases"] == []
    event = RegistryEvent.objects.get()
    assert event.type == "model_registered"
    assert event.actor.startswith("api_key:tests/")


def test_post_models__identical_again__200_and_no_new_event(manager):
    # Given
    first = manager.post("/api/v1/models", MODEL_BODY, format="json").json()
    # When
    response = manager.post("/api/v1/models", MODEL_BODY, format="json")
    # Then
    assert response.status_code == 200
    assert response.json() == first
    assert RegistryEvent.objects.count() == 1


def test_post_models__different_body_same_name__409_and_nothing_changes(manager):
    # Given
    manager.post("/api/v1/models", MODEL_BODY, format="json")
    before = _snapshot()
    # When
    response = manager.post(
        "/api/v1/models", {**MODEL_BODY, "decision_threshold": 0.3}, format="json"
    )
    # Then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert _fields(response) == ["decision_threshold"]
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([MODEL_BODY], []),
        ("churn", []),
        ({**MODEL_BODY, "owner": "me"}, ["owner"]),
        ({"task": "regression"}, ["name"]),
        ({"name": "churn"}, ["task"]),
        ({**MODEL_BODY, "name": "churn model"}, ["name"]),
        ({**MODEL_BODY, "name": "../etc"}, ["name"]),
        ({**MODEL_BODY, "name": 7}, ["name"]),
        ({**MODEL_BODY, "name": "x" * 101}, ["name"]),
        ({**MODEL_BODY, "name": "a\u0000b"}, ["name"]),
        ({**MODEL_BODY, "task": "clustering"}, ["task"]),
        ({**MODEL_BODY, "task": ["regression"]}, ["task"]),
        ({**MODEL_BODY, "positive_label": None}, ["positive_label"]),
        ({**MODEL_BODY, "positive_label": 1}, ["positive_label"]),
        ({**MODEL_BODY, "positive_label": "x" * 1025}, ["positive_label"]),
        ({**MODEL_BODY, "positive_label": "\u0000"}, ["positive_label"]),
        ({**MODEL_BODY, "decision_threshold": "0.5"}, ["decision_threshold"]),
        ({**MODEL_BODY, "decision_threshold": 1.01}, ["decision_threshold"]),
        ({**MODEL_BODY, "decision_threshold": False}, ["decision_threshold"]),
        ({**MODEL_BODY, "segment_attributes": {"country": 1}}, ["segment_attributes"]),
        ({**MODEL_BODY, "segment_attributes": [1]}, ["segment_attributes.0"]),
        ({**MODEL_BODY, "segment_attributes": ["a", "a"]}, ["segment_attributes.1"]),
        ({**MODEL_BODY, "segment_attributes": ["a" * 101]}, ["segment_attributes.0"]),
        ({**MODEL_BODY, "description": {"text": "x"}}, ["description"]),
    ],
)
def test_post_models__malformed__400_with_fields_and_nothing_stored(manager, body, fields):
    # When
    response = manager.post("/api/v1/models", body, format="json")
    # Then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert [field for field in _fields(response) if field] == fields
    assert MLModel.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (
            b'{"name": "churn", "task": "regression", "decision_threshold": NaN}',
            "application/json",
            400,
            "invalid_json",
        ),  # noqa: E501
        (
            b'{"name": "churn", "task": "regression", "decision_threshold": Infinity}',
            "application/json",
            400,
            "invalid_json",
        ),  # noqa: E501
        (b'{"name": "churn",', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "validation_error"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "invalid_json"),
        (
            b"name=churn&task=regression",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),  # noqa: E501
    ],
)
def test_post_models__unparseable_body__4xx_and_nothing_stored(
    manager, raw, content_type, status, code
):  # noqa: E501
    # When
    response = manager.generic("POST", "/api/v1/models", raw, content_type=content_type)
    # Then
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert MLModel.objects.count() == 0


def test_get_models__pages_by_name_with_cursor__every_model_once(reader):
    # Given
    for name in ["delta", "alpha", "charlie", "bravo", "echo"]:
        MLModelFactory.create(name=name)
    # When
    names: list[str] = []
    cursor = ""
    pages = 0
    while True:
        response = reader.get("/api/v1/models", {"limit": 2, "cursor": cursor})
        assert response.status_code == 200
        body = response.json()
        names += [model["name"] for model in body["results"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    # Then
    assert names == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert pages == 3


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "!!"}])
def test_get_models__bad_page_parameters__400(reader, query):
    response = reader.get("/api/v1/models", query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("count", [2, 6])
def test_get_models__many_models_with_aliases__constant_queries(
    reader, django_assert_num_queries, count
):
    # Given: models each with an alias
    for position in range(count):
        version = ModelVersionFactory.create(model=MLModelFactory.create(name=f"m{position}"))
        services.alias_move(
            model=f"m{position}", alias="production", version=version.version, actor="a"
        )
    # When: key lookup, the page, the aliases with their versions
    with django_assert_num_queries(3):
        response = reader.get("/api/v1/models")
    # Then
    assert response.status_code == 200
    assert [len(model["aliases"]) for model in response.json()["results"]] == [1] * count


def test_get_model__with_aliases__each_alias_with_history_newest_first(reader):
    # Given
    _churn_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="user:a")
    services.alias_move(model="churn", alias="production", version="2", actor="user:b")
    services.alias_move(model="churn", alias="staging", version="2", actor="user:c")
    services.alias_rollback(model="churn", alias="production", actor="user:d")
    # When
    response = reader.get("/api/v1/models/churn")
    # Then
    assert response.status_code == 200
    aliases = response.json()["aliases"]
    assert [alias["name"] for alias in aliases] == ["production", "staging"]
    production, staging = aliases
    assert (production["version"], production["previous_version"]) == ("1", "2")
    assert [
        (move["version"], move["previous_version"], move["actor"], move["rollback"])
        for move in production["history"]
    ] == [
        ("1", "2", "user:d", True),
        ("2", "1", "user:b", False),
        ("1", None, "user:a", False),
    ]
    assert [(move["version"], move["previous_version"]) for move in staging["history"]] == [
        ("2", None)
    ]
    assert set(production["history"][0]) == {
        "version",
        "previous_version",
        "actor",
        "at",
        "rollback",
    }


@pytest.mark.parametrize("name", ["nope", "a%00b", "x" * 300])
def test_get_model__unknown__404(reader, name):
    response = reader.get(f"/api/v1/models/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_patch_model__editable_fields__200_with_change_and_event(manager):
    # Given
    manager.post("/api/v1/models", MODEL_BODY, format="json")
    # When
    response = manager.patch(
        "/api/v1/models/churn",
        {"description": "Churn in 30 days", "decision_threshold": 0.35, "task": MODEL_BODY["task"]},
        format="json",
    )
    # Then
    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["decision_threshold"]) == ("Churn in 30 days", 0.35)
    event = RegistryEvent.objects.order_by("seq").last()
    assert event is not None
    assert event.type == "model_updated"
    assert event.state["description"] == "Churn in 30 days"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"task": "regression"}, ["task"]),
        ({"name": "other"}, ["name"]),
        ({"description": None}, ["description"]),
        ({"positive_label": ""}, ["positive_label"]),
        ({"decision_threshold": -1}, ["decision_threshold"]),
        ({"segment_attributes": "country"}, ["segment_attributes"]),
        ({"created_at": "2026-01-01T00:00:00Z"}, ["created_at"]),
        ([], []),
    ],
)
def test_patch_model__invalid__400_and_nothing_changes(manager, body, fields):
    # Given
    manager.post("/api/v1/models", MODEL_BODY, format="json")
    before = _snapshot()
    # When
    response = manager.patch("/api/v1/models/churn", body, format="json")
    # Then
    assert response.status_code == 400
    assert [field for field in _fields(response) if field] == fields
    assert _snapshot() == before


def test_patch_model__unknown__404(manager):
    response = manager.patch("/api/v1/models/nope", {"description": "x"}, format="json")
    assert response.status_code == 404


# --- versions -------------------------------------------------------------------------------


def test_post_version__new__201_with_version(manager):
    # Given
    _churn_with_versions()
    # When
    response = manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json")
    # Then
    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in VERSION_BODY} == VERSION_BODY
    assert body["model"] == "churn"
    assert body["aliases"] == []
    assert len(body["content_hash"]) == 64
    assert body["created_by"].startswith("api_key:tests/")


def test_post_version__identical_again__200_same_body_no_new_row(manager):
    # Given
    _churn_with_versions()
    first = manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json").json()
    # When
    response = manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json")
    # Then
    assert response.status_code == 200
    assert response.json() == first
    assert ModelVersion.objects.count() == 1
    assert RegistryEvent.objects.filter(type="model_version_registered").count() == 1


def test_post_version__different_content__409_and_nothing_changes(manager):
    # Given
    _churn_with_versions()
    manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json")
    before = _snapshot()
    # When
    response = manager.post(
        "/api/v1/models/churn/versions",
        {**VERSION_BODY, "tags": {"team": "risk"}, "code_version": "abc"},
        format="json",
    )
    # Then
    assert response.status_code == 409
    assert sorted(_fields(response)) == ["code_version", "tags"]
    assert _snapshot() == before


def test_post_version__unknown_model__404(manager):
    response = manager.post("/api/v1/models/nope/versions", VERSION_BODY, format="json")
    assert response.status_code == 404
    assert ModelVersion.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"extra": 1}, ["extra"]),
        ({"version": None}, ["version"]),
        ({"version": 3}, ["version"]),
        ({"version": "3/4"}, ["version"]),
        ({"version": ""}, ["version"]),
        ({"hyperparameters": "C=1"}, ["hyperparameters"]),
        ({"hyperparameters": {"a": {"b": {"c": 1}}}}, ["hyperparameters.a.b"]),
        ({"hyperparameters": {"a": "\u0000"}}, ["hyperparameters.a"]),
        ({"metrics": {"auc": "high"}}, ["metrics.auc"]),
        ({"metrics": {"auc": [0.9]}}, ["metrics.auc"]),
        ({"metrics": [0.9]}, ["metrics"]),
        ({"features": [{"name": "a"}, {"name": "a"}]}, ["features.1.name"]),
        ({"features": [{"name": "a", "importance": "0.4"}]}, ["features.0.importance"]),
        ({"features": [{"name": "a", "type": "int"}]}, ["features.0.type"]),
        ({"features": [{"name": f"f{i}"} for i in range(501)]}, ["features"]),
        (
            {"dataset_versions": [{"name": "d", "version": "1", "rows": 5}]},
            ["dataset_versions.0.rows"],
        ),  # noqa: E501
        ({"dataset_versions": ["d@1"]}, ["dataset_versions.0"]),
        ({"artifact_sha256": "z" * 64}, ["artifact_sha256"]),
        ({"artifact_sha256": "ab" * 33}, ["artifact_sha256"]),
        ({"artifact_uri": "s3://" + "x" * 1024}, ["artifact_uri"]),
        ({"code_version": ["abc"]}, ["code_version"]),
        ({"tags": {"team": {"name": "growth"}}}, ["tags.team"]),
    ],
)
def test_post_version__malformed__400_with_fields_and_nothing_stored(manager, changes, fields):
    # Given
    _churn_with_versions()
    # When
    response = manager.post(
        "/api/v1/models/churn/versions", {**VERSION_BODY, **changes}, format="json"
    )
    # Then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert _fields(response) == fields
    assert ModelVersion.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


def test_post_version__huge_integer__400_not_500(manager):
    _churn_with_versions()
    raw = b'{"version": "3", "metrics": {"n": 1' + b"0" * 400 + b"}}"
    response = manager.generic(
        "POST", "/api/v1/models/churn/versions", raw, content_type="application/json"
    )
    assert response.status_code == 400
    assert ModelVersion.objects.count() == 0


def test_get_versions__pages_in_registration_order_with_cursor(reader):
    # Given
    model = _churn_with_versions("1", "2", "3")
    ModelVersionFactory.create(model=MLModelFactory.create(name="other"), version="9")
    services.alias_move(model="churn", alias="production", version="2", actor="a")
    # When
    first = reader.get("/api/v1/models/churn/versions", {"limit": 2}).json()
    second = reader.get(
        "/api/v1/models/churn/versions", {"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    # Then
    assert [row["version"] for row in first["results"]] == ["1", "2"]
    assert [row["version"] for row in second["results"]] == ["3"]
    assert second["next_cursor"] is None
    assert first["results"][1]["aliases"] == ["production"]
    assert model.versions.count() == 3


@pytest.mark.parametrize("count", [2, 6])
def test_get_versions__many_versions__constant_queries(reader, django_assert_num_queries, count):
    # Given
    model = _churn_with_versions(*[str(n) for n in range(count)])
    services.alias_move(model=model.name, alias="production", version="0", actor="a")
    # When: key lookup, the model, the page, the aliases
    with django_assert_num_queries(4):
        response = reader.get("/api/v1/models/churn/versions")
    # Then
    assert len(response.json()["results"]) == count


def test_get_versions__unknown_model__404(reader):
    assert reader.get("/api/v1/models/nope/versions").status_code == 404


def test_get_version__registered__200_with_body(manager):
    # Given
    _churn_with_versions()
    created = manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json").json()
    # When
    response = manager.get("/api/v1/models/churn/versions/3")
    # Then
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("path", ["/api/v1/models/churn/versions/9", "/api/v1/models/x/versions/1"])
def test_get_version__unknown__404(reader, path):
    _churn_with_versions("1")
    assert reader.get(path).status_code == 404


# --- aliases --------------------------------------------------------------------------------


def test_put_alias__registered_version__200_and_event(manager):
    # Given
    _churn_with_versions("1", "2")
    manager.put("/api/v1/models/churn/aliases/production", {"version": "1"}, format="json")
    # When
    response = manager.put(
        "/api/v1/models/churn/aliases/production", {"version": "2"}, format="json"
    )
    # Then
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["version"], body["previous_version"]) == ("production", "2", "1")
    assert [move["version"] for move in body["history"]] == ["2", "1"]
    assert RegistryEvent.objects.filter(type="alias_moved").count() == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "fields"),
    [
        ("/api/v1/models/churn/aliases/production", {"version": "9"}, 400, ["version"]),
        ("/api/v1/models/churn/aliases/production", {"version": 1}, 400, ["version"]),
        ("/api/v1/models/churn/aliases/production", {}, 400, ["version"]),
        ("/api/v1/models/churn/aliases/production", {"version": "1", "x": 1}, 400, ["x"]),
        ("/api/v1/models/churn/aliases/production", ["1"], 400, []),
        ("/api/v1/models/churn/aliases/prod%20uction", {"version": "1"}, 400, ["alias"]),
        ("/api/v1/models/nope/aliases/production", {"version": "1"}, 404, []),
    ],
)
def test_put_alias__invalid__4xx_and_nothing_changes(manager, path, body, status, fields):
    # Given
    _churn_with_versions("1")
    before = _snapshot()
    # When
    response = manager.put(path, body, format="json")
    # Then
    assert response.status_code == status
    assert [field for field in _fields(response) if field] == fields
    assert _snapshot() == before


def test_get_alias__set__200_with_history(reader):
    _churn_with_versions("1")
    services.alias_move(model="churn", alias="staging", version="1", actor="a")
    response = reader.get("/api/v1/models/churn/aliases/staging")
    assert response.status_code == 200
    assert response.json()["version"] == "1"
    assert len(response.json()["history"]) == 1


def test_get_alias__unset__404(reader):
    _churn_with_versions("1")
    assert reader.get("/api/v1/models/churn/aliases/staging").status_code == 404


def test_post_rollback__after_move__200_back_to_previous(manager):
    # Given
    _churn_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    services.alias_move(model="churn", alias="production", version="2", actor="a")
    # When
    response = manager.post("/api/v1/models/churn/aliases/production/rollback")
    # Then
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["previous_version"]) == ("1", "2")
    assert Alias.objects.get(name="production").version.version == "1"


def test_post_rollback__no_previous_version__409_and_nothing_changes(manager):
    # Given
    _churn_with_versions("1")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    before = _snapshot()
    # When
    response = manager.post("/api/v1/models/churn/aliases/production/rollback")
    # Then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert _snapshot() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/models/churn/aliases/staging/rollback",
        "/api/v1/models/nope/aliases/production/rollback",
    ],
)
def test_post_rollback__unknown__404(manager, path):
    _churn_with_versions("1")
    assert manager.post(path).status_code == 404


# --- feed and schema ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_feed__registry_changes__listed_with_their_shape(manager):
    # (committed data: the feed only shows rows of finished transactions)
    # Given
    manager.post("/api/v1/models", MODEL_BODY, format="json")
    manager.post("/api/v1/models/churn/versions", VERSION_BODY, format="json")
    manager.put("/api/v1/models/churn/aliases/production", {"version": "3"}, format="json")
    # When
    response = manager.get("/api/v1/events")
    # Then
    assert response.status_code == 200
    items = [item for item in response.json()["results"] if item["event"].get("model") == "churn"]
    assert [item["type"] for item in items] == [
        "model_registered",
        "model_version_registered",
        "alias_moved",
    ]
    event = items[2]["event"]
    assert set(event) == {"id", "type", "model", "actor", "occurred_at", "received_at", "state"}
    assert event["state"]["version"] == "3"


def test_schema__registry_paths__documented_with_bodies(anonymous):
    # When
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    # Then
    paths = schema["paths"]
    assert set(paths["/api/v1/models"]) >= {"get", "post"}
    assert set(paths["/api/v1/models/{name}"]) >= {"get", "patch"}
    assert "put" in paths["/api/v1/models/{name}/aliases/{alias}"]
    assert "post" in paths["/api/v1/models/{name}/aliases/{alias}/rollback"]
    post = paths["/api/v1/models/{name}/versions"]["post"]
    assert "requestBody" in post
    assert set(post["responses"]) >= {"200", "201", "400", "401", "403", "404", "409"}
    version = schema["components"]["schemas"]["ModelVersionRegisterRequest"]["properties"]
    assert set(version) >= set(VERSION_BODY)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/models/a%00b"),
        ("patch", "/api/v1/models/a%00b"),
        ("get", "/api/v1/models/a%00b/versions"),
        ("post", "/api/v1/models/a%00b/versions"),
        ("get", "/api/v1/models/churn/versions/1%00"),
        ("get", "/api/v1/models/churn/aliases/prod%00"),
        ("put", "/api/v1/models/churn/aliases/prod%00"),
        ("post", "/api/v1/models/churn/aliases/prod%00/rollback"),
        ("get", "/api/v1/models/" + "%F0%9F%92%A5" * 50),
    ],
)
def test_endpoint__hostile_path__4xx_never_500(manager, method, path):
    # Given
    _churn_with_versions("1")
    before = _snapshot()
    # When
    response = getattr(manager, method)(path, VERSION_BODY | {"version": "1"}, format="json")
    # Then
    assert response.status_code in {400, 404}
    assert _snapshot() == before

"""Registry use cases: idempotent registration, conflicts, alias moves, rollback, events."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.registry import services
from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from tests.registry.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

VERSION_BODY: dict[str, Any] = {
    "hyperparameters": {"C": 1.0, "penalty": "l2", "layers": [64, 32], "opt": {"lr": 0.01}},
    "metrics": {"auc": 0.91, "log_loss": 0.3},
    "features": [{"name": "tenure_days", "importance": 0.4}, {"name": "sessions_7d"}],
    "dataset_versions": [{"name": "churn-train", "version": "2026-11-01"}],
    "artifact_uri": "s3://models/churn/3/model.pkl",
    "artifact_sha256": "AB" * 32,
    "code_version": "9f2c1e0",
    "tags": {"team": "growth"},
}


def _events(model: MLModel | None = None, type_: str | None = None) -> list[RegistryEvent]:
    rows = RegistryEvent.objects.order_by("seq")
    if model is not None:
        rows = rows.filter(model=model)
    if type_ is not None:
        rows = rows.filter(type=type_)
    return list(rows)


# --- model_create -------------------------------------------------------------------------


def test_model_create__new_name__stores_model_and_records_event():
    # When
    model, created = services.model_create(
        name="churn",
        task="binary_classification",
        positive_label="churn",
        decision_threshold=0.4,
        segment_attributes=["country", "plan"],
        actor="user:alice",
    )
    # Then
    assert created is True
    stored = MLModel.objects.get(name="churn")
    assert (stored.task, stored.positive_label, stored.decision_threshold) == (
        "binary_classification",
        "churn",
        0.4,
    )
    assert stored.segment_attributes == ["country", "plan"]
    [event] = _events()
    assert event.type == "model_registered"
    assert event.actor == "user:alice"
    assert event.model_id == model.pk
    assert event.state == services.model_state(stored)
    assert event.state["decision_threshold"] == 0.4


def test_model_create__identical_again__returns_stored_without_event():
    # Given
    first, _ = services.model_create(name="m", task="regression", actor="a")
    # When
    again, created = services.model_create(
        name="m", task="regression", decision_threshold=0.5, segment_attributes=[], actor="b"
    )
    # Then
    assert created is False
    assert again.pk == first.pk
    assert len(_events()) == 1


def test_model_create__different_fields_same_name__conflict_and_nothing_changes():
    # Given
    services.model_create(name="m", task="regression", description="one", actor="a")
    # When
    with pytest.raises(Conflict) as raised:
        services.model_create(name="m", task="regression", description="two", actor="a")
    # Then
    assert raised.value.details == [
        {"field": "description", "message": "Differs from the registered model."}
    ]
    assert MLModel.objects.get(name="m").description == "one"
    assert len(_events()) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "-leading"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"task": "ranking"}, "task"),
        ({"positive_label": ""}, "positive_label"),
        ({"positive_label": "a\x00b"}, "positive_label"),
        ({"decision_threshold": 1.5}, "decision_threshold"),
        ({"decision_threshold": -0.1}, "decision_threshold"),
        ({"decision_threshold": "0.5"}, "decision_threshold"),
        ({"decision_threshold": True}, "decision_threshold"),
        ({"segment_attributes": ["country", "country"]}, "segment_attributes.1"),
        ({"segment_attributes": [""]}, "segment_attributes.0"),
        ({"segment_attributes": [f"a{i}" for i in range(51)]}, "segment_attributes"),
        ({"segment_attributes": "country"}, "segment_attributes"),
        ({"description": "d" * 1025}, "description"),
    ],
)
def test_model_create__invalid_field__validation_error_and_nothing_stored(overrides, field):
    # Given
    body: dict[str, Any] = {
        "name": "churn",
        "task": "binary_classification",
        "positive_label": "churn",
        **overrides,
    }
    # When
    with pytest.raises(ValidationFailed) as raised:
        services.model_create(**body, actor="a")
    # Then
    assert [detail["field"] for detail in raised.value.details] == [field]
    assert MLModel.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


# --- model_update -------------------------------------------------------------------------


def test_model_update__changed_fields__saved_with_event_of_full_state():
    # Given
    services.model_create(name="m", task="binary_classification", positive_label="y", actor="a")
    # When
    model = services.model_update(
        name="m", decision_threshold=0.7, segment_attributes=["plan"], actor="user:bob"
    )
    # Then
    stored = MLModel.objects.get(name="m")
    assert (stored.decision_threshold, stored.segment_attributes) == (0.7, ["plan"])
    assert stored.updated_at == model.updated_at
    registered, updated = _events()
    assert updated.type == "model_updated"
    assert updated.actor == "user:bob"
    assert updated.state == services.model_state(stored)
    assert updated.state["positive_label"] == "y"


def test_model_update__nothing_changes__no_event():
    # Given
    services.model_create(name="m", task="regression", description="d", actor="a")
    # When
    services.model_update(name="m", description="d", task="regression", actor="a")
    # Then
    assert len(_events()) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task": "regression"}, "task"),
        ({"positive_label": ""}, "positive_label"),
        ({"decision_threshold": 2}, "decision_threshold"),
    ],
)
def test_model_update__invalid_change__validation_error_and_nothing_changes(changes, field):
    # Given
    services.model_create(name="m", task="binary_classification", positive_label="y", actor="a")
    before = services.model_state(MLModel.objects.get(name="m"))
    # When
    with pytest.raises(ValidationFailed) as raised:
        services.model_update(name="m", actor="a", **changes)
    # Then
    assert [detail["field"] for detail in raised.value.details] == [field]
    assert services.model_state(MLModel.objects.get(name="m")) == before
    assert len(_events()) == 1


def test_model_update__unknown_model__not_found():
    with pytest.raises(NotFound):
        services.model_update(name="nope", description="x", actor="a")


# --- model_version_register ---------------------------------------------------------------


def test_model_version_register__new__stores_normal_form_and_records_event():
    # Given
    model = MLModelFactory.create(name="churn")
    # When
    version, created = services.model_version_register(
        model="churn", version="3", actor="api_key:trainer/abc", **VERSION_BODY
    )
    # Then
    assert created is True
    stored = ModelVersion.objects.get(model=model, version="3")
    assert stored.artifact_sha256 == "ab" * 32
    assert stored.features == [{"name": "tenure_days", "importance": 0.4}, {"name": "sessions_7d"}]
    assert stored.created_by == "api_key:trainer/abc"
    assert len(stored.content_hash) == 64
    [event] = _events(model)
    assert event.type == "model_version_registered"
    assert event.actor == "api_key:trainer/abc"
    assert event.state == services.model_version_state(stored)


def test_model_version_register__identical_again__returns_stored_without_event():
    # Given
    MLModelFactory.create(name="churn")
    first, _ = services.model_version_register(
        model="churn", version="3", actor="a", **VERSION_BODY
    )
    # When: the same content, keys reordered, integral numbers written as floats
    body = dict(reversed(list(VERSION_BODY.items())))
    body["hyperparameters"] = {**VERSION_BODY["hyperparameters"], "layers": [64.0, 32.0]}
    again, created = services.model_version_register(model="churn", version="3", actor="b", **body)
    # Then
    assert created is False
    assert again.pk == first.pk
    assert again.created_by == "a"
    assert ModelVersion.objects.count() == 1
    assert len(_events(type_="model_version_registered")) == 1


def test_model_version_register__different_content__conflict_and_nothing_changes():
    # Given
    MLModelFactory.create(name="churn")
    services.model_version_register(model="churn", version="3", actor="a", **VERSION_BODY)
    before = list(ModelVersion.objects.values())
    # When
    with pytest.raises(Conflict) as raised:
        services.model_version_register(
            model="churn", version="3", actor="a", **{**VERSION_BODY, "metrics": {"auc": 0.5}}
        )
    # Then
    assert raised.value.details == [
        {"field": "metrics", "message": "Differs from the registered version."}
    ]
    assert list(ModelVersion.objects.values()) == before
    assert len(_events(type_="model_version_registered")) == 1


def test_model_version_register__unknown_model__not_found_and_nothing_stored():
    with pytest.raises(NotFound):
        services.model_version_register(model="nope", version="1", actor="a")
    assert ModelVersion.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"version": "3 beta"}, ["version"]),
        ({"version": 3}, ["version"]),
        ({"hyperparameters": []}, ["hyperparameters"]),
        ({"hyperparameters": {"a": {"b": {"c": 1}}}}, ["hyperparameters.a.b"]),
        ({"hyperparameters": {"a": [[1]]}}, ["hyperparameters.a.0"]),
        ({"hyperparameters": {"": 1}}, ["hyperparameters"]),
        ({"hyperparameters": {"a": "x\x00"}}, ["hyperparameters.a"]),
        ({"hyperparameters": {"a": "x" * 1025}}, ["hyperparameters.a"]),
        ({"hyperparameters": {"a": float("nan")}}, ["hyperparameters.a"]),
        ({"metrics": {"auc": "0.9"}}, ["metrics.auc"]),
        ({"metrics": {"auc": float("inf")}}, ["metrics.auc"]),
        ({"metrics": {"auc": None}}, ["metrics.auc"]),
        ({"metrics": {"auc": True}}, ["metrics.auc"]),
        ({"tags": {"team": ["a"]}}, ["tags.team"]),
        ({"tags": "growth"}, ["tags"]),
        ({"features": {"tenure": 1}}, ["features"]),
        ({"features": ["tenure"]}, ["features.0"]),
        ({"features": [{"name": "a"}, {"name": "a"}]}, ["features.1.name"]),
        ({"features": [{"name": "a", "weight": 1}]}, ["features.0.weight"]),
        ({"features": [{"name": "a", "importance": "high"}]}, ["features.0.importance"]),
        ({"features": [{"importance": 1}]}, ["features.0.name"]),
        ({"features": [{"name": f"f{i}"} for i in range(501)]}, ["features"]),
        ({"dataset_versions": [{"name": "d"}]}, ["dataset_versions.0.version"]),
        ({"dataset_versions": [{"name": "d", "version": 1}]}, ["dataset_versions.0.version"]),
        ({"artifact_sha256": "abc"}, ["artifact_sha256"]),
        ({"artifact_sha256": "g" * 64}, ["artifact_sha256"]),
        ({"artifact_uri": "s3://" + "x" * 1020}, ["artifact_uri"]),
        ({"code_version": 7}, ["code_version"]),
    ],
)
def test_model_version_register__malformed__validation_error_and_nothing_stored(overrides, fields):
    # Given
    MLModelFactory.create(name="churn")
    body: dict[str, Any] = {"version": "3", **overrides}
    # When
    with pytest.raises(ValidationFailed) as raised:
        services.model_version_register(model="churn", actor="a", **body)
    # Then
    assert [detail["field"] for detail in raised.value.details] == fields
    assert ModelVersion.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


def test_model_version__raw_sql_update_or_delete__refused_by_the_database():
    # Given
    version = ModelVersionFactory.create(metrics={"auc": 0.8})
    # When / Then
    for statement in (
        "UPDATE registry_modelversion SET metrics = '{}' WHERE id = %s",
        "DELETE FROM registry_modelversion WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement, [version.pk])
    assert ModelVersion.objects.get(pk=version.pk).metrics == {"auc": 0.8}


def test_registry_event__raw_sql_update__refused_by_the_database():
    # Given
    services.model_create(name="m", task="regression", actor="a")
    # When / Then
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE registry_registryevent SET actor = 'x'")
    assert RegistryEvent.objects.get().actor == "a"


# --- aliases ------------------------------------------------------------------------------


def _model_with_versions(*versions: str) -> MLModel:
    model = MLModelFactory.create(name="churn")
    for version in versions:
        ModelVersionFactory.create(model=model, version=version)
    return model


def test_alias_move__new_alias__created_with_event_of_full_state():
    # Given
    model = _model_with_versions("1", "2")
    # When
    alias = services.alias_move(model="churn", alias="production", version="1", actor="user:a")
    # Then
    stored = Alias.objects.get(model=model, name="production")
    assert (stored.version.version, stored.previous_version) == ("1", None)
    assert alias.pk == stored.pk
    [event] = _events(model, "alias_moved")
    assert event.actor == "user:a"
    assert event.state == {
        "model": "churn",
        "alias": "production",
        "version": "1",
        "previous_version": None,
        "rollback": False,
        "updated_at": stored.updated_at.isoformat(),
        "updated_by": "user:a",
    }


def test_alias_move__existing_alias__moves_and_records_previous_version():
    # Given
    model = _model_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    # When
    services.alias_move(model="churn", alias="production", version="2", actor="b")
    # Then
    stored = Alias.objects.get(model=model, name="production")
    assert stored.previous_version is not None
    assert (stored.version.version, stored.previous_version.version) == ("2", "1")
    first, second = _events(model, "alias_moved")
    assert (second.state["version"], second.state["previous_version"]) == ("2", "1")
    assert second.actor == "b"


def test_alias_move__to_current_version__no_op_without_event():
    # Given
    model = _model_with_versions("1")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    # When
    services.alias_move(model="churn", alias="production", version="1", actor="b")
    # Then
    assert len(_events(model, "alias_moved")) == 1
    assert Alias.objects.get(model=model).updated_by == "a"


@pytest.mark.parametrize(
    ("model", "alias", "version", "error"),
    [
        ("nope", "production", "1", NotFound),
        ("churn", "production", "9", ValidationFailed),
        ("churn", "bad alias", "1", ValidationFailed),
    ],
)
def test_alias_move__invalid__error_and_nothing_changes(model, alias, version, error):
    # Given
    _model_with_versions("1")
    # When
    with pytest.raises(error):
        services.alias_move(model=model, alias=alias, version=version, actor="a")
    # Then
    assert Alias.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


def test_alias_move__version_of_another_model__validation_error():
    # Given
    _model_with_versions("1")
    ModelVersionFactory.create(model=MLModelFactory.create(name="other"), version="7")
    # When / Then
    with pytest.raises(ValidationFailed):
        services.alias_move(model="churn", alias="production", version="7", actor="a")
    assert Alias.objects.count() == 0


def test_alias_rollback__after_a_move__moves_back_with_event():
    # Given
    model = _model_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    services.alias_move(model="churn", alias="production", version="2", actor="a")
    # When
    alias = services.alias_rollback(model="churn", alias="production", actor="user:ops")
    # Then
    stored = Alias.objects.get(pk=alias.pk)
    assert stored.previous_version is not None
    assert (stored.version.version, stored.previous_version.version) == ("1", "2")
    last = _events(model, "alias_moved")[-1]
    assert last.actor == "user:ops"
    assert (last.state["version"], last.state["previous_version"]) == ("1", "2")
    assert last.state["rollback"] is True


def test_alias_rollback__twice__returns_to_where_it_started():
    # Given
    _model_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    services.alias_move(model="churn", alias="production", version="2", actor="a")
    services.alias_rollback(model="churn", alias="production", actor="a")
    # When
    alias = services.alias_rollback(model="churn", alias="production", actor="a")
    # Then
    assert alias.version.version == "2"


def test_alias_rollback__never_moved__conflict_and_nothing_changes():
    # Given
    model = _model_with_versions("1")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    # When
    with pytest.raises(Conflict):
        services.alias_rollback(model="churn", alias="production", actor="a")
    # Then
    assert Alias.objects.get(model=model).version.version == "1"
    assert len(_events(model, "alias_moved")) == 1


def test_alias_rollback__unknown_alias__not_found():
    _model_with_versions("1")
    with pytest.raises(NotFound):
        services.alias_rollback(model="churn", alias="staging", actor="a")


# --- concurrency (real connections, committed data) ---------------------------------------


def _race(target: Any, count: int = 2) -> list[Any]:
    """Run `target` in `count` threads (each its own connection) started together."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(position: int) -> None:
        try:
            barrier.wait()
            results[position] = target()
        except Exception as error:  # noqa: BLE001 - the test inspects what each thread got
            results[position] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(position,)) for position in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_model_version_register__two_connections_at_once__one_row_one_event():
    # Given
    model = MLModelFactory.create(name="churn")
    # When
    results = _race(
        lambda: services.model_version_register(
            model="churn", version="3", actor="a", **VERSION_BODY
        )
    )
    # Then
    assert sorted(created for _, created in results) == [False, True]
    assert len({row.pk for row, _ in results}) == 1
    assert ModelVersion.objects.filter(model=model).count() == 1
    assert len(_events(model, "model_version_registered")) == 1


@pytest.mark.django_db(transaction=True)
def test_model_create__two_connections_at_once__one_row_one_event():
    # When
    results = _race(lambda: services.model_create(name="m", task="regression", actor="a"))
    # Then
    assert sorted(created for _, created in results) == [False, True]
    assert MLModel.objects.count() == 1
    assert len(_events(type_="model_registered")) == 1


@pytest.mark.django_db(transaction=True)
def test_alias_move__two_connections_create_same_alias__one_row_consistent_history():
    # Given
    model = _model_with_versions("1", "2")
    versions = iter(["1", "2"])
    lock = threading.Lock()

    def move() -> Alias:
        with lock:
            version = next(versions)
        return services.alias_move(model="churn", alias="production", version=version, actor="a")

    # When
    results = _race(move)
    # Then
    assert all(isinstance(result, Alias) for result in results)
    stored = Alias.objects.get(model=model, name="production")
    first, second = _events(model, "alias_moved")
    assert first.state["previous_version"] is None
    assert second.state["previous_version"] == first.state["version"]
    assert second.state["version"] == stored.version.version

"""Registry reads other apps rely on: lookups, version ids, alias history, feed shape."""

from __future__ import annotations

import pytest

from apps.core.errors import NotFound
from apps.registry import selectors, services
from tests.registry.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


def test_model_get__existing__returns_it():
    model = MLModelFactory.create(name="churn")
    assert selectors.model_get(name="churn").pk == model.pk


@pytest.mark.parametrize("name", ["nope", "", "a\x00b", "x" * 500, "a b"])
def test_model_get__unknown_or_malformed__not_found(name):
    MLModelFactory.create(name="churn")
    with pytest.raises(NotFound):
        selectors.model_get(name=name)


def test_model_version_get__existing__with_model_joined(django_assert_num_queries):
    # Given
    ModelVersionFactory.create(model=MLModelFactory.create(name="churn"), version="3")
    # When: the version with its model, and its aliases
    with django_assert_num_queries(2):
        version = selectors.model_version_get(model="churn", version="3")
        # Then
        assert version.model.name == "churn"
        assert list(version.aliases.all()) == []


@pytest.mark.parametrize(("model", "version"), [("churn", "4"), ("other", "3"), ("churn", "\x00")])
def test_model_version_get__unknown__not_found(model, version):
    ModelVersionFactory.create(model=MLModelFactory.create(name="churn"), version="3")
    with pytest.raises(NotFound):
        selectors.model_version_get(model=model, version=version)


def test_model_version_ids__mixed_pairs__only_registered_ones(django_assert_num_queries):
    # Given
    churn = MLModelFactory.create(name="churn")
    one = ModelVersionFactory.create(model=churn, version="1")
    two = ModelVersionFactory.create(model=churn, version="2")
    other = ModelVersionFactory.create(model=MLModelFactory.create(name="other"), version="1")
    pairs = [("churn", "1"), ("churn", "2"), ("other", "1"), ("churn", "9"), ("x\x00", "1")]
    # When
    with django_assert_num_queries(1):
        ids = selectors.model_version_ids(pairs=pairs)
    # Then
    assert ids == {("churn", "1"): one.pk, ("churn", "2"): two.pk, ("other", "1"): other.pk}


def test_model_version_ids__no_pairs__empty_without_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert selectors.model_version_ids(pairs=[]) == {}


def test_model_version_list__of_one_model__only_its_versions():
    churn = MLModelFactory.create(name="churn")
    ModelVersionFactory.create(model=churn, version="1")
    ModelVersionFactory.create(model=MLModelFactory.create(name="other"), version="2")
    assert [row.version for row in selectors.model_version_list(model="churn")] == ["1"]


def test_alias_get__set__returns_alias_with_versions():
    # Given
    churn = MLModelFactory.create(name="churn")
    ModelVersionFactory.create(model=churn, version="1")
    ModelVersionFactory.create(model=churn, version="2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    services.alias_move(model="churn", alias="production", version="2", actor="a")
    # When
    alias = selectors.alias_get(model="churn", alias="production")
    # Then
    assert alias.version.version == "2"
    assert alias.previous_version is not None
    assert alias.previous_version.version == "1"


@pytest.mark.parametrize(("model", "alias"), [("churn", "staging"), ("x", "production")])
def test_alias_get__unset__not_found(model, alias):
    MLModelFactory.create(name="churn")
    with pytest.raises(NotFound):
        selectors.alias_get(model=model, alias=alias)


def test_alias_history__many_moves__latest_per_alias_newest_first_one_query(
    django_assert_num_queries,
):
    # Given: production moved 5 times, staging once, and another model's alias
    churn = MLModelFactory.create(name="churn")
    for version in ["1", "2", "3"]:
        ModelVersionFactory.create(model=churn, version=version)
    for version in ["1", "2", "3", "1", "2"]:
        services.alias_move(model="churn", alias="production", version=version, actor=f"u{version}")
    services.alias_move(model="churn", alias="staging", version="3", actor="s")
    ModelVersionFactory.create(model=MLModelFactory.create(name="other"), version="1")
    services.alias_move(model="other", alias="production", version="1", actor="o")
    # When
    with django_assert_num_queries(1):
        history = selectors.alias_history(model=churn, limit=3)
    # Then
    assert sorted(history) == ["production", "staging"]
    assert [(move.version, move.previous_version) for move in history["production"]] == [
        ("2", "1"),
        ("1", "3"),
        ("3", "2"),
    ]
    assert [(move.version, move.actor) for move in history["staging"]] == [("3", "s")]


def test_alias_history__one_alias_asked__only_that_alias():
    churn = MLModelFactory.create(name="churn")
    ModelVersionFactory.create(model=churn, version="1")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    services.alias_move(model="churn", alias="staging", version="1", actor="a")
    assert list(selectors.alias_history(model=churn, aliases=["staging"])) == ["staging"]


def test_model_list__aliases_prefetched__two_queries(django_assert_num_queries):
    # Given
    for name in ["a", "b", "c"]:
        version = ModelVersionFactory.create(model=MLModelFactory.create(name=name))
        services.alias_move(model=name, alias="production", version=version.version, actor="x")
    # When
    with django_assert_num_queries(2):
        rows = [
            (model.name, [(alias.name, alias.version.version) for alias in model.aliases.all()])
            for model in selectors.model_list().order_by("name")
        ]
    # Then
    assert [name for name, _ in rows] == ["a", "b", "c"]
    assert all(len(aliases) == 1 for _, aliases in rows)


def test_registry_event_serialize__alias_move__feed_shape():
    # Given
    churn = MLModelFactory.create(name="churn")
    ModelVersionFactory.create(model=churn, version="1")
    services.alias_move(model="churn", alias="production", version="1", actor="user:a")
    event = selectors.registry_event_rows().get()
    # When
    shown = selectors.registry_event_serialize(event)
    # Then
    assert shown == {
        "id": str(event.id),
        "type": "alias_moved",
        "model": "churn",
        "actor": "user:a",
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "state": event.state,
    }

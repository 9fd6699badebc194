"""Control characters in the names a registry body carries: 400 naming the field, nothing
stored. Free text (a description) may keep line breaks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from tests.registry.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

MODEL = {"name": "churn", "task": "regression", "segment_attributes": ["country"]}
VERSION: dict[str, Any] = {
    "version": "3",
    "hyperparameters": {"C": 1.0},
    "metrics": {"auc": 0.91},
    "features": [{"name": "tenure_days"}],
    "dataset_versions": [{"name": "churn-train", "version": "2026-11-01"}],
    "tags": {"team": "growth"},
}


def _send(client: Any, method: str, path: str, body: Any) -> Any:
    return client.generic(method, path, orjson.dumps(body), content_type="application/json")


def _snapshot() -> tuple[int, int, int, int]:
    return (
        MLModel.objects.count(),
        ModelVersion.objects.count(),
        Alias.objects.count(),
        RegistryEvent.objects.count(),
    )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**MODEL, "name": "ch\x01urn"}, "name", None),
        ({**MODEL, "name": "churn\n"}, "name", None),
        (
            {**MODEL, "segment_attributes": ["coun\ttry"]},
            "segment_attributes.0",
            "Must not contain control characters (found U+0009 at position 4).",
        ),
        (
            {**MODEL, "segment_attributes": ["plan", "\x85"]},
            "segment_attributes.1",
            "Must not contain control characters (found U+0085 at position 0).",
        ),
    ],
)
def test_create_model__control_character_in_a_name__400_naming_it_and_nothing_stored(
    manager, body, field, message
):
    # When
    response = _send(manager, "POST", "/api/v1/models", body)
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == [field]
    if message is not None:
        assert error["details"][0]["message"] == message
    assert _snapshot() == (0, 0, 0, 0)


def test_create_model__line_breaks_in_the_description__kept(manager):
    # When
    response = _send(manager, "POST", "/api/v1/models", {**MODEL, "description": "a\nb\tc"})
    # Then
    assert response.status_code == 201
    assert MLModel.objects.get().description == "a\nb\tc"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "3\x00"}, "version"),
        ({"version": "3\x7f"}, "version"),
        ({"features": [{"name": "tenure\x1bdays"}]}, "features.0.name"),
        (
            {"dataset_versions": [{"name": "churn\x00train", "version": "1"}]},
            "dataset_versions.0.name",
        ),
        (
            {"dataset_versions": [{"name": "churn-train", "version": "1\r"}]},
            "dataset_versions.0.version",
        ),
        ({"hyperparameters": {"learning\x08rate": 0.1}}, "hyperparameters"),
        ({"hyperparameters": {"optimizer": {"be\x9ata": 0.9}}}, "hyperparameters.optimizer"),
        ({"metrics": {"auc\x1f": 0.9}}, "metrics"),
        ({"tags": {"\x02": "x"}}, "tags"),
    ],
)
def test_register_version__control_character_in_a_name__400_naming_it_and_nothing_stored(
    manager, changes, field
):
    # Given
    MLModelFactory.create(name="churn")
    before = _snapshot()
    # When
    response = _send(manager, "POST", "/api/v1/models/churn/versions", {**VERSION, **changes})
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert _snapshot() == before


@pytest.mark.parametrize(("alias", "version"), [("production\x01", "3"), ("production", "3\x01")])
def test_move_alias__control_character_in_alias_or_version__4xx_and_nothing_moved(
    manager, alias, version
):
    # Given
    ModelVersionFactory.create(model=MLModelFactory.create(name="churn"), version="3")
    before = _snapshot()
    # When
    response = _send(manager, "PUT", f"/api/v1/models/churn/aliases/{alias}", {"version": version})
    # Then: a path that names nothing is a 404, a body field a 400, each naming the field
    assert response.status_code == (404 if "\x01" in alias else 400)
    assert [detail["field"] for detail in response.json()["error"]["details"]] == [
        "alias" if "\x01" in alias else "version"
    ]
    assert _snapshot() == before

"""The registry admin through Django's test client: changes go through the services."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from apps.registry import services
from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from tests.registry.factories import MLModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

MODELS = "/admin/registry/mlmodel/"
VERSIONS = "/admin/registry/modelversion/"
ALIASES = "/admin/registry/alias/"
EVENTS = "/admin/registry/registryevent/"
# The management forms of the model page's (read-only) alias and version inlines.
INLINES = {
    "aliases-TOTAL_FORMS": "0",
    "aliases-INITIAL_FORMS": "0",
    "versions-TOTAL_FORMS": "0",
    "versions-INITIAL_FORMS": "0",
}


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def _churn_with_versions(*versions: str) -> MLModel:
    model = MLModelFactory.create(name="churn")
    for version in versions:
        ModelVersionFactory.create(model=model, version=version)
    return model


# --- models -------------------------------------------------------------------------------


def test_admin_model_add__valid__registered_through_service_with_user_actor(admin_client):
    # When
    response = admin_client.post(
        f"{MODELS}add/",
        {
            "name": "churn",
            "task": "binary_classification",
            "description": "",
            "positive_label": "churn",
            "decision_threshold": "0.4",
            "segment_attributes": "country,plan",
            **INLINES,
        },
    )
    # Then
    assert response.status_code == 302
    model = MLModel.objects.get(name="churn")
    assert (model.decision_threshold, model.segment_attributes) == (0.4, ["country", "plan"])
    event = RegistryEvent.objects.get()
    assert (event.type, event.actor) == ("model_registered", "user:admin")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"positive_label": ""}, "positive_label"),
        ({"segment_attributes": "country,country"}, "segment_attributes"),
        ({"name": "bad name"}, "name"),
        ({"decision_threshold": "2"}, "decision_threshold"),
    ],
)
def test_admin_model_add__invalid__form_error_and_nothing_stored(admin_client, changes, field):
    # Given
    body = {
        "name": "churn",
        "task": "binary_classification",
        "positive_label": "churn",
        "decision_threshold": "0.5",
        "segment_attributes": "",
        **INLINES,
        **changes,
    }
    # When
    response = admin_client.post(f"{MODELS}add/", body)
    # Then
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert MLModel.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


def test_admin_model_change__editable_fields__updated_with_event_task_unchanged(admin_client):
    # Given
    model, _ = services.model_create(
        name="churn", task="binary_classification", positive_label="churn", actor="a"
    )
    # When: a tampered form also sends a new task and name, which are read-only
    response = admin_client.post(
        f"{MODELS}{model.pk}/change/",
        {
            "name": "renamed",
            "task": "regression",
            "description": "30-day churn",
            "positive_label": "churn",
            "decision_threshold": "0.6",
            "segment_attributes": "country",
            **INLINES,
        },
    )
    # Then
    assert response.status_code == 302
    stored = MLModel.objects.get(pk=model.pk)
    assert (stored.name, stored.task, stored.description) == (
        "churn",
        "binary_classification",
        "30-day churn",
    )
    assert (stored.decision_threshold, stored.segment_attributes) == (0.6, ["country"])
    event = RegistryEvent.objects.order_by("seq").last()
    assert event is not None
    assert (event.type, event.actor) == ("model_updated", "user:admin")


def test_admin_model_page__aliases_moved__shows_history_and_inlines(admin_client):
    # Given
    model = _churn_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="user:alice")
    services.alias_move(model="churn", alias="production", version="2", actor="user:bob")
    # When
    response = admin_client.get(f"{MODELS}{model.pk}/change/")
    # Then
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alias history" in page
    assert "user:alice" in page
    assert "user:bob" in page
    assert admin_client.get(MODELS).status_code == 200


def test_admin_model_delete__refused(admin_client):
    model = _churn_with_versions()
    response = admin_client.post(f"{MODELS}{model.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert MLModel.objects.filter(pk=model.pk).exists()


# --- versions -----------------------------------------------------------------------------


def test_admin_version_add__valid__registered_through_service(admin_client):
    # Given
    model = _churn_with_versions()
    # When
    response = admin_client.post(
        f"{VERSIONS}add/",
        {
            "model": str(model.pk),
            "version": "3",
            "hyperparameters": '{"C": 1.0}',
            "metrics": '{"auc": 0.9}',
            "features": '[{"name": "tenure_days", "importance": 0.4}]',
            "dataset_versions": "[]",
            "artifact_uri": "",
            "artifact_sha256": "AB" * 32,
            "code_version": "",
            "tags": "{}",
        },
    )
    # Then
    assert response.status_code == 302
    version = ModelVersion.objects.get(model=model, version="3")
    assert version.artifact_sha256 == "ab" * 32
    assert version.created_by == "user:admin"
    assert len(version.content_hash) == 64
    event = RegistryEvent.objects.get()
    assert (event.type, event.actor) == ("model_version_registered", "user:admin")


def test_admin_version_add__bad_metrics__form_error_and_nothing_stored(admin_client):
    # Given
    model = _churn_with_versions()
    # When
    response = admin_client.post(
        f"{VERSIONS}add/",
        {
            "model": str(model.pk),
            "version": "3",
            "hyperparameters": "{}",
            "metrics": '{"auc": "high"}',
            "features": "[]",
            "dataset_versions": "[]",
            "tags": "{}",
        },
    )
    # Then
    assert response.status_code == 200
    assert "metrics" in response.context["adminform"].form.errors
    assert ModelVersion.objects.count() == 0


def test_admin_version__registered__view_only_no_change_no_delete(admin_client):
    # Given
    version = ModelVersionFactory.create(metrics={"auc": 0.8})
    # When
    view = admin_client.get(f"{VERSIONS}{version.pk}/change/")
    change = admin_client.post(f"{VERSIONS}{version.pk}/change/", {"metrics": "{}"})
    delete = admin_client.post(f"{VERSIONS}{version.pk}/delete/", {"post": "yes"})
    # Then
    assert view.status_code == 200
    assert change.status_code == 403
    assert delete.status_code == 403
    assert ModelVersion.objects.get(pk=version.pk).metrics == {"auc": 0.8}


# --- alias actions ------------------------------------------------------------------------


def test_admin_move_alias_action__one_version__alias_moved_with_user_actor(admin_client):
    # Given
    model = _churn_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    target = ModelVersion.objects.get(model=model, version="2")
    # When
    response = admin_client.post(
        VERSIONS,
        {"action": "move_alias", "_selected_action": [str(target.pk)], "alias": "production"},
        follow=True,
    )
    # Then
    assert response.status_code == 200
    assert _messages(response) == ["churn:production now points at 2."]
    alias = Alias.objects.get(model=model, name="production")
    assert alias.version_id == target.pk
    event = RegistryEvent.objects.filter(type="alias_moved").order_by("seq").last()
    assert event is not None
    assert event.actor == "user:admin"
    assert (event.state["version"], event.state["previous_version"]) == ("2", "1")


def test_admin_move_alias_action__two_versions__error_and_nothing_moves(admin_client):
    # Given
    model = _churn_with_versions("1", "2")
    ids = [str(pk) for pk in model.versions.values_list("pk", flat=True)]
    # When
    response = admin_client.post(
        VERSIONS,
        {"action": "move_alias", "_selected_action": ids, "alias": "production"},
        follow=True,
    )
    # Then
    assert _messages(response) == ["Select exactly one version."]
    assert Alias.objects.count() == 0
    assert RegistryEvent.objects.count() == 0


def test_admin_move_alias_action__bad_alias_name__error_and_nothing_moves(admin_client):
    # Given
    model = _churn_with_versions("1")
    # When
    response = admin_client.post(
        VERSIONS,
        {
            "action": "move_alias",
            "_selected_action": [str(model.versions.get().pk)],
            "alias": "prod uction",
        },
        follow=True,
    )
    # Then
    assert _messages(response) == ["The alias move is invalid."]
    assert Alias.objects.count() == 0


def test_admin_roll_back_action__moved_alias__rolled_back_with_user_actor(admin_client):
    # Given
    model = _churn_with_versions("1", "2")
    services.alias_move(model="churn", alias="production", version="1", actor="a")
    alias = services.alias_move(model="churn", alias="production", version="2", actor="a")
    # When
    response = admin_client.post(
        ALIASES, {"action": "roll_back", "_selected_action": [str(alias.pk)]}, follow=True
    )
    # Then
    assert _messages(response) == ["churn:production rolled back to 1."]
    assert Alias.objects.get(model=model).version.version == "1"
    event = RegistryEvent.objects.filter(type="alias_moved").order_by("seq").last()
    assert event is not None
    assert (event.actor, event.state["rollback"]) == ("user:admin", True)


def test_admin_roll_back_action__never_moved__error_and_nothing_changes(admin_client):
    # Given
    _churn_with_versions("1")
    alias = services.alias_move(model="churn", alias="production", version="1", actor="a")
    # When
    response = admin_client.post(
        ALIASES, {"action": "roll_back", "_selected_action": [str(alias.pk)]}, follow=True
    )
    # Then
    assert _messages(response) == [
        "Alias 'production' of model 'churn' has no previous version to roll back to."
    ]
    assert RegistryEvent.objects.filter(type="alias_moved").count() == 1


def test_admin_alias_actions__staff_without_alias_permission__not_offered_nothing_moves():
    # Given: staff who may view the registry but not change aliases
    model = _churn_with_versions("1")
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="registry", codename__startswith="view_")
    )
    client = Client()
    client.force_login(user)
    # When
    page = client.get(VERSIONS)
    response = client.post(
        VERSIONS,
        {
            "action": "move_alias",
            "_selected_action": [str(model.versions.get().pk)],
            "alias": "production",
        },
    )
    # Then
    assert page.status_code == 200
    assert "move_alias" not in page.content.decode()
    assert response.status_code in {200, 302}
    assert Alias.objects.count() == 0


# --- events -------------------------------------------------------------------------------


def test_admin_registry_events__listed_read_only(admin_client):
    # Given
    services.model_create(name="m", task="regression", actor="a")
    event = RegistryEvent.objects.get()
    # When
    listing = admin_client.get(EVENTS)
    detail = admin_client.get(f"{EVENTS}{event.pk}/change/")
    add = admin_client.get(f"{EVENTS}add/")
    delete = admin_client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"})
    # Then
    assert (listing.status_code, detail.status_code) == (200, 200)
    assert (add.status_code, delete.status_code) == (403, 403)
    assert RegistryEvent.objects.count() == 1

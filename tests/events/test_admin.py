"""The admin shows events and nothing more: no add, change or delete, for anyone.

The screens are exercised on an admin site of this module's own (RegistryEvent under
ReadOnlyEventAdmin), so the test does not depend on how another app registers its admin.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.sites import AdminSite
from django.urls import path, reverse

from apps.events.admin import ReadOnlyEventAdmin
from apps.events.models import Event
from apps.registry.models import RegistryEvent
from config import urls as project_urls
from tests.events.factories import ml_model, registry_event

site = AdminSite(name="admin")
site.register(RegistryEvent, ReadOnlyEventAdmin)

urlpatterns = [path("admin/", site.urls)]
handler404 = project_urls.handler404

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture
def admin_client_of_superuser(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "secret-pass")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_event_admin__superuser__may_view_but_not_add_change_or_delete(rf, django_user_model):
    # Given
    request = rf.get("/admin/")
    request.user = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    event = registry_event(model=ml_model())
    model_admin = site._registry[RegistryEvent]
    # Then
    assert model_admin.has_view_permission(request, event) is True
    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request, event) is False
    assert model_admin.has_delete_permission(request, event) is False
    assert "delete_selected" not in model_admin.get_actions(request)
    assert set(model_admin.get_readonly_fields(request, event)) == {
        field.name for field in RegistryEvent._meta.fields
    }


@pytest.mark.django_db
def test_event_admin__changelist_and_detail__render_without_edit_controls(
    admin_client_of_superuser,
):
    # Given
    event = registry_event(model=ml_model(), actor="alice")
    # When
    listing = admin_client_of_superuser.get(reverse("admin:registry_registryevent_changelist"))
    detail = admin_client_of_superuser.get(
        reverse("admin:registry_registryevent_change", args=[event.pk])
    )
    # Then
    assert listing.status_code == 200
    assert str(event.pk) in listing.content.decode()
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "alice" in page
    assert 'name="_save"' not in page
    assert "deletelink" not in page


@pytest.mark.django_db
def test_event_admin__post_to_change_or_delete__forbidden_and_row_unchanged(
    admin_client_of_superuser,
):
    # Given
    event = registry_event(model=ml_model(), actor="alice")
    # When
    changed = admin_client_of_superuser.post(
        reverse("admin:registry_registryevent_change", args=[event.pk]), {"actor": "mallory"}
    )
    deleted = admin_client_of_superuser.post(
        reverse("admin:registry_registryevent_delete", args=[event.pk]), {"post": "yes"}
    )
    added = admin_client_of_superuser.get(reverse("admin:registry_registryevent_add"))
    # Then
    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert added.status_code == 403
    assert RegistryEvent.objects.get(pk=event.pk).actor == "alice"


def test_project_admin__every_registered_event_admin__derives_from_read_only_base():
    # Given: whatever admins the apps register on the project's site
    event_admins = {
        model._meta.label: type(model_admin)
        for model, model_admin in admin.site._registry.items()
        if issubclass(model, Event)
    }
    # Then
    assert [
        label
        for label, admin_class in event_admins.items()
        if not issubclass(admin_class, ReadOnlyEventAdmin)
    ] == []

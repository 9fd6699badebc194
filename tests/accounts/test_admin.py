"""Admin screens of API keys: a key created there is shown once and stored as a digest only."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import ApiKey, Application

KEY_IN_MESSAGE = re.compile(r"The new API key, shown only now: (kz_\S+)$")


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "secret-pass")
    client.force_login(user)
    return client


def _status_with(raw: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get("/api/v1/events").status_code


@pytest.mark.django_db
def test_admin_add_key__valid_form__key_shown_once_and_only_its_digest_stored(staff):
    # Given
    application = Application.objects.create(name="shop")
    # When
    response = staff.post(
        reverse("admin:accounts_apikey_add"),
        {
            "application": application.pk,
            "name": "checkout",
            "scopes": "read,ingest",
            "expires_at_0": "",
            "expires_at_1": "",
        },
        follow=True,
    )
    # Then
    assert response.status_code == 200
    shown = [
        match[1]
        for message in get_messages(response.wsgi_request)
        if (match := KEY_IN_MESSAGE.search(str(message)))
    ]
    page = response.content.decode()
    assert len(shown) == 1
    raw = shown[0]
    assert raw in page
    key = ApiKey.objects.get()
    assert (key.application, key.name, key.scopes) == (application, "checkout", ["ingest", "read"])
    assert key.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert key.created_by == "user:root"
    assert raw.split("_", 2)[2] not in str(ApiKey.objects.values().get())
    assert _status_with(raw) == 200
    # And the key's page never shows it again
    again = staff.get(reverse("admin:accounts_apikey_change", args=[key.pk])).content.decode()
    assert raw not in again
    assert raw.split("_", 2)[2] not in again


@pytest.mark.django_db
def test_admin_add_key__unknown_scope__form_error_and_nothing_stored(staff):
    # Given
    application = Application.objects.create(name="shop")
    # When
    response = staff.post(
        reverse("admin:accounts_apikey_add"),
        {"application": application.pk, "name": "checkout", "scopes": "read,admin"},
    )
    # Then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.keys() == {"scopes"}
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
def test_admin_revoke_action__selected_keys__revoked_and_refused(staff):
    # Given
    first, first_raw = services.api_key_create(application="shop", name="a", scopes=["read"])
    second, second_raw = services.api_key_create(application="shop", name="b", scopes=["read"])
    kept, kept_raw = services.api_key_create(application="shop", name="c", scopes=["read"])
    # When
    response = staff.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    # Then
    assert response.status_code == 200
    revoked = dict(ApiKey.objects.values_list("name", "revoked_at"))
    assert revoked["a"] is not None
    assert revoked["b"] is not None
    assert revoked["c"] is None
    assert [_status_with(raw) for raw in (first_raw, second_raw, kept_raw)] == [401, 401, 200]


@pytest.mark.django_db
def test_admin_keys__no_delete__neither_action_nor_view(staff):
    # Given
    key, _ = services.api_key_create(application="shop", name="a", scopes=["read"])
    # When
    listing = staff.get(reverse("admin:accounts_apikey_changelist"))
    deleted = staff.post(reverse("admin:accounts_apikey_delete", args=[key.pk]), {"post": "yes"})
    # Then
    assert listing.status_code == 200
    assert "delete_selected" not in listing.content.decode()
    assert deleted.status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).count() == 1

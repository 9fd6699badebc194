"""The admin lists and shows predictions and feedback, and never adds, changes or deletes."""

from __future__ import annotations

import pytest

from apps.ingest.models import Feedback, Prediction
from tests.ingest.factories import feedback, post, prediction

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "secret-pass")
    client.force_login(user)
    return client


@pytest.mark.parametrize(("model", "kind"), [(Prediction, "prediction"), (Feedback, "feedback")])
def test_admin__stored_event__listed_and_shown_read_only(staff, ingester, churn, model, kind):
    # Given a stored event
    body = prediction() if kind == "prediction" else feedback()
    post(ingester, f"/api/v1/{'predictions' if kind == 'prediction' else 'feedback'}", body)
    stored = model.objects.get()
    # When
    listing = staff.get(f"/admin/ingest/{kind}/")
    page = staff.get(f"/admin/ingest/{kind}/{stored.pk}/change/")
    add = staff.get(f"/admin/ingest/{kind}/add/")
    delete = staff.post(f"/admin/ingest/{kind}/{stored.pk}/delete/", {"post": "yes"})
    # Then
    assert listing.status_code == 200
    assert body["id"] in listing.content.decode()
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert add.status_code == 403
    assert delete.status_code == 403
    assert model.objects.count() == 1

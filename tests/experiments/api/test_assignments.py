"""POST /api/v1/assignments: the answer, the exposure, and every bad request."""

from __future__ import annotations

import pytest

from apps.experiments.models import Exposure

URL = "/api/v1/assignments"
KEY = "churn-v3-vs-v2"


def _post(client, body):
    return client.post(URL, body, format="json")


@pytest.mark.django_db
def test_assignments__running__200_in_experiment_and_exposure(ingester, make_experiment):
    # Given
    make_experiment(start=True)
    # When
    response = _post(ingester, {"experiment": KEY, "subject": "user-1", "attributes": {"a": 1}})
    # Then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"experiment", "subject", "variant", "model_version", "in_experiment"}
    assert body["in_experiment"] is True
    assert body["variant"] in {"control", "treatment"}
    exposure = Exposure.objects.get()
    assert (exposure.variant, exposure.attributes) == (body["variant"], {"a": 1})


@pytest.mark.django_db
def test_assignments__draft__control_not_in_experiment(ingester, make_experiment):
    make_experiment()
    response = _post(ingester, {"experiment": KEY, "subject": "user-1"})
    assert response.status_code == 200
    assert response.json() == {
        "experiment": KEY,
        "subject": "user-1",
        "variant": "control",
        "model_version": "2",
        "in_experiment": False,
    }


@pytest.mark.django_db
def test_assignments__no_key__401(anonymous, make_experiment):
    make_experiment(start=True)
    response = _post(anonymous, {"experiment": KEY, "subject": "user-1"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="kaizen"'
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
def test_assignments__unknown_key__401(anonymous, make_experiment):
    make_experiment(start=True)
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer kz_000000000000_nope")
    response = _post(anonymous, {"experiment": KEY, "subject": "user-1"})
    assert response.status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [("read",), ("manage",), ("read", "manage")])
def test_assignments__without_ingest_scope__403(make_client, make_experiment, scopes):
    make_experiment(start=True)
    response = _post(make_client(*scopes), {"experiment": KEY, "subject": "user-1"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
def test_assignments__unknown_experiment__404(ingester, churn):
    response = _post(ingester, {"experiment": "nope", "subject": "user-1"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "No experiment with key 'nope'.",
        "details": [],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"experiment": KEY}, "subject"),
        ({"experiment": KEY, "subject": ""}, "subject"),
        ({"experiment": KEY, "subject": 42}, "subject"),
        ({"experiment": KEY, "subject": "x" * 1025}, "subject"),
        ({"experiment": KEY, "subject": "a\x00b"}, "subject"),
        ({"subject": "u"}, "experiment"),
        ({"experiment": KEY, "subject": "u", "attributes": ["DE"]}, "attributes"),
        ({"experiment": KEY, "subject": "u", "attributes": "DE"}, "attributes"),
        (
            {"experiment": KEY, "subject": "u", "attributes": {"geo": {"country": "DE"}}},
            "attributes.geo",
        ),
        ({"experiment": KEY, "subject": "u", "attributes": {"tags": ["a"]}}, "attributes.tags"),
        ({"experiment": KEY, "subject": "u", "attributes": {"x": None}}, "attributes.x"),
        (
            {"experiment": KEY, "subject": "u", "attributes": {f"k{i}": i for i in range(51)}},
            "attributes",
        ),
        ({"experiment": KEY, "subject": "u", "extra": 1}, "extra"),
    ],
)
def test_assignments__bad_body__400_with_field_and_no_exposure(
    ingester, make_experiment, body, field
):
    make_experiment(start=True)
    response = _post(ingester, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"experiment": "x", "subject": NaN}', b"[" * 5000, b"\xff\xfe"]
)
def test_assignments__invalid_json__400(ingester, make_experiment, raw):
    make_experiment(start=True)
    response = ingester.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"3", b"null"])
def test_assignments__body_not_an_object__400(ingester, make_experiment, raw):
    make_experiment(start=True)
    response = ingester.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.django_db
def test_assignments__form_encoded__415(ingester, make_experiment):
    make_experiment(start=True)
    response = ingester.post(URL, {"experiment": KEY, "subject": "u"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.django_db
def test_assignments__get__405(ingester):
    response = ingester.get(URL)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"

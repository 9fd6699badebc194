"""Every error answers API.md's body `{"error": {"code", "message", "details"}}`.

Django's own errors (unknown URL, 405 of a plain view, oversized body, a crash) and DRF's
(parse, media type, validation, auth) alike. Body handling is exercised on a small view of
this module that needs a JSON object, mounted beside the project's routes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.test import override_settings
from django.urls import path
from django.views.decorators.http import require_POST
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.accounts.models import ApiKey
from apps.core.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    ValidationFailed,
)
from apps.core.pagination import encode_cursor, list_kind, paginate
from apps.core.query import PAGE, Text, accepts
from apps.ingest.models import Prediction
from apps.registry.models import MLModel
from config import urls as project_urls

ECHO = "/api/v1/tests/echo"


class EchoInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=20)
    score = serializers.FloatField()
    tags = serializers.ListField(child=serializers.CharField(), required=False)


class EchoView(APIView):
    """POST a {"name", "score"} object; answers it back."""

    scopes = {"POST": "ingest", "GET": "read"}

    def post(self, request: Request) -> Response:
        given = EchoInput(data=request.data)
        given.is_valid(raise_exception=True)
        return Response(given.validated_data, status=201)

    @accepts(Text("raise"), Text("crash"))
    def get(self, request: Request) -> Response:
        raised = RAISED.get(request.query_params.get("raise", ""))
        if raised is not None:
            raise raised
        if request.query_params.get("crash"):
            raise RuntimeError("boom")
        raise NotFound("No such echo.")


RAISED: dict[str, Exception] = {
    "conflict": Conflict("Already there.", details=[{"field": "name", "message": "Taken."}]),
    "unavailable": Unavailable("Busy."),
    "unavailable-30": Unavailable("Busy.", retry_after=30),
    "too-large": PayloadTooLarge("Too many events."),
    "invalid": ValidationFailed("Bad.", details=[{"index": 2, "field": "a.b", "message": "No."}]),
    "django-invalid": DjangoValidationError({"name": ["Too short."]}),
    "django-invalid-plain": DjangoValidationError("Plainly wrong."),
    "django-404": Http404("gone"),
    "django-403": DjangoPermissionDenied(),
}


class KeyListView(APIView):
    """A paginated list (API keys by creation), for the cursor's hostile-input cases."""

    scopes = {"GET": "read"}

    @accepts(*PAGE)
    def get(self, request: Request) -> Response:
        return Response(
            paginate(
                request,
                ApiKey.objects.all(),
                keys=("created_at", "id"),
                serialize=lambda key: {"id": key.pk},
            )
        )


@require_POST
def plain_post_only(request: HttpRequest) -> HttpResponse:
    """A plain Django view: its 405 and its bare 404 carry no body of their own."""
    if request.GET.get("missing"):
        return HttpResponseNotFound()
    return HttpResponse(status=204)


urlpatterns = [
    path("tests/plain", plain_post_only),
    path("api/v1/tests/echo", EchoView.as_view()),
    path("api/v1/tests/keys", KeyListView.as_view()),
    *project_urls.urlpatterns,
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]

KEYS = list_kind(ApiKey, ("created_at", "id"))


def _error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
def ingester_client(make_client):
    return make_client("ingest")


def _post(client: APIClient, body: bytes, content_type: str | None = "application/json") -> Any:
    """POST raw bytes; content_type None sends no Content-Type header at all."""
    # The stubs type `data` and `content_type` as str; Django sends bytes as they are, and
    # DRF sets no header for a None content type.
    data: Any = body
    kind: Any = content_type
    return client.generic("POST", ECHO, data, content_type=kind, CONTENT_TYPE=content_type or "")


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"name": "a", "score": NaN}', "application/json", 400, "invalid_json"),
        (b'{"name": "a", "score": Infinity}', "application/json", 400, "invalid_json"),
        (b'{"name": "a", "score": -Infinity}', "application/json", 400, "invalid_json"),
        (b'{"name": "a", "score": 1e999}', "application/json", 400, "validation_error"),
        (b'{"name": "a", "score": 1,}', "application/json", 400, "invalid_json"),
        (b'{"name": "a"', "application/json", 400, "invalid_json"),
        (b'{"name": "\\ud800", "score": 1}', "application/json", 400, "invalid_json"),
        (b'{"name": "\xff", "score": 1}', "application/json", 400, "invalid_json"),
        (b'\xef\xbb\xbf{"name": "a", "score": 1}', "application/json", 400, "invalid_json"),
        (b"   ", "application/json", 400, "invalid_json"),
        (DEEP, "application/json", 400, "invalid_json"),
        (b'{"name": "a", "score": 1}', "text/plain", 415, "unsupported_media_type"),
        (b"name=a&score=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"name": "a", "score": 1}', "application/xml", 415, "unsupported_media_type"),
        (b'{"name": "a", "score": 1}', None, 415, "unsupported_media_type"),
        (b"[1, 2]", "application/json", 400, "validation_error"),
        (b'"text"', "application/json", 400, "validation_error"),
        (b"null", "application/json", 400, "validation_error"),
        (b"42", "application/json", 400, "validation_error"),
        (b"", "application/json", 400, "validation_error"),
        (b'{"name": "a\\u0000", "score": 1}', "application/json", 400, "validation_error"),
        (b'{"name": "a", "score": "high"}', "application/json", 400, "validation_error"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "overflow-to-infinity",
        "trailing-comma",
        "truncated",
        "lone-surrogate",
        "invalid-utf8",
        "bom",
        "only-whitespace",
        "nesting-5000",
        "text-plain",
        "form",
        "xml",
        "no-content-type",
        "array-not-object",
        "string-not-object",
        "null-not-object",
        "number-not-object",
        "empty-body",
        "nul-character",
        "wrong-type",
    ],
)
def test_post__hostile_or_malformed_body__error_body_never_500(
    ingester_client, body, content_type, status, code
):
    # When
    response = _post(ingester_client, body, content_type)
    # Then
    assert response.status_code == status
    assert _error(response)["code"] == code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "a", "score": 1e999}', "score"),
        (b'{"name": "a", "score": -1e400}', "score"),
        (b'{"name": "a", "tags": [1, 2, 1' + b"0" * 400 + b"]}", "tags.2"),
        (b'{"name": "a", "nested": {"deep": [-' + b"9" * 400 + b"]}}", "nested.deep.0"),
    ],
)
def test_post__number_beyond_a_float__400_naming_the_field(ingester_client, body, field):
    # When a number no float can hold is sent (orjson refuses it while parsing)
    response = _post(ingester_client, body)
    # Then the answer names where it is, as for any out-of-range number
    assert response.status_code == 400
    assert _error(response) == {
        "code": "validation_error",
        "message": "A number is out of range.",
        "details": [
            {
                "field": field,
                "message": "Out of range: beyond what any number here may be "
                "(-9223372036854775808 to 9223372036854775807 at most; API.md, Limits).",
            }
        ],
    }


def test_post__valid_object__201(ingester_client):
    # When
    response = _post(ingester_client, b'{"name": "a", "score": 0.5}')
    # Then: the baseline the hostile cases differ from
    assert response.status_code == 201
    assert response.json() == {"name": "a", "score": 0.5}


def test_post__json_array_where_an_object_is_needed__details_name_the_problem(ingester_client):
    # When
    response = _post(ingester_client, b"[1, 2]")
    # Then
    assert _error(response) == {
        "code": "validation_error",
        "message": "The request is invalid.",
        "details": [{"message": "Invalid data. Expected a dictionary, but got list."}],
    }


def test_post__invalid_fields__details_list_dotted_fields(ingester_client):
    # When
    response = _post(ingester_client, b'{"name": "' + b"n" * 21 + b'", "tags": ["a", 5, {}]}')
    # Then
    error = _error(response)
    assert error["code"] == "validation_error"
    assert sorted(detail["field"] for detail in error["details"]) == ["name", "score", "tags.2"]
    assert all(set(detail) == {"field", "message"} for detail in error["details"])


def test_post__body_without_content_type__415_not_read_as_empty_object(ingester_client):
    # When: DRF alone would parse no body at all and hand the view {}
    response = _post(ingester_client, b'{"name": "a", "score": 1}', None)
    # Then
    assert response.status_code == 415
    assert _error(response) == {
        "code": "unsupported_media_type",
        "message": "Send the body as Content-Type: application/json.",
        "details": [],
    }


def test_post__nul_character__details_point_at_the_field(ingester_client):
    # When
    response = _post(ingester_client, b'{"name": "ok", "score": 1, "tags": ["x", "y\\u0000"]}')
    # Then
    assert _error(response) == {
        "code": "validation_error",
        "message": "Strings may not contain U+0000.",
        "details": [{"field": "tags.1", "message": "Contains U+0000."}],
    }


def test_post__content_length_over_limit__413_before_the_body_is_read(ingester_client):
    # When: the header alone decides (5 MiB by default)
    response = ingester_client.generic(
        "POST",
        ECHO,
        '{"name": "a", "score": 1}',
        content_type="application/json",
        CONTENT_LENGTH=str(5 * 1024 * 1024 + 1),
    )
    # Then
    assert response.status_code == 413
    assert _error(response)["code"] == "payload_too_large"


@override_settings(KAIZEN_MAX_BODY_BYTES=32)
def test_post__body_over_configured_limit__413_and_at_limit__accepted(ingester_client):
    # Given
    at_limit = b'{"name": "abcdef", "score": 1.0}'
    assert len(at_limit) == 32
    # When
    accepted = _post(ingester_client, at_limit)
    refused = _post(ingester_client, at_limit + b" ")
    # Then
    assert accepted.status_code == 201
    assert refused.status_code == 413
    assert _error(refused) == {
        "code": "payload_too_large",
        "message": "The request body is over 32 bytes; send fewer events per request.",
        "details": [],
    }


LENGTH_REQUIRED = {
    "code": "length_required",
    "message": "Send the request body with a Content-Length header; chunked transfer "
    "encoding is not accepted.",
    "details": [],
}


@pytest.mark.parametrize("url", [ECHO, "/api/v1/predictions", "/api/v1/assignments"])
@pytest.mark.parametrize("coding", ["chunked", "Chunked", "gzip, chunked"])
def test_post__chunked_transfer_encoding__411_and_nothing_read_as_empty(
    ingester_client, url, coding
):
    # When: sent as a WSGI server hands a chunked body over, without Content-Length (Django
    # would read it as b"", and the view answer 400 or accept an empty body)
    response = ingester_client.generic(
        "POST", url, b"", content_type="application/json", HTTP_TRANSFER_ENCODING=coding
    )
    # Then
    assert response.status_code == 411
    assert _error(response) == LENGTH_REQUIRED
    assert Prediction.objects.count() == 0


def test_post__identity_transfer_encoding__body_read_as_usual(ingester_client):
    # When
    response = ingester_client.generic(
        "POST",
        ECHO,
        b'{"name": "a", "score": 1}',
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="identity",
    )
    # Then
    assert response.status_code == 201
    assert response.json() == {"name": "a", "score": 1.0}


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_post__content_length_not_a_number__400(ingester_client, length):
    # When
    response = ingester_client.generic(
        "POST", ECHO, "{}", content_type="application/json", CONTENT_LENGTH=length
    )
    # Then
    assert response.status_code == 400
    assert _error(response)["code"] == "bad_request"


@pytest.mark.parametrize(
    ("method", "url", "status", "code"),
    [
        ("get", "/api/v1/no-such-endpoint", 404, "not_found"),
        ("post", "/api/v1/no-such-endpoint", 404, "not_found"),
        ("get", "/nowhere", 404, "not_found"),
        ("get", "/api/v1/events/", 404, "not_found"),
        ("post", "/healthz", 405, "method_not_allowed"),
        ("delete", "/readyz", 405, "method_not_allowed"),
        ("put", "/metrics", 405, "method_not_allowed"),
    ],
)
def test_django_routing_errors__any_client__error_body(anonymous, method, url, status, code):
    # When
    response = getattr(anonymous, method)(url)
    # Then
    assert response.status_code == status
    assert _error(response)["code"] == code


def test_plain_view_405__error_body_keeps_allow_header(anonymous):
    # When
    response = anonymous.post("/healthz")
    # Then
    assert response.status_code == 405
    assert "GET" in response["Allow"]
    assert _error(response)["code"] == "method_not_allowed"


def test_plain_django_view__bodiless_405__gets_error_body_and_keeps_allow(anonymous):
    # When
    response = anonymous.get("/tests/plain")
    # Then
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert _error(response) == {
        "code": "method_not_allowed",
        "message": "Method Not Allowed; this resource allows POST.",
        "details": [],
    }


def test_plain_django_view__bodiless_404__gets_error_body(anonymous):
    # When
    response = anonymous.post("/tests/plain?missing=1")
    # Then
    assert response.status_code == 404
    assert _error(response) == {"code": "not_found", "message": "Not Found", "details": []}


def test_plain_django_view__success_without_body__left_alone(anonymous):
    # When
    response = anonymous.post("/tests/plain")
    # Then
    assert response.status_code == 204
    assert response.content == b""


def test_drf_view_405__error_body_and_allow_header(make_client):
    # When
    response = make_client("read").delete("/api/v1/events")
    # Then
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert _error(response) == {
        "code": "method_not_allowed",
        "message": 'Method "DELETE" not allowed.',
        "details": [],
    }


def test_application_error_in_a_view__its_status_and_code(make_client):
    # When
    response = make_client("read").get(ECHO)
    # Then
    assert response.status_code == 404
    assert _error(response) == {"code": "not_found", "message": "No such echo.", "details": []}


@pytest.mark.parametrize(
    ("raised", "status", "error", "retry_after"),
    [
        (
            "conflict",
            409,
            {
                "code": "conflict",
                "message": "Already there.",
                "details": [{"field": "name", "message": "Taken."}],
            },
            None,
        ),
        ("unavailable", 503, {"code": "unavailable", "message": "Busy.", "details": []}, "5"),
        ("unavailable-30", 503, {"code": "unavailable", "message": "Busy.", "details": []}, "30"),
        (
            "too-large",
            413,
            {"code": "payload_too_large", "message": "Too many events.", "details": []},
            None,
        ),
        (
            "invalid",
            400,
            {
                "code": "validation_error",
                "message": "Bad.",
                "details": [{"index": 2, "field": "a.b", "message": "No."}],
            },
            None,
        ),
        (
            "django-invalid",
            400,
            {
                "code": "validation_error",
                "message": "The request is invalid.",
                "details": [{"field": "name", "message": "Too short."}],
            },
            None,
        ),
        (
            "django-invalid-plain",
            400,
            {
                "code": "validation_error",
                "message": "The request is invalid.",
                "details": [{"message": "Plainly wrong."}],
            },
            None,
        ),
        ("django-404", 404, {"code": "not_found", "message": "Not found.", "details": []}, None),
        (
            "django-403",
            403,
            {
                "code": "forbidden",
                "message": "You do not have permission to perform this action.",
                "details": [],
            },
            None,
        ),
    ],
)
def test_errors_raised_in_a_view__mapped_to_status_and_body(
    make_client, raised, status, error, retry_after
):
    # When
    response = make_client("read").get(ECHO, {"raise": raised})
    # Then
    assert response.status_code == status
    assert _error(response) == error
    assert response.get("Retry-After") == retry_after


def test_unexpected_exception__500_error_body(make_client):
    # Given
    client = make_client("read")
    client.raise_request_exception = False
    # When
    response = client.get(ECHO, {"crash": "1"})
    # Then
    assert response.status_code == 500
    assert _error(response) == {
        "code": "internal_error",
        "message": "Internal error; it has been logged.",
        "details": [],
    }


@pytest.mark.parametrize(
    ("authorization", "scopes", "status", "code"),
    [
        (None, None, 401, "unauthenticated"),
        ("Bearer nope", None, 401, "unauthenticated"),
        (None, ("read",), 403, "forbidden"),
    ],
)
def test_auth_errors__error_body(make_client, authorization, scopes, status, code):
    # Given
    client = make_client(*scopes) if scopes else APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    # When
    response = _post(client, b'{"name": "a", "score": 1}')
    # Then
    assert response.status_code == status
    assert _error(response)["code"] == code


def test_paginate__pages_of_two__every_row_once_in_order(make_client):
    # Given: five keys (the reader's own among them)
    client = make_client("read")
    for _ in range(4):
        make_client("ingest")
    expected = list(ApiKey.objects.order_by("created_at", "id").values_list("id", flat=True))
    # When
    seen: list[int] = []
    cursor = None
    for _ in range(3):
        page = client.get(
            "/api/v1/tests/keys", {"limit": 2} | ({"cursor": cursor} if cursor else {})
        ).json()
        seen.extend(row["id"] for row in page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then
    assert seen == expected
    assert cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        encode_cursor(KEYS, ["2026-01-01T00:00:00+00:00"]),
        encode_cursor(KEYS, ["2026-01-01T00:00:00+00:00", 1, 2]),
        encode_cursor(KEYS, ["not a time", 1]),
        encode_cursor(KEYS, ["2026-01-01T00:00:00", 1]),
        encode_cursor(KEYS, ["2026-13-45T00:00:00+00:00", 1]),
        encode_cursor(KEYS, [{"a": 1}, 1]),
        encode_cursor(KEYS, [["x"], 1]),
        encode_cursor(KEYS, [None, 1]),
        encode_cursor(KEYS, ["2026-01-01T00:00:00+00:00", "abc"]),
        encode_cursor(KEYS, ["2026-01-01T00:00:00+00:00", None]),
        encode_cursor(KEYS, {"created_at": 1, "id": 2}),  # type: ignore[arg-type]  # forged: not a list
        encode_cursor(KEYS, "text"),
    ],
)
def test_paginate__forged_cursor__400_validation_error(make_client, cursor):
    # When
    response = make_client("read").get("/api/v1/tests/keys", {"cursor": cursor})
    # Then
    assert response.status_code == 400
    assert _error(response) == {
        "code": "validation_error",
        "message": "The cursor is not one this server gave out.",
        "details": [{"field": "cursor", "message": "Pass next_cursor from a previous page."}],
    }


def _unsigned(values: list[Any]) -> str:
    """A cursor's payload without its signature: what a client could forge by hand."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


_POSITION = ["2000-01-01T00:00:00+00:00", 1]
_SIGNED = encode_cursor(KEYS, _POSITION)


@pytest.mark.parametrize(
    "cursor",
    [
        _unsigned(_POSITION),
        _SIGNED[:-1],
        _SIGNED[: len(_SIGNED) // 2],
        _SIGNED.rsplit(".", 1)[0] + ".",
        _SIGNED + "A",
        _unsigned(["2100-01-01T00:00:00+00:00", 1]) + "." + _SIGNED.rsplit(".", 1)[1],
        encode_cursor(list_kind(ApiKey, ("id",)), [1]),
        encode_cursor(list_kind(MLModel, ("created_at", "id")), _POSITION),
        encode_cursor("events.feed", _POSITION),
    ],
    ids=[
        "unsigned",
        "signature truncated",
        "cut in half",
        "signature removed",
        "signature extended",
        "payload edited",
        "another list of the same rows",
        "another model's list",
        "the event feed's",
    ],
)
def test_paginate__cursor_not_signed_for_this_list__400_and_no_query(
    make_client, django_assert_num_queries, cursor
):
    # Given
    client = make_client("read")
    # When: only the key's lookup reaches the database
    with django_assert_num_queries(1):
        response = client.get("/api/v1/tests/keys", {"cursor": cursor})
    # Then
    assert response.status_code == 400
    assert _error(response) == {
        "code": "validation_error",
        "message": "The cursor is not one this server gave out.",
        "details": [{"field": "cursor", "message": "Pass next_cursor from a previous page."}],
    }


def test_paginate__next_cursor__signed_for_its_list_and_accepted(make_client):
    # Given: two keys, pages of one
    client = make_client("read")
    make_client("ingest")
    first = client.get("/api/v1/tests/keys", {"limit": 1}).json()
    # When
    second = client.get("/api/v1/tests/keys", {"limit": 1, "cursor": first["next_cursor"]})
    # Then: the cursor is URL-safe as it is, and continues the list
    assert first["next_cursor"].replace("-", "").replace("_", "").replace(".", "").isalnum()
    assert second.status_code == 200
    ids = [row["id"] for row in first["results"] + second.json()["results"]]
    assert ids == list(ApiKey.objects.order_by("created_at", "id").values_list("id", flat=True))


@pytest.mark.parametrize("last_id", [2**63, -(2**63) - 1, 10**30])
def test_paginate__cursor_id_beyond_bigint__never_500(make_client, last_id):
    # When
    response = make_client("read").get(
        "/api/v1/tests/keys",
        {"cursor": encode_cursor(KEYS, ["2000-01-01T00:00:00+00:00", last_id])},
    )
    # Then: the key (created after 2000) follows the position whatever the id
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [ApiKey.objects.get().pk]

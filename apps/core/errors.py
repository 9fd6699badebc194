"""Domain errors and the one place that turns any error into API.md's error body.

Services raise `ApplicationError` subclasses and know nothing of HTTP; DRF's exception
handler and Django's handler400/403/404/500 below answer every failure as
`{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)

Detail = dict[str, Any]


class ApplicationError(Exception):
    """A failure a client can act on; `code` and `status` follow API.md."""

    code = "bad_request"
    status = 400
    # Seconds a client should wait before retrying (the Retry-After header), if any.
    retry_after: int | None = None

    def __init__(
        self, message: str, *, details: Sequence[Detail] = (), retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        if retry_after is not None:
            self.retry_after = retry_after


class ValidationFailed(ApplicationError):
    code = "validation_error"
    status = 400


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


class PayloadTooLarge(ApplicationError):
    code = "payload_too_large"
    status = 413


class Unavailable(ApplicationError):
    code = "unavailable"
    status = 503
    retry_after = 5  # API.md: 503 with Retry-After


def error_body(code: str, message: str, details: Sequence[Detail] = ()) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": list(details)}}


def strict_json_response(body: Any, *, status: int = 200) -> JsonResponse:
    """A JSON answer that refuses NaN and Infinity (ValueError) instead of writing them:
    they are not JSON, and a client's parser would fail on the whole answer."""
    return JsonResponse(body, status=status, json_dumps_params={"allow_nan": False})


def json_error(
    status: int, code: str, message: str, details: Sequence[Detail] = (), **headers: str
) -> JsonResponse:
    response = strict_json_response(error_body(code, message, details), status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def flatten_validation(detail: Any, *, field: str = "", index: int | None = None) -> list[Detail]:
    """Turn DRF's nested error dict/list into API.md's flat details (dotted `field`)."""
    if isinstance(detail, Mapping):
        found: list[Detail] = []
        for key, value in detail.items():
            name = str(key)
            if name in {"non_field_errors", "__all__"}:
                name = ""
            found.extend(
                flatten_validation(
                    value, field=f"{field}.{name}" if field and name else field or name, index=index
                )
            )
        return found
    if isinstance(detail, list) and detail and all(isinstance(item, str) for item in detail):
        return [_detail(str(message), field, index) for message in detail]
    if isinstance(detail, list):
        found = []
        for position, value in enumerate(detail):
            if value:
                found.extend(
                    flatten_validation(
                        value, field=f"{field}.{position}" if field else str(position), index=index
                    )
                )
        return found
    return [_detail(str(detail), field, index)]


def _detail(message: str, field: str, index: int | None) -> Detail:
    item: Detail = {}
    if index is not None:
        item["index"] = index
    if field:
        item["field"] = field
    item["message"] = message
    return item


_DRF_CODES: list[tuple[type[Exception], int, str]] = [
    (drf.ParseError, 400, "invalid_json"),
    (drf.UnsupportedMediaType, 415, "unsupported_media_type"),
    (drf.NotAuthenticated, 401, "unauthenticated"),
    (drf.AuthenticationFailed, 401, "unauthenticated"),
    (drf.PermissionDenied, 403, "forbidden"),
    (drf.NotFound, 404, "not_found"),
    (drf.MethodNotAllowed, 405, "method_not_allowed"),
    (drf.NotAcceptable, 406, "not_acceptable"),
]


def _special_response(exc: Exception) -> Response | None:
    if isinstance(exc, ApplicationError):
        headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status, headers=headers
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is too large."), status=413
        )
    if isinstance(exc, drf.ValidationError | DjangoValidationError):
        # A model validator's error (full_clean in a service) is the client's, not a 500.
        raw = exc.detail if isinstance(exc, drf.ValidationError) else _django_messages(exc)
        details = flatten_validation(raw)
        return Response(
            error_body("validation_error", "The request is invalid.", details), status=400
        )
    if isinstance(exc, drf.Throttled):
        wait = max(1, int(getattr(exc, "wait", None) or 1))
        return Response(
            error_body("throttled", f"Too many requests; retry in {wait} s."),
            status=429,
            headers={"Retry-After": str(wait)},
        )
    return None


def _django_messages(exc: DjangoValidationError) -> Any:
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return exc.messages


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error as API.md's body."""
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    special = _special_response(exc)
    if special is not None:
        return special
    for kind, status, code in _DRF_CODES:
        if isinstance(exc, kind):
            headers = {"WWW-Authenticate": 'Bearer realm="kaizen"'} if status == 401 else {}
            message = str(getattr(exc, "detail", exc))
            return Response(error_body(code, message), status=status, headers=headers)
    if isinstance(exc, drf.APIException):
        return Response(error_body(str(exc.default_code), str(exc.detail)), status=exc.status_code)
    return None


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, "payload_too_large", "The request body is too large.")
    return json_error(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return json_error(403, "forbidden", "Permission denied.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return json_error(404, "not_found", f"No such resource: {request.path}")


def server_error(request: HttpRequest) -> HttpResponse:
    return json_error(500, "internal_error", "Internal error; it has been logged.")


def describe_error(error: BaseException) -> str:
    """One line naming an internal error for logs and status pages: type and first line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:2000]

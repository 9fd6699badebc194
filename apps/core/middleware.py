"""Middleware of the API: request metrics by route, the body guard and bodiless errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core.errors import error_body, json_error
from apps.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

Handler = Callable[[HttpRequest], HttpResponse]


class RequestMetricsMiddleware:
    """Counts requests and times them by route pattern (never by raw path: bounded labels)."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = match.route if match is not None else "unmatched"
        method = request.method or "UNKNOWN"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
        return response


class BodySizeLimitMiddleware:
    """The request body's guard, and the error body of Django's own bodiless errors.

    - 411 for a body sent with Transfer-Encoding (chunked) instead of Content-Length: Django
      reads a WSGI body up to Content-Length only, so it would see an empty body and answer
      as if nothing was sent. Refused rather than read: PEP 3333 leaves decoding a chunked
      body to each WSGI server (gunicorn does, others do not), the 413 guard below needs
      the length before reading, and every HTTP client can send a JSON body with its
      length.
    - 413 for a body over KAIZEN_MAX_BODY_BYTES, before anything reads it. Django's own
      DATA_UPLOAD_MAX_MEMORY_SIZE answers 400; API.md asks for 413. (Django's WSGI request
      reads no more than Content-Length, so the header is the whole story.)
    - 415 for a body sent without a Content-Type: DRF would silently read it as `{}`.
    - An error response without a body (Django's 405 of `require_GET`, a bare 404…) gets
      API.md's error body, so every 4xx/5xx a client sees has one shape.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return with_error_body(self.get_response(request))

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponse | None:
        coding = request.META.get("HTTP_TRANSFER_ENCODING")
        if coding is not None and coding.lower() != "identity":
            return json_error(
                411,
                "length_required",
                "Send the request body with a Content-Length header; chunked transfer "
                "encoding is not accepted.",
            )
        limit: int = settings.KAIZEN_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return json_error(400, "bad_request", "Content-Length is not a number of bytes.")
        if length > limit:
            return json_error(
                413,
                "payload_too_large",
                f"The request body is over {limit} bytes; send fewer events per request.",
            )
        if length and request.method in BODY_METHODS and not request.META.get("CONTENT_TYPE"):
            return json_error(
                415, "unsupported_media_type", "Send the body as Content-Type: application/json."
            )
        return None


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "internal_error",
    503: "unavailable",
}


def with_error_body(response: HttpResponse) -> HttpResponse:
    """`response` itself, given API.md's error body when it is an error without one."""
    if response.status_code < 400 or response.streaming or response.content:
        return response
    status = response.status_code
    code = _CODES.get(status, "client_error" if status < 500 else "server_error")
    message = HTTPStatus(status).phrase if status in HTTPStatus else "Error"
    if status == 405 and response.has_header("Allow"):
        message = f"{message}; this resource allows {response['Allow']}."
    # Same object: headers such as Allow and Retry-After stay as they were.
    response.content = json.dumps(error_body(code, message)).encode()
    response["Content-Type"] = "application/json"
    return response

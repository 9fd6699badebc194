"""OpenAPI pieces every app's endpoints share: the error body and the error responses.

`AutoSchema` (DRF's DEFAULT_SCHEMA_CLASS) documents on every operation the errors any view
can answer whatever it declares itself: 400 (a query parameter or body refused), 401 and 403
(key and scope), 404 (a path naming nothing), 413 and 415 (a body's size and type) and 429
(rate limit). A view's own description of a status is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(required=False, help_text="The event's index in a batch.")
    field = serializers.CharField(required=False, help_text="Dotted path, e.g. output.score.")
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="validation_error, not_found, conflict, ...")
    message = serializers.CharField()
    details = ErrorDetailSerializer(many=True)


class ErrorBodySerializer(serializers.Serializer[Any]):
    """API.md's body of every 4xx/5xx answer."""

    error = ErrorSerializer()


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_COMMON_ERRORS = {
    400: "A query parameter or the body is invalid (validation_error, invalid_json).",
    401: "No or unknown API key.",
    403: "The key lacks the scope.",
    404: "Nothing at this path.",
    413: "The body is over the size limit.",
    415: "The body is not application/json.",
    429: "Rate limited; see Retry-After.",
}


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        reference = self.resolve_serializer(ErrorBodySerializer, "response").ref
        for status in self._error_statuses():
            responses.setdefault(
                str(status),
                {
                    "content": {"application/json": {"schema": reference}},
                    "description": _COMMON_ERRORS[status],
                },
            )
        return operation

    def _error_statuses(self) -> list[int]:
        statuses = [400]
        if getattr(self.view, "scopes", None) is not None:
            statuses += [401, 403, 429]
        if "{" in self.path:
            statuses.append(404)
        if self.method in BODY_METHODS:
            statuses += [413, 415]
        return sorted(statuses)


def error_responses(descriptions: Mapping[int, str], *statuses: int) -> dict[int, OpenApiResponse]:
    """Schema responses of the given error statuses, each described in the app's words."""
    return {
        status: OpenApiResponse(ErrorBodySerializer, description=descriptions[status])
        for status in statuses
    }

"""OpenAPI pieces every app's endpoints share: the error body, page parameters, responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
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


PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
    OpenApiParameter("limit", int, description="1-1000, default 100"),
]


def error_responses(descriptions: Mapping[int, str], *statuses: int) -> dict[int, OpenApiResponse]:
    """Schema responses of the given error statuses, each described in the app's words."""
    return {
        status: OpenApiResponse(ErrorBodySerializer, description=descriptions[status])
        for status in statuses
    }

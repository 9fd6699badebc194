"""Ingestion endpoints (API.md "Ingestion"): POST predictions/feedback, GET one by id.

The POST views hand the raw body to the service, which parses and validates it in one
compiled pass; DRF's parser is never run on that path. Events are immutable: PUT, PATCH and
DELETE are not implemented, so DRF answers them 405.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils.http import parse_header_parameters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import actor_of
from apps.core.schema import error_responses
from apps.ingest import selectors, services
from apps.ingest.api import serializers

TAGS = ["ingestion"]
_ERROR_TEXT = {
    400: "Invalid JSON or events (invalid_json, validation_error); every bad index listed.",
    401: "No or unknown API key.",
    403: "The key lacks the scope.",
    404: "No event with this id.",
    409: "An id already stored with other content; nothing was stored.",
    413: "Body over 5 MiB or batch over 1000 events (both configurable).",
    415: "Content-Type is not application/json.",
    429: "Rate limited; see Retry-After.",
}


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return error_responses(_ERROR_TEXT, *statuses)


def _json_body(request: Request) -> bytes:
    """The raw body of a JSON request; 415 for any other content type or charset."""
    header = request.META.get("CONTENT_TYPE", "")
    media_type, parameters = parse_header_parameters(header)
    charset = parameters.get("charset", "utf-8").lower()
    if media_type.lower() != "application/json" or charset not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType(
            header,
            detail="Send the events as Content-Type: application/json (UTF-8).",
        )
    return bytes(request.body)


def _ingest(request: Request, service: Callable[..., services.IngestResult]) -> Response:
    result = service(body=_json_body(request), actor=actor_of(request))
    return Response({"accepted": result.accepted, "duplicates": result.duplicates}, status=201)


class PredictionCollectionView(APIView):
    scopes = {"POST": "ingest"}

    @extend_schema(
        tags=TAGS,
        operation_id="predictions_create",
        summary="Post one prediction or a batch {events: [...]} (idempotent by id)",
        request=serializers.PredictionPostSerializer,
        responses={
            201: serializers.IngestResultSerializer,
            **_errors(400, 401, 403, 409, 413, 415, 429),
        },
    )
    def post(self, request: Request) -> Response:
        return _ingest(request, services.predictions_ingest)


class PredictionDetailView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        tags=TAGS,
        operation_id="predictions_retrieve",
        summary="One stored prediction",
        responses={200: serializers.PredictionSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(serializers.prediction_as_dict(selectors.prediction_get(id=id)))


class FeedbackCollectionView(APIView):
    scopes = {"POST": "ingest"}

    @extend_schema(
        tags=TAGS,
        operation_id="feedback_create",
        summary="Post one feedback event or a batch {events: [...]} (idempotent by id)",
        request=serializers.FeedbackPostSerializer,
        responses={
            201: serializers.IngestResultSerializer,
            **_errors(400, 401, 403, 409, 413, 415, 429),
        },
    )
    def post(self, request: Request) -> Response:
        return _ingest(request, services.feedback_ingest)


class FeedbackDetailView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        tags=TAGS,
        operation_id="feedback_retrieve",
        summary="One stored feedback event",
        responses={200: serializers.FeedbackSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(serializers.feedback_as_dict(selectors.feedback_get(id=id)))

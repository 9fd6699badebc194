"""Experiment endpoints (API.md "Experiments"): thin views over the services and selectors.

POST /api/v1/assignments is the hot path: its POST is a plain view (no DRF request,
negotiation, parsing or rendering) that calls the same key authentication, scope rule and
rate limit as DRF's views do, and turns every error into API.md's body through the one
exception handler.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.exceptions import (
    NotAuthenticated,
    PermissionDenied,
    Throttled,
    UnsupportedMediaType,
)
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import authenticate_bearer
from apps.accounts.permissions import HasScope, actor_of, has_scope
from apps.accounts.throttling import rate_limit_wait
from apps.core.errors import ValidationFailed, exception_handler, strict_json_response
from apps.core.pagination import paginate
from apps.core.parsers import loads
from apps.core.query import PAGE, Choice, Text, accepts, check_request
from apps.core.schema import error_responses
from apps.experiments import selectors, services
from apps.experiments.api import serializers as shapes
from apps.experiments.models import Experiment, Status
from apps.experiments.validation import parse_assignment, parse_payload

TAGS = ["experiments"]
_ERROR_TEXT = {
    400: "Invalid body or parameters (validation_error, invalid_json).",
    401: "No or unknown API key.",
    403: "The key lacks the scope.",
    404: "No such experiment.",
    409: "Not allowed in the experiment's current status, or the key is taken.",
    415: "The body is not application/json.",
}


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return error_responses(_ERROR_TEXT, *statuses)


def _detail(experiment: Experiment) -> dict[str, Any]:
    body = services.experiment_state(experiment)
    body["history"] = [
        shapes.history_entry_as_dict(event)
        for event in selectors.experiment_history(experiment_id=experiment.pk)
    ]
    return body


class ExperimentListView(APIView):
    scopes = {"GET": "read", "POST": "manage"}

    @accepts(
        Choice("status", choices=tuple(Status.values)),
        Text("model", description="Only this model's experiments"),
        *PAGE,
    )
    @extend_schema(
        tags=TAGS,
        operation_id="experiments_list",
        summary="List experiments in creation order",
        responses={200: shapes.ExperimentPageSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        rows = selectors.experiment_list()
        status = request.query_params.get("status")
        if status is not None:
            if status not in Status.values:
                raise ValidationFailed(
                    "Unknown status.",
                    details=[{"field": "status", "message": ", ".join(Status.values)}],
                )
            rows = rows.filter(status=status)
        model = request.query_params.get("model")
        if model is not None:
            rows = rows.filter(model__name=model)
        page = paginate(request, rows, keys=("id",), serialize=services.experiment_state)
        return Response(page)

    @extend_schema(
        tags=TAGS,
        operation_id="experiments_create",
        summary="Create a draft experiment",
        request=shapes.ExperimentInputSerializer,
        responses={201: shapes.ExperimentSerializer, **_errors(400, 401, 403, 409, 415)},
    )
    def post(self, request: Request) -> Response:
        spec = parse_payload(request.data)
        experiment = services.experiment_create(spec=spec, actor=actor_of(request))
        return Response(_detail(experiment), status=201)


class ExperimentDetailView(APIView):
    scopes = {"GET": "read", "PATCH": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="experiments_get",
        summary="An experiment with its change history",
        responses={200: shapes.ExperimentSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(_detail(selectors.experiment_get(key=key)))

    @extend_schema(
        tags=TAGS,
        operation_id="experiments_update",
        summary="Change a draft; once started, only raise its coverage",
        request=shapes.ExperimentPatchSerializer,
        responses={200: shapes.ExperimentSerializer, **_errors(400, 401, 403, 404, 409, 415)},
    )
    def patch(self, request: Request, key: str) -> Response:
        current = services.spec_of(selectors.experiment_get(key=key))
        spec = parse_payload(request.data, base=current)
        experiment = services.experiment_update(key=key, spec=spec, actor=actor_of(request))
        return Response(_detail(experiment))


class _TransitionView(APIView):
    scopes = {"POST": "manage"}

    def change(self, request: Request, key: str) -> Experiment:
        raise NotImplementedError

    def post(self, request: Request, key: str) -> Response:
        return Response(_detail(self.change(request, key)))


def _transition_schema(operation_id: str, summary: str) -> Any:
    return extend_schema_view(
        post=extend_schema(
            tags=TAGS,
            operation_id=operation_id,
            summary=summary,
            request=None,
            responses={200: shapes.ExperimentSerializer, **_errors(401, 403, 404, 409)},
        )
    )


@_transition_schema("experiments_start", "Start or resume")
class ExperimentStartView(_TransitionView):
    def change(self, request: Request, key: str) -> Experiment:
        return services.experiment_start(key=key, actor=actor_of(request))


@_transition_schema("experiments_pause", "Pause")
class ExperimentPauseView(_TransitionView):
    def change(self, request: Request, key: str) -> Experiment:
        return services.experiment_pause(key=key, actor=actor_of(request))


@_transition_schema("experiments_stop", "Stop for good")
class ExperimentStopView(_TransitionView):
    def change(self, request: Request, key: str) -> Experiment:
        return services.experiment_stop(key=key, actor=actor_of(request))


@_transition_schema("experiments_ramp_advance", "Apply the next ramp step now")
class ExperimentRampAdvanceView(_TransitionView):
    def change(self, request: Request, key: str) -> Experiment:
        return services.experiment_ramp_advance(key=key, actor=actor_of(request))


class ExperimentShipView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="experiments_ship",
        summary="Stop and move the model's production alias to the variant's version",
        request=shapes.ShipSerializer,
        responses={200: shapes.ExperimentSerializer, **_errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request: Request, key: str) -> Response:
        body = request.data
        variant = body.get("variant") if isinstance(body, dict) else None
        if not isinstance(variant, str) or not variant:
            raise ValidationFailed(
                "Name the variant to ship.",
                details=[{"field": "variant", "message": "The key of one of the variants."}],
            )
        experiment = services.experiment_ship(key=key, variant=variant, actor=actor_of(request))
        return Response(_detail(experiment))


class AssignmentView(APIView):
    scopes = {"POST": "ingest"}

    @extend_schema(
        tags=TAGS,
        operation_id="assignments_create",
        summary="The variant and model version a subject gets (hash version 1)",
        request=shapes.AssignmentInputSerializer,
        responses={200: shapes.AssignmentSerializer, **_errors(400, 401, 403, 404, 415)},
    )
    def post(self, request: Request) -> Response:
        return Response(_assign(request.data))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """POST as a plain view: what DRF's dispatch would do, in the fewest steps.

        The key (cached per process), its scope, the rate limit (a lease held in memory),
        the body (orjson) and the assignment; any failure becomes API.md's error body
        through the same exception handler as every DRF view. Other methods go to DRF.
        """
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        try:
            header = request.META.get("HTTP_AUTHORIZATION", "").encode(HTTP_HEADER_ENCODING)
            caller = authenticate_bearer(header)
            if caller is None:
                raise NotAuthenticated
            principal = caller[0]
            if not has_scope(principal, self, "POST"):
                raise PermissionDenied(HasScope.message)
            wait = rate_limit_wait(principal.prefix)
            if wait is not None:
                raise Throttled(wait)
            if request.META.get("QUERY_STRING"):
                check_request(request.GET, kwargs, self.post)
            if not (request.content_type or "").startswith("application/json"):
                raise UnsupportedMediaType(request.content_type or "")
            body = _assign(loads(request.body))
        except Exception as error:  # noqa: BLE001 - mapped to API.md's body, else re-raised
            return _error(error)
        return HttpResponse(orjson.dumps(body), content_type="application/json")


def _error(error: Exception) -> HttpResponseBase:
    response = exception_handler(error, {})
    if response is None:
        raise error
    answer = strict_json_response(response.data, status=response.status_code)
    for name, value in response.items():
        if name.lower() != "content-type":
            answer[name] = value
    return answer


def _assign(payload: Any) -> dict[str, Any]:
    experiment, subject, attributes = parse_assignment(payload)
    return services.assignment_create(
        experiment=experiment, subject=subject, attributes=attributes
    ).as_dict()

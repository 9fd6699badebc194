"""Registry endpoints (API.md "Registry"): thin views over the registry's services/selectors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import actor_of
from apps.core.pagination import paginate
from apps.core.query import PAGE, accepts
from apps.core.schema import error_responses
from apps.registry import selectors, services
from apps.registry.api import serializers as shapes
from apps.registry.models import Alias, MLModel, ModelVersion

TAGS = ["registry"]
_ERROR_TEXT = {
    400: "Invalid body or parameters (validation_error, invalid_json).",
    401: "No or unknown API key.",
    403: "The key lacks the scope.",
    404: "No such model, version or alias.",
    409: "Conflicts with what is registered.",
}


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return error_responses(_ERROR_TEXT, *statuses)


def _model(model: MLModel) -> dict[str, Any]:
    return dict(shapes.MLModelSerializer(model).data)


def _model_detail(name: str) -> dict[str, Any]:
    model = selectors.model_detail_get(name=name)
    history = selectors.alias_history(model=model)
    return dict(shapes.MLModelDetailSerializer(model, context={"history": history}).data)


def _version(version: ModelVersion) -> dict[str, Any]:
    return dict(shapes.ModelVersionSerializer(version).data)


def _alias(alias: Alias) -> dict[str, Any]:
    history = selectors.alias_history(model=alias.model, aliases=[alias.name])
    return dict(shapes.ModelAliasSerializer(alias, context={"history": history}).data)


class ModelListView(APIView):
    scopes = {"GET": "read", "POST": "manage"}

    @accepts(*PAGE)
    @extend_schema(
        tags=TAGS,
        operation_id="models_list",
        summary="List models (by name) with their aliases",
        responses={200: shapes.MLModelPageSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        return Response(paginate(request, selectors.model_list(), keys=("name",), serialize=_model))

    @extend_schema(
        tags=TAGS,
        operation_id="models_create",
        summary="Register a model (idempotent: the same body again answers 200)",
        request=shapes.MLModelCreateSerializer,
        responses={
            201: shapes.MLModelSerializer,
            200: OpenApiResponse(shapes.MLModelSerializer, description="Already registered."),
            **_errors(400, 401, 403, 409),
        },
    )
    def post(self, request: Request) -> Response:
        data = shapes.read_body(request, shapes.MLModelCreateSerializer)
        model, created = services.model_create(**data, actor=actor_of(request))
        return Response(_model(model), status=201 if created else 200)


class ModelDetailView(APIView):
    scopes = {"GET": "read", "PATCH": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="models_retrieve",
        summary="A model with its aliases and each alias's latest moves (newest first)",
        responses={200: shapes.MLModelDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(_model_detail(name))

    @extend_schema(
        tags=TAGS,
        operation_id="models_partial_update",
        summary="Change a model's description, positive label, threshold or segment attributes",
        request=shapes.MLModelUpdateSerializer,
        responses={200: shapes.MLModelDetailSerializer, **_errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, name: str) -> Response:
        data = shapes.read_body(request, shapes.MLModelUpdateSerializer, nulls=False)
        services.model_update(name=name, **data, actor=actor_of(request))
        return Response(_model_detail(name))


class ModelVersionListView(APIView):
    scopes = {"GET": "read", "POST": "manage"}

    @accepts(*PAGE)
    @extend_schema(
        tags=TAGS,
        operation_id="models_versions_list",
        summary="List a model's versions in registration order",
        responses={200: shapes.ModelVersionPageSerializer, **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        selectors.model_get(name=name)
        versions = selectors.model_version_list(model=name, with_aliases=True)
        return Response(paginate(request, versions, keys=("created_at", "id"), serialize=_version))

    @extend_schema(
        tags=TAGS,
        operation_id="models_versions_create",
        summary="Register an immutable version (the same content again answers 200)",
        request=shapes.ModelVersionRegisterSerializer,
        responses={
            201: shapes.ModelVersionSerializer,
            200: OpenApiResponse(shapes.ModelVersionSerializer, description="Already registered."),
            **_errors(400, 401, 403, 404, 409),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        data = shapes.read_body(request, shapes.ModelVersionRegisterSerializer)
        version, created = services.model_version_register(
            model=name, **data, actor=actor_of(request)
        )
        return Response(_version(version), status=201 if created else 200)


class ModelVersionDetailView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        tags=TAGS,
        operation_id="models_versions_retrieve",
        summary="One version of a model",
        responses={200: shapes.ModelVersionSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        return Response(_version(selectors.model_version_get(model=name, version=version)))


class AliasView(APIView):
    scopes = {"GET": "read", "PUT": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="models_aliases_retrieve",
        summary="An alias, the version it points to, and its latest moves",
        responses={200: shapes.ModelAliasSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, name: str, alias: str) -> Response:
        return Response(_alias(selectors.alias_get(model=name, alias=alias)))

    @extend_schema(
        tags=TAGS,
        operation_id="models_aliases_update",
        summary="Point an alias at a version (creating it); every move is an event",
        request=shapes.AliasTargetSerializer,
        responses={200: shapes.ModelAliasSerializer, **_errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, name: str, alias: str) -> Response:
        data = shapes.read_body(request, shapes.AliasTargetSerializer)
        moved = services.alias_move(
            model=name, alias=alias, version=data["version"], actor=actor_of(request)
        )
        return Response(_alias(moved))


class AliasRollbackView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="models_aliases_rollback",
        summary="Move an alias back to where it pointed before its last move",
        request=None,
        responses={200: shapes.ModelAliasSerializer, **_errors(401, 403, 404, 409)},
    )
    def post(self, request: Request, name: str, alias: str) -> Response:
        moved = services.alias_rollback(model=name, alias=alias, actor=actor_of(request))
        return Response(_alias(moved))

"""Experiment results (API.md "Results") and the synchronous aggregation run."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.analytics import selectors, services
from apps.analytics.api import serializers


class ExperimentResultsView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "segment",
                OpenApiTypes.STR,
                description="one of the experiment's breakdown_attributes",
            )
        ],
        responses=serializers.ResultsSerializer,
    )
    def get(self, request: Request, key: str) -> Response:
        segment = request.query_params.get("segment")
        return Response(selectors.experiment_results(key=key, segment=segment or None))


class AggregationRunView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(request=None, responses=serializers.AggregationRunSerializer)
    def post(self, request: Request) -> Response:
        return Response(services.aggregations_run())

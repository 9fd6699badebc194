"""Experiment results, model performance (API.md) and the synchronous aggregation run."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.analytics import selectors, services
from apps.analytics.api import serializers
from apps.core.query import Choice, Text, Time, accepts
from apps.core.schema import error_responses


class ExperimentResultsView(APIView):
    scopes = {"GET": "read"}

    @accepts(Text("segment", description="one of the experiment's breakdown_attributes"))
    @extend_schema(responses=serializers.ResultsSerializer)
    def get(self, request: Request, key: str) -> Response:
        segment = request.query_params.get("segment")
        return Response(selectors.experiment_results(key=key, segment=segment or None))


class AggregationRunView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        request=None,
        responses={
            200: serializers.AggregationRunSerializer,
            **error_responses(
                {
                    503: "Not every projection was up to date within "
                    "KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS (120 s); details name them. "
                    "They keep folding in the workers; retry after Retry-After."
                },
                503,
            ),
        },
    )
    def post(self, request: Request) -> Response:
        return Response(services.aggregations_run_now())


class ModelPerformanceView(APIView):
    scopes = {"GET": "read"}

    @accepts(
        Text("version", description="one version only"),
        Text(
            "segment",
            description="one of the model's segment_attributes: a row per value "
            "(its first 100 values in log order; later ones as 'other', absent as null)",
        ),
        Choice("bucket", choices=("hour", "day")),
        Time(
            "start",
            description="RFC 3339 with offset; default end − 7 days; whole buckets "
            "overlapping [start, end) are answered",
        ),
        Time("end", description="RFC 3339 with offset; default now"),
    )
    @extend_schema(responses=serializers.PerformanceSerializer)
    def get(self, request: Request, name: str) -> Response:
        query = request.query_params
        return Response(
            selectors.model_performance(
                model=name,
                version=query.get("version") or None,
                segment=query.get("segment") or None,
                bucket=query.get("bucket") or None,
                start=selectors.time_parse(query.get("start"), field_name="start"),
                end=selectors.time_parse(query.get("end"), field_name="end"),
            )
        )

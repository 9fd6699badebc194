"""Rules, alerts and retraining jobs (API.md "Performance, rules and retraining"): thin views."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import actor_of
from apps.core.errors import ValidationFailed
from apps.core.pagination import paginate
from apps.core.query import PAGE, Boolean, Choice, Integer, Text, accepts
from apps.core.schema import error_responses
from apps.monitoring import selectors, services
from apps.monitoring.api import serializers as shapes
from apps.monitoring.models import JobStatus
from apps.monitoring.validation import parse_acknowledgement, parse_failure, parse_rule

TAGS = ["monitoring"]
_ERROR_TEXT = {
    400: "Invalid body or parameters (validation_error, invalid_json).",
    401: "No or unknown API key.",
    403: "The key lacks the scope.",
    404: "No such rule, alert or job.",
    409: "Conflicts with the current state (a name taken, a job not in that status).",
    415: "The body is not application/json.",
}


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return error_responses(_ERROR_TEXT, *statuses)


def _boolean(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in {"true", "false"}:
        raise ValidationFailed(
            f"{name} is true or false.", details=[{"field": name, "message": "true or false."}]
        )
    return raw == "true"


def _text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return raw if raw else None


def _rule_body(rule_id: int, secret: str | None) -> dict[str, Any]:
    body = selectors.rule_detail(rule_id=rule_id)
    if secret is not None:
        body["webhook_secret"] = secret
    return body


# --- rules ------------------------------------------------------------------------------------


class RuleListView(APIView):
    scopes = {"GET": "read", "POST": "manage"}

    @accepts(Text("model", description="Only this model's rules"), Boolean("enabled"), *PAGE)
    @extend_schema(
        tags=TAGS,
        operation_id="rules_list",
        summary="List rules in creation order",
        responses={200: shapes.RulePageSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        rows = selectors.rule_list(
            model=_text(request, "model"), enabled=_boolean(request, "enabled")
        )
        page = paginate(request, rows, keys=("created_at", "id"), serialize=selectors.rule_state)
        return Response(page)

    @extend_schema(
        tags=TAGS,
        operation_id="rules_create",
        summary="Create a threshold rule (its webhook secret is answered once)",
        request=shapes.RuleInputSerializer,
        responses={201: shapes.RuleDetailSerializer, **_errors(400, 401, 403, 409, 415)},
    )
    def post(self, request: Request) -> Response:
        spec, _ = parse_rule(request.data, allow_private=services.webhook_allow_private())
        rule, secret = services.rule_create(spec=spec, actor=actor_of(request))
        return Response(_rule_body(rule.pk, secret), status=201)


class RuleDetailView(APIView):
    scopes = {"GET": "read", "PATCH": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="rules_retrieve",
        summary="A rule with its change history",
        responses={200: shapes.RuleDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, rule_id: str) -> Response:
        return Response(selectors.rule_detail(rule_id=rule_id))

    @extend_schema(
        tags=TAGS,
        operation_id="rules_partial_update",
        summary="Change a rule (enable/disable, threshold…); every change is an event",
        request=shapes.RulePatchSerializer,
        responses={200: shapes.RuleDetailSerializer, **_errors(400, 401, 403, 404, 409, 415)},
    )
    def patch(self, request: Request, rule_id: str) -> Response:
        current = selectors.rule_get(rule_id=rule_id)
        spec, rotate = parse_rule(
            request.data,
            base=selectors.rule_spec(current),
            allow_private=services.webhook_allow_private(),
        )
        rule, secret = services.rule_update(
            rule_id=current.pk, spec=spec, actor=actor_of(request), rotate_webhook_secret=rotate
        )
        return Response(_rule_body(rule.pk, secret))


# --- alerts -----------------------------------------------------------------------------------


class AlertListView(APIView):
    scopes = {"GET": "read"}

    @accepts(Text("model"), Integer("rule", minimum=1), Boolean("acknowledged"), *PAGE)
    @extend_schema(
        tags=TAGS,
        operation_id="alerts_list",
        summary="List alerts, oldest first",
        responses={200: shapes.AlertPageSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        rule = _text(request, "rule")
        if rule is not None and not (rule.isascii() and rule.isdigit() and len(rule) <= 18):
            raise ValidationFailed(
                "rule is a rule id.", details=[{"field": "rule", "message": "A rule id."}]
            )
        rows = selectors.alert_list(
            model=_text(request, "model"), rule=rule, acknowledged=_boolean(request, "acknowledged")
        )
        page = paginate(
            request, rows, keys=("occurred_at", "id"), serialize=selectors.alert_as_dict
        )
        return Response(page)


class AlertAcknowledgeView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="alerts_acknowledge",
        summary="Acknowledge an alert (again: answers the first acknowledgement)",
        request=shapes.AcknowledgeSerializer,
        responses={200: shapes.AlertSerializer, **_errors(400, 401, 403, 404, 415)},
    )
    def post(self, request: Request, alert_id: str) -> Response:
        note = parse_acknowledgement(request.data)
        alert = services.alert_acknowledge(alert_id=alert_id, actor=actor_of(request), note=note)
        return Response(selectors.alert_as_dict(alert))


# --- retraining jobs ---------------------------------------------------------------------------


class JobListView(APIView):
    scopes = {"GET": "read"}

    @accepts(Text("model"), Choice("status", choices=tuple(JobStatus.values)), *PAGE)
    @extend_schema(
        tags=TAGS,
        operation_id="retraining_jobs_list",
        summary="List retraining jobs in creation order",
        responses={200: shapes.JobPageSerializer, **_errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        status = _text(request, "status")
        if status is not None and status not in JobStatus.values:
            raise ValidationFailed(
                "Unknown status.",
                details=[{"field": "status", "message": ", ".join(JobStatus.values)}],
            )
        rows = selectors.job_list(model=_text(request, "model"), status=status)
        page = paginate(request, rows, keys=("created_at", "id"), serialize=selectors.job_as_dict)
        return Response(page)


class JobDetailView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        tags=TAGS,
        operation_id="retraining_jobs_retrieve",
        summary="A retraining job with its transitions",
        responses={200: shapes.JobDetailSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(selectors.job_detail(job_id=job_id))


class JobClaimView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="retraining_jobs_claim",
        summary="Claim a queued job (external trainers): running, with a lease",
        request=None,
        responses={200: shapes.JobDetailSerializer, **_errors(401, 403, 404, 409)},
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = services.retraining_job_claim(job_id=job_id, actor=actor_of(request))
        return Response(selectors.job_detail(job_id=job.pk))


class JobCompleteView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="retraining_jobs_complete",
        summary="Complete a claimed job with the trained version (registered in the registry)",
        request=shapes.JobCompleteSerializer,
        responses={200: shapes.JobDetailSerializer, **_errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = services.retraining_job_complete(
            job_id=job_id, actor=actor_of(request), version=request.data
        )
        return Response(selectors.job_detail(job_id=job.pk))


class JobFailView(APIView):
    scopes = {"POST": "manage"}

    @extend_schema(
        tags=TAGS,
        operation_id="retraining_jobs_fail",
        summary="Report a claimed job's failure (retry: back to the queue if attempts are left)",
        request=shapes.JobFailSerializer,
        responses={200: shapes.JobDetailSerializer, **_errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request: Request, job_id: str) -> Response:
        error, retry = parse_failure(request.data)
        job = services.retraining_job_fail(
            job_id=job_id, actor=actor_of(request), error=error, retry=retry
        )
        return Response(selectors.job_detail(job_id=job.pk))

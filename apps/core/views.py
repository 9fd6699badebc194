"""Operations endpoints: /healthz, /readyz and /metrics (API.md "Operations")."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse

from apps.core.errors import json_error, strict_json_response
from apps.core.metrics import render as render_metrics

ReadinessSource = Callable[[], dict[str, Any]]
# The problems a section shows, in words: any makes /readyz's status `degraded` (still 200).
ProblemFinder = Callable[[dict[str, Any]], list[str]]
View = Callable[[HttpRequest], HttpResponse]
_readiness_sources: dict[str, tuple[ReadinessSource, ProblemFinder | None]] = {}


def register_readiness(
    name: str, source: ReadinessSource, problems: ProblemFinder | None = None
) -> None:
    """Add a section to /readyz's body (e.g. projection lag); it never makes /readyz fail,
    but the problems `problems` finds in it make the status `degraded`."""
    _readiness_sources[name] = (source, problems)


def _read_only(view: View) -> View:
    """GET and HEAD only; anything else is API.md's 405 body (Django's own has no body)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method not in {"GET", "HEAD"}:
            return json_error(
                405,
                "method_not_allowed",
                f"Method {request.method} is not allowed here; use GET.",
                Allow="GET, HEAD",
            )
        return view(request)

    return wrapped


@_read_only
def healthz(request: HttpRequest) -> HttpResponse:
    return strict_json_response({"status": "ok"})


def _database_answers() -> tuple[bool, str]:
    try:
        # SET LOCAL lasts until the end of the transaction; outside one it does nothing.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 2000")
            cursor.execute("SELECT 1")
        return True, "ok"
    except DatabaseError as error:
        return False, type(error).__name__


def _broker_redis_url() -> str:
    """The Redis the Celery broker uses, as redis-py spells it (kombu: redis+socket://)."""
    broker: str = settings.CELERY_BROKER_URL
    if broker.startswith("redis+socket://"):
        return "unix://" + broker.removeprefix("redis+socket://")
    return broker


def _broker_status() -> dict[str, Any]:
    try:
        client = redis.Redis.from_url(
            _broker_redis_url(), socket_connect_timeout=0.5, socket_timeout=0.5
        )
        client.ping()
        return {"status": "ok"}
    except (redis.RedisError, OSError, ValueError) as error:
        return {"status": "unavailable", "error": type(error).__name__}


@_read_only
def readyz(request: HttpRequest) -> HttpResponse:
    """200 while the database answers; broker state and lag are reported, never fatal."""
    database_ok, database_state = _database_answers()
    body: dict[str, Any] = {
        "status": "ready" if database_ok else "unavailable",
        "database": database_state,
        "broker": _broker_status(),
    }
    if database_ok:
        problems = _sections(body)
        if problems:
            body["status"] = "degraded"
            body["problems"] = problems
    if not database_ok:
        response = strict_json_response(
            {
                "error": {
                    "code": "unavailable",
                    "message": "The database does not answer.",
                    "details": [],
                },
                **body,
            },
            status=503,
        )
        response["Retry-After"] = "5"
        return response
    return strict_json_response(body)


def _sections(body: dict[str, Any]) -> list[str]:
    """Fill in every registered section of /readyz; the problems they show."""
    problems: list[str] = []
    for name, (source, finder) in _readiness_sources.items():
        try:
            section = body[name] = source()
        except DatabaseError as error:
            body[name] = {"status": "unknown", "error": type(error).__name__}
            continue
        if finder is not None:
            problems += finder(section)
    return problems


@_read_only
def metrics(request: HttpRequest) -> HttpResponse:
    token: str = settings.KAIZEN_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return json_error(401, "unauthenticated", "Send the metrics token as a Bearer token.")
    output, content_type = render_metrics()
    return HttpResponse(output, content_type=content_type)

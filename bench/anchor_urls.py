"""Kaizen's routes plus the benchmark's anchors, served by the same gunicorn in the same run.

The anchor is the floor the assignment endpoint is measured against (issue 4, "Speed"): a
minimal Django view behind the same middleware that parses the body, hashes the subject and
runs one `INSERT … ON CONFLICT DO NOTHING` (one durable commit for a new row), with no key
lookup, no configuration and no exposure semantics.
"""

from __future__ import annotations

import hashlib

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as kaizen_urlpatterns

ANCHOR_TABLE = "bench_anchor"


@csrf_exempt
def minimal(request: HttpRequest) -> HttpResponse:
    body = orjson.loads(request.body)
    subject = str(body["subject"])
    digest = hashlib.sha1(f"salt.{subject}variant".encode(), usedforsecurity=False).hexdigest()
    variant = "control" if int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF < 0.5 else "treatment"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ANCHOR_TABLE} (subject, variant) VALUES (%s, %s)"  # noqa: S608 - constant
            " ON CONFLICT DO NOTHING",
            [subject, variant],
        )
    return HttpResponse(orjson.dumps({"variant": variant}), content_type="application/json")


@csrf_exempt
def empty(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"{}", content_type="application/json")


urlpatterns = [
    path("bench/minimal", minimal),
    path("bench/empty", empty),
    *kaizen_urlpatterns,
]

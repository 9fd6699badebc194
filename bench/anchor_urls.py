"""Kaizen's routes plus the benchmark's anchors, served by the same gunicorn in the same run.

The anchors are the floor the assignment endpoint is measured against (issue 4, "Speed"):
minimal Django views behind the same middleware that parse the body, hash the subject and
run one `INSERT … ON CONFLICT DO NOTHING` (one durable commit for a new row), with no key
lookup, no configuration and no exposure semantics. `minimal` inserts into a three-column
table of its own; `minimal_exposure` inserts the row Kaizen stores for a new exposure (an
event of the log: its uuid, global sequence number, transaction id, times and three
indexes), so that the two tell the cost of the row apart from the cost of the endpoint.
The anchors run their INSERT through Django's cursor, as a minimal Django view would;
`minimal_exposure_prepared` runs the same INSERT the way the endpoint runs its statement
(prepared, one libpq call: apps/core/db.py), to tell what that way of executing is worth
apart from the work.
"""

from __future__ import annotations

import hashlib

import orjson
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from apps.core.db import fetchone_prepared
from config.urls import urlpatterns as kaizen_urlpatterns

ANCHOR_TABLE = "bench_anchor"


def _hashed_variant(subject: str) -> str:
    """A 50/50 split by hash version 1's formula, inline (no configuration)."""
    digest = hashlib.sha1(f"salt.{subject}variant".encode(), usedforsecurity=False).hexdigest()
    return "control" if int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF < 0.5 else "treatment"


@csrf_exempt
def minimal(request: HttpRequest) -> HttpResponse:
    body = orjson.loads(request.body)
    subject = str(body["subject"])
    variant = _hashed_variant(subject)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ANCHOR_TABLE} (subject, variant) VALUES (%s, %s)"  # noqa: S608 - constant
            " ON CONFLICT DO NOTHING",
            [subject, variant],
        )
    return HttpResponse(orjson.dumps({"variant": variant}), content_type="application/json")


_experiment: list[int] = []


def _experiment_id() -> int:
    """The benchmark's one experiment, read once per process."""
    if not _experiment:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM experiments_experiment ORDER BY id LIMIT 1")
            row = cursor.fetchone()
        _experiment.append(int(row[0]) if row else 0)
    return _experiment[0]


EXPOSURE_INSERT = (
    "INSERT INTO experiments_exposure (id, occurred_at, experiment_id, subject, variant,"
    " model_version, attributes, source, hash_version)"
    " VALUES (gen_random_uuid(), now(), %s::bigint, %s::text, %s::text, %s::text, %s::jsonb,"
    " 'assignment', 1)"
    " ON CONFLICT DO NOTHING"
)


def _exposure_parameters(request: HttpRequest) -> tuple[str, list[int | str]]:
    body = orjson.loads(request.body)
    subject = str(body["subject"])
    variant = _hashed_variant(subject)
    version = "2" if variant == "control" else "3"
    attributes = orjson.dumps(body.get("attributes", {})).decode()
    return variant, [_experiment_id(), subject, variant, version, attributes]


@csrf_exempt
def minimal_exposure(request: HttpRequest) -> HttpResponse:
    variant, parameters = _exposure_parameters(request)
    with connection.cursor() as cursor:
        cursor.execute(EXPOSURE_INSERT, parameters)
    return HttpResponse(orjson.dumps({"variant": variant}), content_type="application/json")


@csrf_exempt
def minimal_exposure_prepared(request: HttpRequest) -> HttpResponse:
    """The same, its INSERT run as the endpoint runs its own (apps/core/db.py)."""
    variant, parameters = _exposure_parameters(request)
    fetchone_prepared(EXPOSURE_INSERT, parameters)
    return HttpResponse(orjson.dumps({"variant": variant}), content_type="application/json")


@csrf_exempt
def empty(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"{}", content_type="application/json")


urlpatterns = [
    path("bench/minimal", minimal),
    path("bench/minimal-exposure", minimal_exposure),
    path("bench/minimal-exposure-prepared", minimal_exposure_prepared),
    path("bench/empty", empty),
    *kaizen_urlpatterns,
]

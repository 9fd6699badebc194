"""Ingestion benchmark (issue 3, "Speed"): HTTP events/s and latency, next to raw PostgreSQL.

Starts gunicorn (2 sync workers) against a fresh database, registers model `churn` version 3,
then loads it from separate client processes, each phase bounded in time:

1. predictions in batches of 500, closed loop: events/s, p50, p99 (target ≥ 40,000/s);
2. feedback in batches of 500, closed loop (target: faster than predictions);
3. single predictions, open loop at 200 requests/s: p50, p99 (target p99 < 20 ms);
4. single predictions, closed loop: the most one-event requests per second.

The machine is shared with other work, so the phases run in BENCH_ROUNDS turns (default 2,
each BENCH_SECONDS / 2 long); every turn is printed, and the targets read the best one.

Then, in the same run and database, inserts rows like the ones posted straight into the
prediction table with psycopg from 2 connections (as many as the server's workers):
executemany and binary COPY, 1000 rows per transaction, and prints the HTTP rate as a
fraction of each. Every event is fully validated by the server
(the same body API.md shows: attributes, features, output, explanation, latency).

First, in a process of its own (`--decode`, also runnable alone), it times decode + validate
(apps.ingest.validation.decode) of the same batches with the event declarations as they are
and with every numeric bound removed from them, in pairs over BENCH_DECODE_ROUNDS short rounds
(default 40, the order alternating): the cost the bounds add to the one compiled pass, free of
HTTP and database noise. Rounds are timed in this process's CPU time, which other work on a
shared machine does not add to (it can still slow a round through the caches, never speed it
up), and it prints each variant's best round and the median of the per-round ratios.

Environment: DATABASE_URL / REDIS_URL name the servers (else the embedded ones); BENCH_SECONDS
scales every phase (default 12 s for the batch phases). The machine is shared: the load
average is printed before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.adapt import Dumper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402 - the sibling module, found through the path above
    PYTHON,
    ROOT,
    Environment,
    Load,
    api_key,
    drop_database,
    fresh_database,
    machine_load,
    report,
    request_json,
    run_load,
    serve,
    unique_id_prefix,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "12"))
# The machine is shared: each phase runs in ROUNDS turns, and the targets read the best turn.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
BATCH = 500
RAW_ROWS = 40_000
RAW_CHUNK = 1000
# As many inserting connections as the server has workers.
RAW_CONNECTIONS = 2
SINGLE_RATE = 200.0
OCCURRED_AT = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
VARIETY = 64

TARGET_BATCH_EVENTS = 40_000
TARGET_SINGLE_P99_MS = 20.0


def prediction_fields(number: int) -> dict[str, Any]:
    """The body API.md shows, varied a little (all but `id`)."""
    return {
        "model": "churn",
        "model_version": "3",
        "subject": f"user-{number:05d}",
        "attributes": {"country": ("DE", "FR", "US", "PL")[number % 4], "plan": "pro"},
        "features": {
            "tenure_days": 400 + number,
            "sessions_7d": number % 9,
            "avg_basket": 31.5 + number,
            "device": ("ios", "android", "web")[number % 3],
            "newsletter": number % 2 == 0,
        },
        "output": {"label": "churn" if number % 3 else "stay", "score": (number % 100) / 100},
        "explanation": {"tenure_days": -0.12, "sessions_7d": 0.31},
        "latency_ms": 12.5 + number % 7,
        "occurred_at": OCCURRED_AT,
    }


def feedback_fields(number: int) -> dict[str, Any]:
    return {
        "prediction_id": f"00000000-0000-4000-8000-{number:012x}",
        "metric": ("click", "conversion", "revenue")[number % 3],
        "value": number % 2,
        "occurred_at": OCCURRED_AT,
    }


class Bodies:
    """Request bodies of `batch` events with ids never used before (8-4-4-4-12 hex UUIDs)."""

    def __init__(self, fields: Any, batch: int, processes: int = 16) -> None:
        self.batch = batch
        # Each event's JSON after its id, cut from a full encoding: `"model":...}`.
        self.rests = [orjson.dumps(fields(number))[1:] for number in range(VARIETY)]
        self.prefixes = [unique_id_prefix().encode() for _ in range(processes)]

    def __call__(self, worker: int, number: int) -> tuple[bytes, int]:
        prefix = self.prefixes[worker]
        first = number * self.batch
        events = [
            b'{"id":"%s%012x",%s' % (prefix, first + offset, self.rests[(first + offset) % VARIETY])
            for offset in range(self.batch)
        ]
        if self.batch == 1:
            return events[0], 1
        return b'{"events":[' + b",".join(events) + b"]}", self.batch


def register_model(base_url: str, key: str) -> None:
    request_json(
        base_url,
        "POST",
        "/api/v1/models",
        key,
        orjson.dumps({"name": "churn", "task": "binary_classification", "positive_label": "churn"}),
    )
    request_json(
        base_url, "POST", "/api/v1/models/churn/versions", key, orjson.dumps({"version": "3"})
    )


# (figure name, label, path, bodies, share of SECONDS, client processes, offered rate)
PHASES: list[tuple[str, str, str, Any, float, int, float | None]] = [
    ("predictions_batch", f"predictions, batches of {BATCH}", "/api/v1/predictions",
     (prediction_fields, BATCH), 1.0, 3, None),
    ("feedback_batch", f"feedback, batches of {BATCH}", "/api/v1/feedback",
     (feedback_fields, BATCH), 0.75, 3, None),
    ("predictions_single_rate", f"predictions, single, {SINGLE_RATE:.0f} req/s offered",
     "/api/v1/predictions", (prediction_fields, 1), 0.75, 2, SINGLE_RATE),
    ("predictions_single_max", "predictions, single, closed loop", "/api/v1/predictions",
     (prediction_fields, 1), 0.5, 3, None),
]  # fmt: skip


def http_phases(environment: Environment, key: str) -> list[dict[str, dict[str, float]]]:
    """Every phase, ROUNDS times in turn (each SECONDS / ROUNDS long); figures per round."""
    rounds: list[dict[str, dict[str, float]]] = []
    with serve(environment, workers=2) as base_url:
        register_model(base_url, key)
        # Warm-up: imports, connections, caches of every worker.
        run_load(
            base_url, Load("/api/v1/predictions", key, Bodies(prediction_fields, 50), seconds=1.5)
        )
        run_load(base_url, Load("/api/v1/feedback", key, Bodies(feedback_fields, 50), seconds=1))
        for number in range(1, ROUNDS + 1):
            figures = {}
            for name, label, path, (fields, size), share, processes, rate in PHASES:
                load = Load(
                    path,
                    key,
                    Bodies(fields, size),
                    seconds=SECONDS * share / ROUNDS,
                    processes=processes,
                    rate=rate,
                )
                figures[name] = report(f"[{number}] {label}", run_load(base_url, load))
            rounds.append(figures)
    return rounds


# --- raw PostgreSQL -------------------------------------------------------------------------

COLUMNS = (
    ("id", "uuid"),
    ("occurred_at", "timestamptz"),
    ("model_version_id", "int8"),
    ("subject", "text"),
    ("attributes", "jsonb"),
    ("features", "jsonb"),
    ("output_label", "text"),
    ("output_score", "float8"),
    ("explanation", "jsonb"),
    ("latency_ms", "float8"),
    ("actor", "text"),
    ("content_hash", "bytea"),
)


class _JsonbBytes(Dumper):
    """Binary jsonb from encoded bytes, as the server's write path sends it."""

    format = psycopg.pq.Format.BINARY
    oid = 3802

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + bytes(obj)


class _Marker:
    pass


def raw_rows(version_id: int, count: int) -> list[tuple[Any, ...]]:
    import uuid

    occurred_at = datetime.fromisoformat(OCCURRED_AT)
    rows = []
    for number in range(count):
        fields = prediction_fields(number % VARIETY)
        rows.append(
            (
                uuid.uuid4(),
                occurred_at,
                version_id,
                fields["subject"],
                orjson.dumps(fields["attributes"]),
                orjson.dumps(fields["features"]),
                fields["output"]["label"],
                fields["output"]["score"],
                orjson.dumps(fields["explanation"]),
                fields["latency_ms"],
                "api_key:bench",
                hashlib.blake2b(orjson.dumps(fields), digest_size=16).digest(),
            )
        )
    return rows


def _raw_insert(
    database_url: str, method: str, version_id: int, start_at: float, results: Any
) -> None:
    """One connection inserting RAW_ROWS / RAW_CONNECTIONS rows by `method`, from `start_at`."""
    names = ", ".join(name for name, _ in COLUMNS)
    rows = raw_rows(version_id, RAW_ROWS // RAW_CONNECTIONS)
    jsonb = {index for index, (_, kind) in enumerate(COLUMNS) if kind == "jsonb"}
    with psycopg.connect(database_url) as conn:
        conn.adapters.register_dumper(_Marker, _JsonbBytes)
        if method == "executemany":
            placeholders = ", ".join(
                "%s::jsonb" if kind == "jsonb" else "%s" for _, kind in COLUMNS
            )
            insert = f"INSERT INTO ingest_prediction ({names}) VALUES ({placeholders})"  # noqa: S608
            rows = [
                tuple(
                    value.decode() if index in jsonb else value for index, value in enumerate(row)
                )
                for row in rows
            ]
        while time.time() < start_at:
            time.sleep(0.001)
        started = time.time()
        with conn.cursor() as cursor:
            for first in range(0, len(rows), RAW_CHUNK):
                chunk = rows[first : first + RAW_CHUNK]
                if method == "executemany":
                    cursor.executemany(insert, chunk)
                else:
                    copy_sql = f"COPY ingest_prediction ({names}) FROM STDIN (FORMAT BINARY)"
                    with cursor.copy(copy_sql) as copy:
                        copy.set_types([kind for _, kind in COLUMNS])
                        for row in chunk:
                            copy.write_row(row)
                conn.commit()
        results.put((started, time.time(), len(rows)))


def raw_phases(environment: Environment) -> dict[str, float]:
    """Rows/s of plain psycopg inserts from RAW_CONNECTIONS processes, as many as workers."""
    with psycopg.connect(environment.database_url) as conn:
        found = conn.execute("SELECT id FROM registry_modelversion WHERE version = '3'").fetchone()
    assert found is not None  # noqa: S101 - registered by the HTTP phase
    rates: dict[str, float] = {}
    context = multiprocessing.get_context("fork")
    for method in ("executemany", "copy") * ROUNDS:
        results = context.Queue()
        start_at = time.time() + 1.5  # time for each process to build its rows
        processes = [
            context.Process(
                target=_raw_insert,
                args=(environment.database_url, method, int(found[0]), start_at, results),
            )
            for _ in range(RAW_CONNECTIONS)
        ]
        for process in processes:
            process.start()
        spans = [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        seconds = max(end for _, end, _ in spans) - min(begin for begin, _, _ in spans)
        rate = sum(count for _, _, count in spans) / seconds
        rates[method] = max(rates.get(method, 0.0), rate)
        label = f"raw psycopg {method}, {RAW_CONNECTIONS} connections, {RAW_CHUNK} rows/tx"
        print(f"{label:<52} {rate:>10,.0f} rows/s")
    return rates


# --- decode + validate, with and without the bounds -----------------------------------------

DECODE_ROUNDS = int(os.environ.get("BENCH_DECODE_ROUNDS", "40"))
DECODE_BATCHES = 10  # batches of BATCH events per kind, per round and variant


def _without_bounds(fields: Any) -> Any:
    """The declared fields with every number's bound removed (plain finite floats)."""
    from apps.ingest.shapes import Map, Object, Scalar

    def strip(kind: Any) -> Any:
        if isinstance(kind, Scalar):
            return Scalar(kind.kind) if kind.kind == "number" else kind
        if isinstance(kind, Map):
            return Map(tuple(strip(value) for value in kind.values), kind.max_keys)
        return Object(kind.name, _without_bounds(kind.fields))

    return tuple(dataclasses.replace(field, type=strip(field.type)) for field in fields)


def decode_phase() -> int:
    """Events/s of decode() with the bounds as declared and without them, interleaved."""
    import django

    django.setup()
    from apps.ingest.shapes import FEEDBACK, PREDICTION
    from apps.ingest.validation import Limits, decode

    limits = Limits.current()
    cases = []
    for shape, fields in ((PREDICTION, prediction_fields), (FEEDBACK, feedback_fields)):
        bodies = Bodies(fields, BATCH, processes=1)
        batches = [bodies(0, number)[0] for number in range(DECODE_BATCHES)]
        unbounded = dataclasses.replace(shape, fields=_without_bounds(shape.fields))
        cases.append((shape.kind, batches, {"bounded": shape, "unbounded": unbounded}))
    rates: dict[tuple[str, str], list[float]] = {}
    for number in range(1, DECODE_ROUNDS + 1):
        for kind, batches, variants in cases:
            # Alternate which variant goes first, so neither always meets a warmer cache.
            order = ("bounded", "unbounded") if number % 2 else ("unbounded", "bounded")
            for variant in order:
                shape = variants[variant]
                decode(batches[0], kind=kind, limits=limits, shape=shape)  # codec built
                started = time.process_time()
                for body in batches:
                    decoded = decode(body, kind=kind, limits=limits, shape=shape)
                    assert not decoded.details  # noqa: S101 - every bench event is valid
                rate = len(batches) * BATCH / (time.process_time() - started)
                rates.setdefault((kind, variant), []).append(rate)
    for kind, _, _ in cases:
        bounded_rates, unbounded_rates = rates[(kind, "bounded")], rates[(kind, "unbounded")]
        pairs = zip(bounded_rates, unbounded_rates, strict=True)
        ratios = [with_bounds / without for with_bounds, without in pairs]
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"decode {kind:<10}: best {max(bounded_rates):>9,.0f} events/s with the bounds, "
            f"{max(unbounded_rates):>9,.0f} without "
            f"({max(bounded_rates) / max(unbounded_rates):.3f} ×); "
            f"per-round ratio median {statistics.median(ratios):.3f} "
            f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, {len(ratios)} rounds)"
        )
    return 0


def decode_in_own_process(environment: Environment) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and script
        [PYTHON, str(Path(__file__).resolve()), "--decode"],
        env=environment.variables(),
        cwd=ROOT,
        check=True,
        timeout=600,
    )


def main() -> int:
    print(f"before: {machine_load()}")
    environment = fresh_database("kaizen_bench_ingest")
    try:
        decode_in_own_process(environment)
        key = api_key(environment)
        rounds = http_phases(environment, key)
        raw = raw_phases(environment)
    finally:
        drop_database(environment)
    print(f"after:  {machine_load()}")
    best = {
        name: max(rounds, key=lambda figures: figures[name]["events_per_second"])[name]
        for name in ("predictions_batch", "feedback_batch")
    }
    batch = best["predictions_batch"]["events_per_second"]
    feedback = best["feedback_batch"]["events_per_second"]
    single_p99 = min(figures["predictions_single_rate"]["p99_ms"] for figures in rounds)
    print(f"best of {ROUNDS} rounds (shared machine):")
    print(
        f"  predictions {batch:,.0f} events/s in batches of {BATCH} = "
        f"{batch / raw['copy']:.2f} × raw COPY ({raw['copy']:,.0f} rows/s), "
        f"{batch / raw['executemany']:.2f} × raw executemany ({raw['executemany']:,.0f} rows/s)"
    )
    print(f"  feedback {feedback:,.0f} events/s; single events p99 {single_p99:.1f} ms")
    checks = [
        (
            f"predictions ≥ {TARGET_BATCH_EVENTS:,}/s in batches of {BATCH}",
            batch >= TARGET_BATCH_EVENTS,
        ),
        ("feedback faster than predictions", feedback > batch),
        (
            f"single-event p99 < {TARGET_SINGLE_P99_MS:.0f} ms at {SINGLE_RATE:.0f} req/s",
            single_p99 < TARGET_SINGLE_P99_MS,
        ),
    ]
    for text, met in checks:
        print(f"target {'met   ' if met else 'MISSED'}: {text}")
    failed = sum(int(phase["failed"]) for figures in rounds for phase in figures.values())
    if failed:
        print(f"{failed} requests failed (not 2xx): the figures above are not valid")
        return 1
    return 0


if __name__ == "__main__":
    if "--decode" in sys.argv:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        sys.path.insert(0, str(ROOT))
        sys.exit(decode_phase())
    sys.exit(main())

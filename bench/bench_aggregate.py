"""Aggregation benchmark: the A/B projection next to a plain join + GROUP BY of the same data.

Two data sets (scenarios), each in a fresh, migrated database of its own and a process of its
own (`bench_aggregate.py` runs both; BENCH_AGGREGATE_SCENARIO=<name> runs one in-process):

- `returning-subjects`: 1,000,000 tagged predictions over 200,000 subjects (5 each) and
  1,000,000 feedback events, one per prediction: `click` (0/1) or `revenue` (exponential);
- `new-subjects`: 1,000,000 tagged predictions, each for a new subject (1,000,000 subjects,
  so as many exposures), and 200,000 `click` feedback events (0/1) on a fifth of them.

Each registers model `churn` (versions 1-3) and a running three-variant experiment through
the services, then generates straight into PostgreSQL (INSERT … SELECT generate_series, in
transactions of 100,000 predictions, predictions and feedback interleaved so that part of the
feedback precedes its prediction in the log), 40/40/20 over the variants, one exposure per
subject (with its first prediction), plus 100 subjects exposed twice.

Then it times, printing progress as it goes:
1. the baseline: a join of every feedback row with its prediction and a GROUP BY variant,
   metric (median of 3);
2. a full rebuild of the `experiments` projection (target ≤ 10 s for returning subjects,
   ≤ 15 s for new subjects);
3. an incremental run after 10,000 new events (4,000 predictions, 1,000 of them for new
   subjects with their exposures, and 5,000 feedback events; target ≤ 0.5 s);
4. GET /api/v1/experiments/{key}/results through Django's test client, overall and per
   country (median of 20 calls each; target ≤ 50 ms),
and checks that the incremental numbers equal a second rebuild's (exactly). The new-subjects
scenario then folds while ingestion runs at full speed (fold_while_ingesting.py: through
gunicorn by default; target ≥ 1,000,000 events/min folded) and checks its numbers against a
rebuild again.

Environment: DATABASE_URL / REDIS_URL name the servers (else the embedded ones);
BENCH_AGGREGATE_SCALE scales the data (default 1.0); BENCH_AGGREGATE_MAX_SECONDS bounds each
scenario (default 900); BENCH_AGGREGATE_KEEP=1 keeps the databases (to EXPLAIN on them);
BENCH_AGGREGATE_INGEST and BENCH_AGGREGATE_INGEST_SECONDS: see fold_while_ingesting.py. The
machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402 - the sibling module, found through the path above
    ROOT,
    Environment,
    drop_database,
    fresh_database,
    machine_load,
)

SCENARIOS = ("returning-subjects", "new-subjects")
# The scenario this process measures; none: run each in a child process.
SCENARIO = os.environ.get("BENCH_AGGREGATE_SCENARIO", "")
NEW_SUBJECT_EACH = SCENARIO == "new-subjects"
SCALE = float(os.environ.get("BENCH_AGGREGATE_SCALE", "1.0"))
MAX_SECONDS = int(os.environ.get("BENCH_AGGREGATE_MAX_SECONDS", "900"))
# Keep the database afterwards (to EXPLAIN the projection's statements on it).
KEEP = os.environ.get("BENCH_AGGREGATE_KEEP", "") == "1"
PREDICTIONS = int(1_000_000 * SCALE)
# Prediction i is for subject i mod SUBJECTS: 5 per subject, or one each.
SUBJECTS = PREDICTIONS if NEW_SUBJECT_EACH else int(200_000 * SCALE)
FEEDBACK = PREDICTIONS // 5 if NEW_SUBJECT_EACH else PREDICTIONS
# Feedback number i is about prediction (i × stride) mod PREDICTIONS (each at most once).
FEEDBACK_STRIDE = 7 if NEW_SUBJECT_EACH else 3
TRANSACTION_ROWS = 100_000
DOUBLE_EXPOSED = 100
NEW_PREDICTIONS = 4_000
NEW_SUBJECTS = 1_000
NEW_FEEDBACK = 5_000
BASELINE_RUNS = 3
RESULTS_CALLS = 20

TARGET_REBUILD_SECONDS = 15.0 if NEW_SUBJECT_EACH else 10.0
TARGET_INCREMENTAL_SECONDS = 0.5
TARGET_RESULTS_SECONDS = 0.050
# What an earlier issue measured for the returning-subjects baseline on this machine.
REFERENCE_BASELINE_SECONDS = None if NEW_SUBJECT_EACH else 0.64

KEY = "bench-ab"
VARIANTS = ("control", "treatment", "other")
VERSIONS = ("1", "2", "3")
OCCURRED_AT = datetime.now(UTC) - timedelta(hours=2)


def say(text: str) -> None:
    print(text, flush=True)


def timed[T](action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    outcome = action()
    return time.perf_counter() - started, outcome


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Abort the run (KeyboardInterrupt-like) if it takes longer than `seconds`."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the benchmark exceeded {seconds} s (BENCH_AGGREGATE_MAX_SECONDS)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- set-up through the services --------------------------------------------------------------


def django_setup(environment: Environment) -> None:
    os.environ.update(environment.variables())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def register() -> tuple[int, dict[str, int]]:
    """Model, versions and a running experiment, through the services: (experiment id, ids)."""
    from apps.experiments import selectors as experiment_selectors
    from apps.experiments import services as experiment_services
    from apps.experiments.validation import ExperimentSpec, MetricSpec, VariantSpec
    from apps.registry import selectors as registry_selectors
    from apps.registry import services as registry_services

    actor = "bench"
    registry_services.model_create(
        name="churn",
        task="binary_classification",
        positive_label="churn",
        segment_attributes=["country", "plan"],
        actor=actor,
    )
    for version in VERSIONS:
        registry_services.model_version_register(model="churn", version=version, actor=actor)
    spec = ExperimentSpec(
        key=KEY,
        model="churn",
        variants=tuple(
            VariantSpec(key=variant, model_version=version, weight=weight)
            for variant, version, weight in zip(VARIANTS, VERSIONS, (0.4, 0.4, 0.2), strict=True)
        ),
        control="control",
        metrics=(MetricSpec(key="click", type="binomial"), MetricSpec(key="revenue", type="mean")),
        primary_metric="click",
        breakdown_attributes=("country",),
    )
    experiment_services.experiment_create(spec=spec, actor=actor)
    experiment_services.experiment_start(key=KEY, actor=actor)
    experiment = experiment_selectors.experiment_get(key=KEY)
    ids = registry_selectors.model_version_ids(pairs=[("churn", version) for version in VERSIONS])
    return experiment.id, {version: ids["churn", version] for version in VERSIONS}


# --- data straight into PostgreSQL ------------------------------------------------------------


def subject_of(prediction: str) -> str:
    """SQL: the subject number of prediction number `prediction` (5 per subject; the first
    NEW_SUBJECTS predictions after the initial log are for new subjects)."""
    return (
        f"CASE WHEN {prediction} >= {PREDICTIONS} AND {prediction} < {PREDICTIONS + NEW_SUBJECTS} "
        f"THEN {SUBJECTS} + {prediction} - {PREDICTIONS} ELSE {prediction} %% {SUBJECTS} END"
    )


def first_prediction_of(subject: str) -> str:
    """SQL: the number of a subject's first prediction (the inverse of subject_of)."""
    return (
        f"CASE WHEN {subject} < {SUBJECTS} THEN {subject} "
        f"ELSE {PREDICTIONS} + {subject} - {SUBJECTS} END"
    )


def _subject(number: str) -> str:
    """SQL (a LATERAL): subject s, its variant v (40/40/20 by s × 7919 mod 10), attributes."""
    return f"""LATERAL (
        SELECT s, CASE WHEN (s * 7919) %% 10 < 4 THEN 1 WHEN (s * 7919) %% 10 < 8 THEN 2 ELSE 3 END
                  AS v,
               jsonb_build_object('country', (ARRAY['DE','FR','US','PL','GB'])[s %% 5 + 1],
                                  'plan', (ARRAY['free','pro'])[s %% 2 + 1]) AS attributes
        FROM (SELECT {number} AS s) AS number
    ) AS subject"""  # noqa: S608 - SQL from this module's constants


PREDICTIONS_SQL = f"""
INSERT INTO ingest_prediction (id, occurred_at, model_version_id, subject, experiment, variant,
                               attributes, output_label, output_score, latency_ms, actor,
                               content_hash)
SELECT md5('p' || i)::uuid, %(at)s::timestamptz + make_interval(secs => i * 0.001),
       (%(version_ids)s::bigint[])[v], 's' || s, %(key)s, (%(variants)s::text[])[v],
       attributes, CASE WHEN i %% 3 = 0 THEN 'churn' ELSE 'stay' END, (i %% 100) / 100.0,
       5 + i %% 40, 'api_key:bench', decode(md5('hp' || i), 'hex')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i, {_subject(subject_of("i"))}
"""  # noqa: S608 - SQL from this module's constants

# One exposure per subject, recorded (as ingestion does) in its first prediction's transaction.
EXPOSURES_SQL = f"""
INSERT INTO experiments_exposure (id, occurred_at, experiment_id, subject, variant,
                                  model_version, attributes, source, prediction_id)
SELECT md5('x' || s)::uuid, %(at)s::timestamptz + make_interval(secs => s * 0.001),
       %(experiment_id)s, 's' || s, (%(variants)s::text[])[v], (%(versions)s::text[])[v],
       attributes, 'prediction', md5('p' || ({first_prediction_of("s")}))::uuid
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS number, {_subject("number")}
"""  # noqa: S608 - SQL from this module's constants

# Subjects also exposed to the next variant: results leave them out (multiple_exposures).
SECOND_EXPOSURES_SQL = f"""
INSERT INTO experiments_exposure (id, occurred_at, experiment_id, subject, variant,
                                  model_version, attributes, source)
SELECT md5('y' || s)::uuid, %(at)s, %(experiment_id)s, 's' || s,
       (%(variants)s::text[])[v %% 3 + 1], (%(versions)s::text[])[v %% 3 + 1], attributes,
       'prediction'
FROM generate_series(0, %(count)s - 1) AS number, {_subject("number")}
"""  # noqa: S608 - SQL from this module's constants


def feedback_sql(prediction: str) -> str:
    """Feedback number i about prediction number `prediction` (SQL of i): predictions in even
    blocks of SUBJECTS (a returning subject's 1st, 3rd and 5th; every initial one of new
    subjects) get a click (0/1 at 20/26/23 % by variant), the others revenue (exponential,
    mean 10)."""
    return f"""
INSERT INTO ingest_feedback (id, occurred_at, prediction_id, metric, value, actor, content_hash)
SELECT md5('f' || i)::uuid, %(at)s::timestamptz + make_interval(secs => j * 0.001 + 60),
       md5('p' || j)::uuid,
       CASE WHEN (j / {SUBJECTS}) %% 2 = 0 THEN 'click' ELSE 'revenue' END,
       CASE WHEN (j / {SUBJECTS}) %% 2 = 0
            THEN CASE WHEN (hashint8(j) & 65535) < (ARRAY[13107, 17039, 15073])[v]
                      THEN 1 ELSE 0 END
            ELSE round((-ln(((hashint8(j) & 65535) + 0.5) / 65536.0) * 10)::numeric, 2)
       END,
       'api_key:bench', decode(md5('hf' || i), 'hex')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i,
     LATERAL (SELECT {prediction} AS j) AS target, {_subject(subject_of("j"))}
"""  # noqa: S608 - SQL from this module's constants


# The initial feedback: number i is about prediction (i × stride) mod N, each at most once, in
# an order unlike the predictions' (part of it precedes its prediction in the log).
INITIAL_FEEDBACK_SQL = feedback_sql(f"(i * {FEEDBACK_STRIDE}) %% {PREDICTIONS}")
# The new feedback: 2,000 on new predictions, 3,000 on old ones.
NEW_FEEDBACK_SQL = feedback_sql(
    f"CASE WHEN i - {FEEDBACK} < 2000 THEN {PREDICTIONS} + 2 * (i - {FEEDBACK}) "
    f"ELSE ((i - {FEEDBACK}) * 7919) %% {PREDICTIONS} END"
)


def _parameters(experiment_id: int, version_ids: dict[str, int]) -> dict[str, Any]:
    return {
        "at": OCCURRED_AT,
        "key": KEY,
        "experiment_id": experiment_id,
        "variants": list(VARIANTS),
        "versions": list(VERSIONS),
        "version_ids": [version_ids[version] for version in VERSIONS],
    }


def generate(database_url: str, experiment_id: int, version_ids: dict[str, int]) -> None:
    parameters = _parameters(experiment_id, version_ids)
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        for first in range(0, PREDICTIONS, TRANSACTION_ROWS):
            last = min(first + TRANSACTION_ROWS, PREDICTIONS) - 1
            conn.execute(PREDICTIONS_SQL, {**parameters, "first": first, "last": last})
            if first < SUBJECTS:
                subjects = {**parameters, "first": first, "last": min(last, SUBJECTS - 1)}
                conn.execute(EXPOSURES_SQL, subjects)
            if first == 0:
                conn.execute(SECOND_EXPOSURES_SQL, {**parameters, "count": DOUBLE_EXPOSED})
            conn.commit()
            # The feedback in step with the predictions: the same share of each.
            feedback = (first * FEEDBACK // PREDICTIONS, (last + 1) * FEEDBACK // PREDICTIONS - 1)
            conn.execute(
                INITIAL_FEEDBACK_SQL, {**parameters, "first": feedback[0], "last": feedback[1]}
            )
            conn.commit()
            say(
                f"  {last + 1:>9,} predictions and {feedback[1] + 1:>9,} feedback events "
                f"({time.perf_counter() - started:5.1f} s)"
            )
    with psycopg.connect(database_url, autocommit=True) as conn:
        seconds, _ = timed(
            lambda: conn.execute(
                "VACUUM ANALYZE ingest_prediction, ingest_feedback, experiments_exposure"
            )
        )
    say(f"  VACUUM ANALYZE of the event tables: {seconds:.1f} s")


def add_new_events(database_url: str, experiment_id: int, version_ids: dict[str, int]) -> int:
    """The incremental batch: predictions (some for new subjects) with their exposures in one
    transaction, then feedback in another; the number of events added."""
    parameters = _parameters(experiment_id, version_ids)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            PREDICTIONS_SQL,
            {**parameters, "first": PREDICTIONS, "last": PREDICTIONS + NEW_PREDICTIONS - 1},
        )
        conn.execute(
            EXPOSURES_SQL, {**parameters, "first": SUBJECTS, "last": SUBJECTS + NEW_SUBJECTS - 1}
        )
        conn.commit()
        conn.execute(
            NEW_FEEDBACK_SQL, {**parameters, "first": FEEDBACK, "last": FEEDBACK + NEW_FEEDBACK - 1}
        )
        conn.commit()
    return NEW_PREDICTIONS + NEW_SUBJECTS + NEW_FEEDBACK


def source_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ingest_prediction) + (SELECT count(*) FROM "
            "ingest_feedback) + (SELECT count(*) FROM experiments_exposure)"
        ).fetchone()
    assert row is not None  # noqa: S101 - a SELECT of scalars
    return int(row[0])


# --- measurements -----------------------------------------------------------------------------

BASELINE_SQL = """
SELECT p.variant, f.metric, count(*), avg(f.value), var_samp(f.value)
FROM ingest_feedback f JOIN ingest_prediction p ON p.id = f.prediction_id
GROUP BY p.variant, f.metric
"""


def baseline(database_url: str) -> float:
    """Median time of the join + GROUP BY over every feedback row (after one warm-up run)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(BASELINE_SQL).fetchall()
        runs = [timed(lambda: conn.execute(BASELINE_SQL).fetchall())[0] for _ in range(3)]
    return statistics.median(runs)


def projection_state() -> dict[str, Any]:
    """The A/B projection's rows: per-subject values and summary exactly, statistics as floats."""
    from django.db import connection

    found: dict[str, Any] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(value), md5(string_agg(experiment_key || '/' || metric || '/' "
            "|| subject || '=' || value::text, ',' ORDER BY experiment_key, metric, subject)) "
            "FROM analytics_subjectmetricvalue"
        )
        found["values"] = cursor.fetchone()
        cursor.execute(
            "SELECT experiment_key, units::text, multiple_exposures "
            "FROM analytics_experimentsummary"
        )
        found["summary"] = cursor.fetchall()
        cursor.execute(
            "SELECT experiment_key, metric, attribute, coalesce(attribute_value, '<absent>'), "
            "variant, units, mean, variance FROM analytics_variantmetricstats "
            "ORDER BY 1, 2, 3, 4, 5"
        )
        found["stats"] = cursor.fetchall()
    return found


def same_numbers(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Counts and numeric sums exactly; float means and variances to 1e-12 relative."""
    if first["values"] != second["values"] or first["summary"] != second["summary"]:
        return False
    if len(first["stats"]) != len(second["stats"]):
        return False
    for one, other in zip(first["stats"], second["stats"], strict=True):
        if one[:6] != other[:6]:
            return False
        for a, b in zip(one[6:], other[6:], strict=True):
            if (a is None) != (b is None) or (
                a is not None and abs(a - b) > 1e-12 * max(abs(a), abs(b), 1e-300)
            ):
                return False
    return True


def results_medians() -> dict[str, float]:
    """Median seconds of GET …/results (overall, per country) through Django's test client."""
    from django.test import Client

    from apps.accounts import services as account_services

    _, raw = account_services.api_key_create(application="bench", name="results", scopes=["read"])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    medians = {}
    path = f"/api/v1/experiments/{KEY}/results"
    for label, query in (("overall", {}), ("per country", {"segment": "country"})):

        def call(query: dict[str, str] = query) -> None:
            response = client.get(path, query)
            if response.status_code != 200:
                raise RuntimeError(f"results answered {response.status_code}: {response.content!r}")

        for _ in range(2):  # warm-up: the first calls load code and caches
            call()
        medians[label] = statistics.median(timed(call)[0] for _ in range(RESULTS_CALLS))
    body = client.get(f"/api/v1/experiments/{KEY}/results").json()
    click = next(metric for metric in body["metrics"] if metric["metric"] == "click")
    rates = ", ".join(
        f"{entry['variant']} {entry['units']:,} units, click {entry['mean']:.4f}"
        for entry in click["variants"]
    )
    say(f"  results: {rates}; multiple exposures {body['multiple_exposures']}")
    return medians


# --- the run ----------------------------------------------------------------------------------


def measure(environment: Environment) -> int:
    from apps.analytics import services

    progress_started = time.perf_counter()

    def progress(name: str, folded: int) -> None:
        say(f"  {name}: {folded:,} events folded ({time.perf_counter() - progress_started:.1f} s)")

    say("registering model churn 1-3 and experiment bench-ab through the services")
    experiment_id, version_ids = register()
    say(f"generating {PREDICTIONS:,} predictions, {FEEDBACK:,} feedback over {SUBJECTS:,} subjects")
    generate(environment.database_url, experiment_id, version_ids)
    events = source_events(environment.database_url)

    say("baseline: join + GROUP BY over every feedback row")
    base_seconds = baseline(environment.database_url)
    measured = f" (an earlier issue measured {REFERENCE_BASELINE_SECONDS} s)"
    say(f"  {base_seconds:.3f} s{measured if REFERENCE_BASELINE_SECONDS else ''}")

    say(f"full rebuild of the experiments projection ({events:,} events)")
    progress_started = time.perf_counter()
    rebuild_seconds, folded = timed(
        lambda: services.projection_rebuild(name="experiments", progress=progress)
    )
    say(f"  {rebuild_seconds:.2f} s for {folded:,} events")

    added = add_new_events(environment.database_url, experiment_id, version_ids)
    say(f"incremental run after {added:,} new events")
    progress_started = time.perf_counter()
    incremental_seconds, report = timed(
        lambda: services.aggregations_run(names=["experiments"], progress=progress)
    )
    incremental_folded = report["projections"]["experiments"]["folded"]
    say(f"  {incremental_seconds:.3f} s for {incremental_folded:,} events")
    incremental = projection_state()

    say("results endpoint (Django test client)")
    medians = results_medians()
    for label, seconds in medians.items():
        say(f"  {label}: median {seconds * 1000:.1f} ms of {RESULTS_CALLS} calls")

    say("check: a second rebuild gives the incremental numbers")
    progress_started = time.perf_counter()
    services.projection_rebuild(name="experiments", progress=progress)
    exact = same_numbers(incremental, projection_state())
    say(f"  {'equal' if exact else 'DIFFERENT'}")

    say(f"figures ({machine_load()}; baseline {base_seconds:.3f} s):")
    for label, seconds, target in (
        ("rebuild", rebuild_seconds, TARGET_REBUILD_SECONDS),
        ("incremental", incremental_seconds, TARGET_INCREMENTAL_SECONDS),
        ("results", medians["overall"], TARGET_RESULTS_SECONDS),
        ("per country", medians["per country"], TARGET_RESULTS_SECONDS),
    ):
        say(
            f"  {label:<12} {seconds:8.3f} s = {seconds / base_seconds:6.3f} × baseline "
            f"(target {target:g} s{reference(target)}): {'met' if seconds <= target else 'MISSED'}"
        )
    if incremental_folded != added or folded != events:
        say(f"folded {folded:,}/{events:,} and {incremental_folded:,}/{added:,}: NOT every event")
        return 1
    if not exact:
        return 1
    return fold_while_ingesting(environment) if NEW_SUBJECT_EACH else 0


def reference(target: float) -> str:
    """The target as a multiple of the baseline an earlier issue measured, when there is one."""
    if REFERENCE_BASELINE_SECONDS is None:
        return ""
    return f" = {target / REFERENCE_BASELINE_SECONDS:.2f} × {REFERENCE_BASELINE_SECONDS} s"


def fold_while_ingesting(environment: Environment) -> int:
    """Incremental folds under full-speed ingestion, then a rebuild to check their numbers."""
    import fold_while_ingesting as phase

    from apps.analytics import services

    say(
        f"folding while ingesting for {phase.SECONDS:g} s "
        f"({phase.MODE}: {'gunicorn, 2 workers' if phase.MODE == 'http' else 'ingest services'})"
    )
    figures = phase.measure(environment, KEY)
    figures.show()
    if figures.error:
        say(f"  a client failed: {figures.error}")
        return 1
    incremental = projection_state()
    say("check: a rebuild gives the numbers folded while ingesting")
    services.projection_rebuild(name="experiments")
    exact = same_numbers(incremental, projection_state())
    say(f"  {'equal' if exact else 'DIFFERENT'}")
    return 0 if exact else 1


def run_scenarios() -> int:
    """Each scenario in a child process (a database and settings of its own); the worst code."""
    worst = 0
    for scenario in SCENARIOS:
        say(f"== scenario {scenario}")
        done = subprocess.run(  # noqa: S603 - this script, our interpreter
            [sys.executable, __file__],
            env={**os.environ, "BENCH_AGGREGATE_SCENARIO": scenario},
            check=False,
        )
        worst = max(worst, done.returncode)
    return worst


def main() -> int:
    if not SCENARIO:
        return run_scenarios()
    if SCENARIO not in SCENARIOS:
        say(f"BENCH_AGGREGATE_SCENARIO must be one of {', '.join(SCENARIOS)}, not {SCENARIO!r}")
        return 2
    say(f"before: {machine_load()}")
    environment = fresh_database(f"kaizen_bench_aggregate_{SCENARIO.replace('-', '_')}")
    try:
        django_setup(environment)
        with deadline(MAX_SECONDS):
            return measure(environment)
    finally:
        from django.db import connections

        connections.close_all()
        if KEEP:
            say(f"kept the database: {environment.database_url}")
        else:
            drop_database(environment)
        say(f"after:  {machine_load()}")


if __name__ == "__main__":
    sys.exit(main())

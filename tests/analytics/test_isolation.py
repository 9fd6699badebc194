"""One bad thing stays one bad thing: poisoned events, failing folds, busy and slow folds.

Events written straight into the tables (as a database from before the bounds, or a writer
around the API, may hold them) are left out and counted; a projection, an experiment or a
model whose fold fails is recorded, shown in /readyz and /metrics, retried with backoff, and
never stops the others; a projection folded elsewhere is skipped at once by a scheduled run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.analytics import services
from apps.analytics.models import ProjectionHealth, ProjectionState, UnitFailure
from apps.analytics.projections import base, health, runner
from apps.analytics.projections.base import FoldOutcome, Window
from apps.analytics.projections.experiments import ExperimentProjection, experiment_projection
from apps.analytics.projections.performance import PerformanceProjection, performance_projection
from apps.ingest import selectors as ingest_selectors
from apps.registry.models import MLModel, ModelVersion
from tests.conftest import strict_json

from . import test_performance as perf
from .conftest import World, populate
from .test_projection_deltas import assert_matches_raw_values, tables

pytestmark = pytest.mark.django_db(transaction=True)

# --- rows written around the API ---------------------------------------------------------------


def store_prediction(
    model: str,
    version: str,
    *,
    latency_ms: float | None = None,
    score: float | None = None,
    value: float | None = None,
    label: str | None = "churn",
    tag: tuple[str, str, str] | None = None,
) -> str:
    """A prediction row inserted without validation; its id. `tag`: experiment, variant,
    subject."""
    version_id = ModelVersion.objects.get(model__name=model, version=version).pk
    identifier = uuid.uuid4()
    experiment, variant, subject = tag or (None, None, None)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_prediction (id, occurred_at, model_version_id, subject, "
            "experiment, variant, output_label, output_score, output_value, latency_ms, actor, "
            "content_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'tests', %s)",
            [
                identifier,
                perf.at(1),
                version_id,
                subject,
                experiment,
                variant,
                label,
                score,
                value,
                latency_ms,
                b"0" * 16,
            ],
        )
    return str(identifier)


def store_feedback(prediction_id: str, metric: str, value: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_feedback (id, occurred_at, prediction_id, metric, value, actor, "
            "content_hash) VALUES (%s, %s, %s, %s, %s, 'tests', %s)",
            [uuid.uuid4(), perf.at(1), prediction_id, metric, value, b"0" * 16],
        )


def assert_json(response: Any) -> Any:
    assert response.status_code == 200, response.content[:500]
    return strict_json(response.content)


def run(client: Any) -> dict[str, Any]:
    return assert_json(client.post("/api/v1/aggregations/run"))


# --- poisoned events ----------------------------------------------------------------------------


def test_poisoned_events__left_out_and_counted__every_read_and_rebuild_unharmed(world: World):
    # Given an experiment with ordinary traffic
    populate(world, subjects=60, seed=61)
    # And a tagged prediction whose feedback was stored with values no sum survives
    tagged = world.predict("poisoned-subject", "control", "DE")
    world.post("/api/v1/predictions", [tagged])
    for value in (1e308, 1e308, float("nan"), float("-inf")):
        store_feedback(tagged["id"], "revenue", value)
    # And predictions of the model with extreme numbers in every field the projections read
    poisoned = [
        store_prediction("churn", "1", latency_ms=float("inf")),
        store_prediction("churn", "1", latency_ms=float("nan")),
        store_prediction("churn", "2", score=1e308),
        store_prediction("churn", "2", label=None, value=-1e308),
        store_prediction("churn", "3", latency_ms=-5.0),
    ]
    # When the projections fold
    report = run(world.admin)
    # Then both are up to date, and the results equal the ordinary traffic's raw values
    assert {name: entry["status"] for name, entry in report["projections"].items()} == {
        "experiments": "up_to_date",
        "performance": "up_to_date",
    }
    assert_matches_raw_values(world)
    results = assert_json(world.admin.get(f"/api/v1/experiments/{world.key}/results"))
    assert results["excluded_events"] == 4
    assert results["warning"] is None
    # And performance counts every ordinary prediction and leaves the poisoned ones out
    body = assert_json(world.admin.get("/api/v1/models/churn/performance"))
    ordinary = sum(len(subjects) for subjects in world.exposures.values())  # one per exposure
    assert sum(row["excluded_events"] for row in body["results"]) == len(poisoned)
    assert sum(row["count"] for row in body["results"]) >= ordinary
    # And /readyz is ready (excluded events are not a failure) and counts them
    ready = assert_json(world.admin.get("/readyz"))
    assert ready["status"] == "ready"
    assert ready["projections"]["experiments"]["excluded_events"] == 4
    assert ready["projections"]["performance"]["excluded_events"] == len(poisoned) + 4
    # And every event reads back as JSON, alone and in the feed
    for identifier in poisoned:
        assert_json(world.admin.get(f"/api/v1/predictions/{identifier}"))
    cursor, seen = "", 0
    while True:
        page = assert_json(world.admin.get(f"/api/v1/events?limit=500{cursor}"))
        if not page["results"]:
            break
        seen += len(page["results"])
        cursor = f"&after={page['next_cursor']}"
    assert seen > len(poisoned)
    # And a rebuild leaves the same events out: the same numbers
    folded = (tables(), perf.snapshot())
    for name in ("experiments", "performance"):
        services.projection_rebuild(name=name)
    assert (tables(), perf.snapshot()) == folded


# --- a projection that fails --------------------------------------------------------------------


class Broken:
    """A projection whose folds fail (division by zero) while `failing` is set."""

    name = "broken"
    sources: tuple[str, ...] = (ingest_selectors.PREDICTION_LOG,)
    version = 1

    def __init__(self) -> None:
        self.failing = True
        self.folds = 0

    def fold(self, cursor: Any, window: Window) -> FoldOutcome:
        self.folds += 1
        cursor.execute("SELECT 1 / %s", [0 if self.failing else 1])
        return FoldOutcome()

    def reset(self, cursor: Any) -> None:
        pass


@pytest.fixture
def broken() -> Iterator[Broken]:
    projection = base.register(Broken())
    yield projection
    base.unregister(projection.name)


def metric_value(client: Any, name: str, projection: str) -> float | None:
    text = client.get("/metrics").content.decode()
    prefix = f'{name}{{projection="{projection}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def retry_now(model: Any, **filters: Any) -> None:
    model.objects.filter(**filters).update(retry_at=timezone.now() - timedelta(seconds=1))


def test_projection_failing__others_advance__readyz_degraded_metrics_and_backoff(
    world: World, broken: Broken
):
    # Given events for every projection
    populate(world, subjects=30, seed=62)
    # When a run meets a projection whose fold fails
    report = run(world.admin)
    # Then the others are up to date and the failure is reported, not raised
    statuses = {name: entry["status"] for name, entry in report["projections"].items()}
    assert statuses == {
        "experiments": "up_to_date",
        "performance": "up_to_date",
        "broken": "failing",
    }
    assert "division by zero" in report["projections"]["broken"]["error"]
    assert "rules" in report
    assert_matches_raw_values(world)
    # And /readyz stays 200 but is degraded, naming the projection and its error
    ready = assert_json(world.admin.get("/readyz"))
    assert ready["status"] == "degraded"
    assert any("projection broken is failing" in problem for problem in ready["problems"])
    assert ready["projections"]["broken"]["status"] == "failing"
    assert ready["projections"]["broken"]["failed_window"]
    # And /metrics shows it failing, with one failure counted
    assert metric_value(world.admin, "kaizen_projection_failing", "broken") == 1.0
    assert metric_value(world.admin, "kaizen_projection_failures_total", "broken") == 1.0
    # When runs come again within its backoff
    folds = broken.folds
    run(world.admin)
    # Then it is not tried again before its time
    assert broken.folds == folds
    assert ProjectionHealth.objects.get(name="broken").failures == 1
    # When its time comes and the cause is gone
    broken.failing = False
    retry_now(ProjectionHealth, name="broken")
    report = run(world.admin)
    # Then it folds, and /readyz is ready again
    assert report["projections"]["broken"]["status"] == "up_to_date"
    assert assert_json(world.admin.get("/readyz"))["status"] == "ready"
    assert metric_value(world.admin, "kaizen_projection_failing", "broken") == 0.0
    state = ProjectionState.objects.get(name="broken")
    assert state.events_folded > 0


# --- one experiment, one model ------------------------------------------------------------------


def second_experiment(world: World) -> str:
    key = f"second-{uuid.uuid4().hex[:6]}"
    response = world.admin.post(
        "/api/v1/experiments",
        {
            "key": key,
            "model": "churn",
            "variants": [
                {"key": "control", "model_version": "1", "weight": 0.4},
                {"key": "treatment", "model_version": "2", "weight": 0.4},
                {"key": "other", "model_version": "3", "weight": 0.2},
            ],
            "control": "control",
            "metrics": [{"key": "click", "type": "binomial"}],
            "primary_metric": "click",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert world.admin.post(f"/api/v1/experiments/{key}/start").status_code == 200
    return key


def test_experiment_failing__others_folded__warned_then_recomputed_like_a_rebuild(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    # Given two experiments, and the statistics of the first failing to update
    other = World(admin=world.admin, key=second_experiment(world), variants=world.variants)
    original = ExperimentProjection.recompute

    def failing(self: Any, cursor: Any, *, experiment_key: str) -> None:
        if experiment_key == world.key:
            cursor.execute("SELECT 1 / 0")
        original(self, cursor, experiment_key=experiment_key)

    monkeypatch.setattr(ExperimentProjection, "recompute", failing)
    populate(world, subjects=40, seed=63)
    populate(other, subjects=40, seed=64)
    # When the projection folds
    report = run(world.admin)
    # Then the projection is up to date, the other experiment exact
    assert report["projections"]["experiments"]["status"] == "up_to_date"
    assert_matches_raw_values(other)
    assert (
        assert_json(world.admin.get(f"/api/v1/experiments/{other.key}/results"))["warning"] is None
    )
    # And the failing one says its figures are stale, and why
    results = assert_json(world.admin.get(f"/api/v1/experiments/{world.key}/results"))
    assert "division by zero" in results["warning"]
    failure = UnitFailure.objects.get(projection="experiments", unit=world.key)
    assert failure.attempts == 1
    ready = assert_json(world.admin.get("/readyz"))
    assert ready["status"] == "degraded"
    assert any(f"experiment {world.key} is failing" in p for p in ready["problems"])
    # When more traffic comes while it waits, then the cause goes and its time comes
    populate(world, subjects=20, seed=65)
    populate(other, subjects=20, seed=66)
    run(world.admin)
    assert UnitFailure.objects.filter(unit=world.key).get().attempts == 1  # not due yet
    monkeypatch.setattr(ExperimentProjection, "recompute", original)
    retry_now(UnitFailure, unit=world.key)
    run(world.admin)
    # Then it is recomputed from the log: exact, no warning, equal to a rebuild
    assert not UnitFailure.objects.exists()
    assert_matches_raw_values(world)
    assert_matches_raw_values(other)
    assert assert_json(world.admin.get("/readyz"))["status"] == "ready"
    folded = tables()
    services.projection_rebuild(name="experiments")
    assert tables() == folded


def test_model_failing__other_models_folded__refolded_when_due(
    admin: Any, monkeypatch: pytest.MonkeyPatch
):
    # Given two models, and one whose performance cannot be folded
    good = perf.register(admin, "good", "binary_classification")
    bad = perf.register(admin, "bad", "regression")
    bad_id = MLModel.objects.get(name="bad").pk
    original = PerformanceProjection._fold_predictions

    def failing(self: Any, cursor: Any, ids: str, params: dict[str, Any]) -> None:
        if params.get("only_model") in (None, bad_id) and bad_id not in params["skip_models"]:
            cursor.execute("SELECT 1 / 0")
        original(self, cursor, ids, params)

    monkeypatch.setattr(PerformanceProjection, "_fold_predictions", failing)
    perf.populate(good, predictions=80, seed=67)
    perf.populate(bad, predictions=80, seed=68)
    # When the projection folds
    report = run(admin)
    # Then it is up to date, the good model exact, the bad one recorded and warned about
    assert report["projections"]["performance"]["status"] == "up_to_date"
    perf.assert_matches(good)
    assert perf.performance(admin, "good")["warning"] is None
    assert "division by zero" in perf.performance(admin, "bad")["warning"]
    assert UnitFailure.objects.get(projection="performance").label == "model bad"
    # When its time comes and the cause is gone
    monkeypatch.setattr(PerformanceProjection, "_fold_predictions", original)
    retry_now(UnitFailure, projection="performance")
    perf.populate(bad, predictions=20, seed=69)
    run(admin)
    # Then it is refolded from the log, exact, like a rebuild
    assert not UnitFailure.objects.exists()
    perf.assert_matches(bad)
    perf.assert_matches(good)
    folded = perf.snapshot()
    services.projection_rebuild(name="performance")
    assert perf.snapshot() == folded


@pytest.fixture
def admin(make_client: Any) -> Any:
    return make_client("ingest", "read", "manage")


# --- busy, slow and outdated projections --------------------------------------------------------


def hold(name: str) -> psycopg.Connection[Any]:
    """Another session holding the projection's row, as a fold in progress does."""
    from .test_workers import connect

    holder = connect()
    holder.execute(
        "INSERT INTO analytics_projectionstate (name, xid, seq, events_folded) "
        "VALUES (%s, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
        [name],
    )
    holder.commit()
    holder.execute("SELECT 1 FROM analytics_projectionstate WHERE name = %s FOR UPDATE", [name])
    return holder


def test_projection_busy__scheduled_run_skips_it_at_once__run_endpoint_503_past_its_bound(
    world: World,
):
    # Given events, and the experiments projection being folded by another session
    populate(world, subjects=20, seed=70)
    holder = hold("experiments")
    try:
        # When a scheduled run comes
        report = services.aggregations_run()
        # Then it skips that projection without waiting, counts the skip, folds the other
        assert report["projections"]["experiments"] == {"folded": 0, "status": "skipped"}
        assert report["projections"]["performance"]["status"] == "up_to_date"
        assert ProjectionHealth.objects.get(name="experiments").skipped_triggers == 1
        assert (
            metric_value(world.admin, "kaizen_projection_skipped_triggers_total", "experiments")
            == 1.0
        )
        # And the run endpoint waits for it no longer than its bound, then answers 503
        with override_settings(KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS=1):
            response = world.admin.post("/api/v1/aggregations/run")
        assert response.status_code == 503
        assert int(response["Retry-After"]) > 0
        body = response.json()["error"]
        assert body["code"] == "unavailable"
        assert body["details"] == [
            {"field": "projections.experiments", "message": "busy after 1 s"}
        ]
    finally:
        holder.close()
    # When the other session is done
    report = run(world.admin)
    # Then the run folds it
    assert report["projections"]["experiments"]["status"] == "up_to_date"
    assert_matches_raw_values(world)


class Slow:
    """A projection whose fold of more than `limit` events sleeps past any budget."""

    name = "slow"
    sources: tuple[str, ...] = (ingest_selectors.PREDICTION_LOG,)
    version = 1
    limit = 1_500

    def fold(self, cursor: Any, window: Window) -> FoldOutcome:
        cursor.execute(
            "SELECT count(*) FROM ingest_prediction p WHERE " + base.in_window("p"),  # noqa: S608 - a constant fragment
            window.params(),
        )
        if cursor.fetchone()[0] > self.limit:
            cursor.execute("SELECT pg_sleep(5)")
        return FoldOutcome()

    def reset(self, cursor: Any) -> None:
        pass


@override_settings(KAIZEN_FOLD_TIMEOUT_SECONDS=1)
def test_fold_past_its_budget__rolled_back__retried_in_smaller_windows(world: World):
    # Given 5,000 events and a window of 4,000 that would take longer than the budget
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_prediction (id, occurred_at, model_version_id, output_score, "
            "actor, content_hash) SELECT gen_random_uuid(), now(), %s, 0.5, 'tests', "
            "'\\x00'::bytea FROM generate_series(1, 5000)",
            [ModelVersion.objects.filter(model__name="churn").earliest("pk").pk],
        )
    projection = base.register(Slow())
    try:
        health.health_get("slow")
        ProjectionHealth.objects.filter(name="slow").update(chunk=4_000)
        # When it catches up
        folded = runner.catch_up(projection)
    finally:
        base.unregister("slow")
    # Then the long window was rolled back once and every event folded in smaller ones
    state = ProjectionHealth.objects.get(name="slow")
    assert state.timeouts == 1
    assert state.chunk <= Slow.limit
    assert folded == 5_000
    assert ProjectionState.objects.get(name="slow").events_folded == 5_000


def test_projection_of_another_code_version__rebuilt_to_the_log(world: World):
    # Given aggregates built by an earlier version of the projection's code, now wrong
    populate(world, subjects=40, seed=71)
    runner.catch_up(experiment_projection)
    runner.catch_up(performance_projection)
    expected = (tables(), perf.snapshot())
    ProjectionState.objects.update(version=1)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE analytics_variantmetricstats SET units = units + 5")
        cursor.execute("UPDATE analytics_performancecell SET predictions = predictions + 5")
    # When the projections fold again
    runner.catch_up(experiment_projection)
    runner.catch_up(performance_projection)
    # Then they were rebuilt from the log under the current version
    assert (tables(), perf.snapshot()) == expected
    assert set(ProjectionState.objects.values_list("version", flat=True)) == {2}
    assert_matches_raw_values(world)


# --- window sizing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "events", "seconds", "expected"),
    [
        # A full window at 10,000 events/s: sized for the 5 s target.
        (20_000, 20_000, 2.0, 50_000),
        # Growth and shrinkage are at most 4× per fold.
        (10_000, 10_000, 0.01, 40_000),
        (100_000, 100_000, 100.0, 25_000),
        # A window that found fewer events than it could hold says nothing of the rate...
        (100_000, 300, 0.01, 100_000),
        # ...unless it was slow.
        (100_000, 50_000, 20.0, 25_000),
        # Never below the minimum nor above the maximum.
        (1_000, 1_000, 60.0, health.MIN_CHUNK),
        (4_000_000, 4_000_000, 0.5, health.MAX_CHUNK),
    ],
)
def test_next_chunk__measured_rate__sized_for_the_target(chunk, events, seconds, expected):
    assert health.next_chunk(chunk=chunk, events=events, seconds=seconds, target=5.0) == expected


def test_run__deadline_passed__no_fold_starts(world: World):
    populate(world, subjects=10, seed=72)
    report = services.aggregations_run(max_seconds=0)
    assert {entry["status"] for entry in report["projections"].values()} == {"behind"}
    assert not ProjectionState.objects.filter(events_folded__gt=0).exists()

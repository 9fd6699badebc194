"""The A/B projection: exact numbers, exactly once, whatever the order of arrival or crashes."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
from django.db import connection, connections
from scipy import stats as scipy_stats

from apps.analytics import services, tasks
from apps.analytics.models import ExperimentSummary, SubjectMetricValue, VariantMetricStats
from apps.analytics.projections import runner
from apps.analytics.projections.experiments import ExperimentProjection, experiment_projection

from .conftest import World, populate

pytestmark = pytest.mark.django_db(transaction=True)


class WorkerKilled(BaseException):
    """A worker dying mid-fold: nothing in Kaizen catches it (as nothing can catch SIGKILL)."""


def snapshot() -> tuple[list[tuple], list[tuple], list[tuple]]:
    values = sorted(
        SubjectMetricValue.objects.values_list("experiment_key", "metric", "subject", "value")
    )
    stats = sorted(
        VariantMetricStats.objects.values_list(
            "experiment_key",
            "metric",
            "attribute",
            "attribute_value",
            "variant",
            "units",
            "mean",
            "variance",
        ),
        key=repr,
    )
    summary = sorted(
        ExperimentSummary.objects.values_list("experiment_key", "units", "multiple_exposures"),
        key=repr,
    )
    return values, stats, summary


def results(world: World, segment: str | None = None) -> dict:
    path = f"/api/v1/experiments/{world.key}/results"
    response = world.admin.get(path, {"segment": segment} if segment else {})
    assert response.status_code == 200, response.json()
    return response.json()


def test_results__random_experiment__match_numpy_and_scipy_on_raw_values(world):
    # Given 300 subjects over three variants, one of them also exposed to a second variant
    populate(world, subjects=300, seed=1)
    doubled = world.predict(
        "s1-0", "other" if world.exposures["s1-0"][0] != "other" else "control", "DE"
    )
    world.post("/api/v1/predictions", [doubled])
    # When the aggregation runs
    assert world.admin.post("/api/v1/aggregations/run").status_code == 200
    body = results(world)
    # Then units, means, variances and Welch p-values equal the raw computation
    units = world.units()
    assert body["multiple_exposures"] == 1, (body, world.exposures["s1-0"])
    assert body["srm"]["units"] == {variant: len(units[variant]) for variant in world.variants}
    for metric in body["metrics"]:
        binomial = metric["type"] == "binomial"
        control = np.array(world.values("control", metric["metric"], binomial))
        for entry in metric["variants"]:
            raw = np.array(world.values(entry["variant"], metric["metric"], binomial))
            assert entry["units"] == raw.size
            assert entry["mean"] == pytest.approx(raw.mean(), rel=1e-9)
            assert entry["variance"] == pytest.approx(raw.var(ddof=1), rel=1e-9)
            if entry["variant"] != "control":
                expected = scipy_stats.ttest_ind(raw, control, equal_var=False).pvalue
                assert entry["p_value"] == pytest.approx(expected, rel=1e-9)
                assert entry["absolute_difference"] == pytest.approx(
                    raw.mean() - control.mean(), rel=1e-9
                )
    weights = np.array([0.4, 0.4, 0.2])
    observed = np.array([len(units[variant]) for variant in world.variants])
    expected_srm = scipy_stats.chisquare(observed, observed.sum() * weights).pvalue
    assert body["srm"]["p_value"] == pytest.approx(expected_srm, rel=1e-9)


def test_results__segment__values_from_first_exposure_attributes(world):
    # Given subjects in three countries
    populate(world, subjects=200, seed=2)
    world.admin.post("/api/v1/aggregations/run")
    # When the results are broken down by country
    body = results(world, segment="country")
    # Then each country's figures are those of its subjects alone
    assert body["segment"] == "country"
    assert sorted(value["value"] for value in body["values"]) == ["DE", "FR", "US"]
    for value in body["values"]:
        click = next(m for m in value["metrics"] if m["metric"] == "click")
        for entry in click["variants"]:
            raw = np.array(world.values(entry["variant"], "click", True, country=value["value"]))
            assert entry["units"] == raw.size
            if raw.size:
                assert entry["mean"] == pytest.approx(raw.mean(), rel=1e-9)


def test_results__segment_not_a_breakdown_attribute__400_and_unknown_experiment_404(world):
    response = world.admin.get(f"/api/v1/experiments/{world.key}/results", {"segment": "plan"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert world.admin.get("/api/v1/experiments/nope/results").status_code == 404


def test_fold__incremental_in_small_windows__equals_one_rebuild(world):
    # Given events folded in many small windows as they arrived
    populate(world, subjects=60, seed=3)
    while runner.fold_next(experiment_projection, chunk=37):
        pass
    populate(world, subjects=60, seed=4)
    while runner.fold_next(experiment_projection, chunk=53):
        pass
    incremental = snapshot()
    # When the projection is rebuilt from the log
    services.projection_rebuild(name="experiments")
    # Then every aggregate is exactly the same
    assert snapshot() == incremental
    assert incremental[0], "the world produced per-subject values"


def test_fold__crash_after_partial_work__rerun_counts_once(world, monkeypatch):
    # Given a run that dies after writing the per-subject values, before the watermark
    populate(world, subjects=80, seed=5)
    original = ExperimentProjection.recompute

    def crash(self, cursor, *, experiment_key):
        raise WorkerKilled

    monkeypatch.setattr(ExperimentProjection, "recompute", crash)
    with pytest.raises(WorkerKilled):
        runner.catch_up(experiment_projection)
    # Then nothing of it stayed
    assert snapshot() == ([], [], [])
    # When the next run goes through
    monkeypatch.setattr(ExperimentProjection, "recompute", original)
    runner.catch_up(experiment_projection)
    after_crash = snapshot()
    # Then the numbers are those of a clean rebuild
    services.projection_rebuild(name="experiments")
    assert snapshot() == after_crash


def test_aggregate_task__run_twice__second_changes_nothing(world):
    populate(world, subjects=50, seed=6)
    tasks.aggregate.apply()
    first = snapshot()
    report = tasks.aggregate.apply().get()
    assert report["projections"]["experiments"]["folded"] == 0
    assert snapshot() == first


def test_fold__writer_commits_out_of_sequence_order__no_event_skipped(world):
    # Given a prediction whose transaction takes a sequence number, then commits last
    populate(world, subjects=5, seed=7)
    runner.catch_up(experiment_projection)
    before = {variant: len(subjects) for variant, subjects in world.units().items()}
    settings = connection.settings_dict
    import psycopg

    params = {
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
        "user": settings["USER"],
        "dbname": settings["NAME"],
    }
    params = {key: value for key, value in params.items() if value}
    with psycopg.connect(**params) as first, psycopg.connect(**params) as second:
        insert = (
            "INSERT INTO experiments_exposure (id, occurred_at, experiment_id, subject, variant, "
            "model_version, attributes, source) SELECT %s, now(), id, %s, %s, %s, %s, 'assignment' "
            "FROM experiments_experiment WHERE key = %s"
        )
        first.execute(
            insert, [uuid.uuid4(), "late-subject", "treatment", "2", '{"country": "DE"}', world.key]
        )
        second.execute(
            insert, [uuid.uuid4(), "early-subject", "control", "1", '{"country": "FR"}', world.key]
        )
        second.commit()
        # When the projection runs while the first writer is still open
        runner.catch_up(experiment_projection)
        first.commit()
    runner.catch_up(experiment_projection)
    # Then both exposures count, once
    summary = ExperimentSummary.objects.get(experiment_key=world.key)
    assert summary.units == {
        **before,
        "treatment": before["treatment"] + 1,
        "control": before["control"] + 1,
    }


def test_fold__two_runners_at_once__no_double_counting(world):
    # Given plenty of events and two runners folding concurrently
    populate(world, subjects=150, seed=8)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.catch_up(experiment_projection, chunk=50, wait_busy=True)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    concurrent = snapshot()
    # Then the numbers equal a rebuild
    services.projection_rebuild(name="experiments")
    assert snapshot() == concurrent


def test_readyz__events_not_folded__reports_projection_lag(world, anonymous):
    populate(world, subjects=10, seed=9)
    lag = anonymous.get("/readyz").json()["projections"]["experiments"]
    assert lag["events_behind"] > 0
    runner.catch_up(experiment_projection)
    assert anonymous.get("/readyz").json()["projections"]["experiments"]["events_behind"] == 0

"""The A/B projection folds by deltas: units that leave, values that change, stale statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from apps.analytics import services
from apps.analytics.models import ExperimentSummary, VariantMetricStats
from apps.analytics.projections import runner
from apps.analytics.projections.experiments import experiment_projection

from .conftest import World, populate

pytestmark = pytest.mark.django_db(transaction=True)


def tables() -> dict[str, list[tuple[Any, ...]]]:
    stats = VariantMetricStats.objects.values_list(
        "experiment_key",
        "metric",
        "attribute",
        "attribute_value",
        "variant",
        "units",
        "total",
        "total_squares",
        "mean",
        "variance",
    )
    summary = ExperimentSummary.objects.values_list(
        "experiment_key", "units", "multiple_exposures", "configuration"
    )
    return {"stats": sorted(stats, key=repr), "summary": sorted(summary, key=repr)}


def assert_matches_raw_values(world: World) -> None:
    body = world.admin.get(f"/api/v1/experiments/{world.key}/results").json()
    units = world.units()
    multiple = sum(1 for seen in world.exposures.values() if len(seen) > 1)
    assert body["multiple_exposures"] == multiple
    assert body["srm"]["units"] == {variant: len(subjects) for variant, subjects in units.items()}
    for metric in body["metrics"]:
        for entry in metric["variants"]:
            raw = np.array(
                world.values(entry["variant"], metric["metric"], metric["type"] == "binomial")
            )
            assert entry["units"] == raw.size
            if raw.size:
                assert entry["mean"] == pytest.approx(raw.mean(), rel=1e-9)
            if raw.size > 1:
                assert entry["variance"] == pytest.approx(raw.var(ddof=1), rel=1e-9)


def test_fold__units_exposed_to_a_second_variant_later__leave_their_groups_as_in_a_rebuild(world):
    # Given units folded with their feedback
    populate(world, subjects=40, seed=31)
    runner.catch_up(experiment_projection)
    # When three of them meet another variant (one with new feedback) in later windows
    moved = []
    for number in range(3):
        subject = f"s31-{number}"
        other = next(v for v in world.variants if v not in world.exposures[subject])
        moved.append(world.predict(subject, other, world.attributes[subject]["country"]))
    world.post("/api/v1/predictions", moved)
    world.post("/api/v1/feedback", [world.feedback(moved[0], "revenue", 12.5)])
    while runner.fold_next(experiment_projection, chunk=2):
        pass
    # Then they are counted as multiple exposures only, exactly as a rebuild counts them
    incremental = tables()
    assert incremental["summary"][0][2] == 3
    assert_matches_raw_values(world)
    services.projection_rebuild(name="experiments")
    assert tables() == incremental


def test_fold__feedback_in_small_windows__sums_exact_and_equal_to_a_rebuild(world):
    # Given values that change many times (one event per window), binomial ones flipping
    populate(world, subjects=25, seed=32)
    while runner.fold_next(experiment_projection, chunk=1):
        pass
    incremental = tables()
    # Then the exact sums are those of the raw values, and a rebuild gives every number
    assert_matches_raw_values(world)
    for row in incremental["stats"]:
        assert row[5] > 0, "a group left empty is deleted, as a rebuild never creates it"
    services.projection_rebuild(name="experiments")
    assert tables() == incremental


def test_fold__statistics_of_another_configuration__recomputed_from_scratch(world):
    # Given statistics stored for another configuration (or by an older version), wrong
    populate(world, subjects=30, seed=33)
    runner.catch_up(experiment_projection)
    ExperimentSummary.objects.update(configuration="")
    VariantMetricStats.objects.filter(attribute="").update(units=999, total=5)
    # When the next window touches the experiment
    world.post("/api/v1/predictions", [world.predict("late", "control", "DE")])
    assert runner.fold_next(experiment_projection) > 0
    # Then its statistics are recomputed from the log, as a rebuild gives them
    assert_matches_raw_values(world)
    incremental = tables()
    services.projection_rebuild(name="experiments")
    assert tables() == incremental

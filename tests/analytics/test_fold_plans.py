"""A fold's cost does not depend on fresh planner statistics.

The statistics are made to lie as they do in production: every stored table is analysed
while nearly empty, autovacuum is turned off on it, and it grows by windows. Then one window
of 50,000 new subjects (and feedback on every earlier one) is folded twice from the same
state: once under the lying statistics, once after ANALYZE. Every statement of both folds
runs under EXPLAIN ANALYZE (which executes it as usual), and the test compares the rows each
plan processed — every node's rows times its loops, plus the rows its filters and join
filters threw away. That count is the work a plan does, measured without a clock: a plan
that compares every member with every stored value (a join left with a key in its join
filter) processes rows in the billions where the fresh plan processes a few hundred
thousand. Times are printed, never asserted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from apps.analytics.projections import runner
from apps.analytics.projections.base import Projection, Window
from apps.analytics.projections.experiments import experiment_projection
from apps.analytics.projections.performance import performance_projection
from apps.events.selectors import Position

pytestmark = pytest.mark.django_db

SMALL = 300
GROWTH_WINDOWS = 8
GROWTH = 5_000
FINAL = 50_000
# The lying plans may cost at most this many times the fresh ones, in rows processed.
SMALL_CONSTANT = 2.0

STORED = (
    "ingest_prediction",
    "ingest_feedback",
    "experiments_exposure",
    "analytics_subjectmetricvalue",
    "analytics_variantmetricstats",
    "analytics_experimentsummary",
    "analytics_predictionoutcome",
    "analytics_performancesegment",
    "analytics_performancecell",
    "analytics_latencycell",
)

PREDICTIONS = """
INSERT INTO ingest_prediction (id, occurred_at, model_version_id, subject, experiment, variant,
                               attributes, output_label, output_score, latency_ms, actor,
                               content_hash)
SELECT md5('p' || s)::uuid, now() - interval '1 hour', (%(versions)s::bigint[])[s %% 2 + 1],
       's' || s, %(key)s, (ARRAY['control', 'treatment'])[s %% 2 + 1],
       jsonb_build_object('country', (ARRAY['DE', 'FR', 'US', 'PL'])[s %% 4 + 1]),
       CASE WHEN s %% 3 = 0 THEN 'churn' ELSE 'stay' END, (s %% 100) / 100.0, 5 + s %% 40,
       'tests', decode(md5('hp' || s), 'hex')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS s
"""

EXPOSURES = """
INSERT INTO experiments_exposure (id, occurred_at, experiment_id, subject, variant,
                                  model_version, attributes, source, prediction_id)
SELECT md5('x' || s)::uuid, now() - interval '1 hour', %(experiment_id)s, 's' || s,
       (ARRAY['control', 'treatment'])[s %% 2 + 1], (ARRAY['2', '3'])[s %% 2 + 1],
       jsonb_build_object('country', (ARRAY['DE', 'FR', 'US', 'PL'])[s %% 4 + 1]),
       'prediction', md5('p' || s)::uuid
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS s
"""

# A click on every `click_every`-th subject, a label on every `label_every`-th, and (with
# `round`) more of both on subjects of earlier windows, so a window meets stored values.
FEEDBACK = """
INSERT INTO ingest_feedback (id, occurred_at, prediction_id, metric, value, label, actor,
                             content_hash)
SELECT md5('f' || %(round)s || '-' || s || metric)::uuid, now() - interval '1 hour',
       md5('p' || s)::uuid, metric, CASE WHEN metric = 'click' THEN 1 END,
       CASE WHEN metric = 'label' THEN (ARRAY['churn', 'stay'])[s %% 2 + 1] END, 'tests',
       decode(md5('hf' || %(round)s || '-' || s || metric), 'hex')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS s,
     unnest(ARRAY['click', 'label']) AS metric
WHERE (metric = 'click' AND s %% %(click_every)s = 0)
   OR (metric = 'label' AND s %% %(label_every)s = 0)
"""


def add_subjects(
    world: dict[str, Any], first: int, last: int, *, early: bool = False, feedback_every: int = 2
) -> None:
    """Subjects first..last with their events (feedback on one in `feedback_every`);
    `early`: of the experiment the tables held when they were analysed (the later ones are
    of another experiment)."""
    experiment = world["early"] if early else world["late"]
    parameters = {
        **world,
        **experiment,
        "first": first,
        "last": last,
        "round": 0,
        "click_every": feedback_every,
        "label_every": feedback_every + 1,
    }
    with connection.cursor() as cursor:
        cursor.execute(PREDICTIONS, parameters)
        cursor.execute(EXPOSURES, parameters)
        cursor.execute(FEEDBACK, parameters)


def add_late_feedback(world: dict[str, Any], first: int, last: int) -> None:
    """More feedback on subjects first..last (one in five) of earlier windows."""
    parameters = {**world, "first": first, "last": last, "round": 1}
    with connection.cursor() as cursor:
        cursor.execute(FEEDBACK, {**parameters, "click_every": 5, "label_every": 5})


def experiment_of(versions: dict[str, Any], key: str) -> dict[str, Any]:
    from tests.ingest.factories import churn_experiment

    experiment = churn_experiment(versions, key=key)
    return {"key": experiment.key, "experiment_id": experiment.pk}


@pytest.fixture
def world() -> dict[str, Any]:
    from tests.ingest.factories import register_churn

    versions = register_churn()
    model = versions["2"].model
    model.segment_attributes = ["country"]
    model.save(update_fields=["segment_attributes"])
    return {
        "early": experiment_of(versions, "plans-early"),
        "late": experiment_of(versions, "plans"),
        "versions": [versions["2"].pk, versions["3"].pk],
    }


class ExplainingCursor(CursorWrapper):
    """Runs every statement of a fold under EXPLAIN ANALYZE (which executes it) and keeps
    the plans; statements that cannot be explained (DDL, ANALYZE) run as they are."""

    EXPLAINABLE = re.compile(
        r"^(SELECT|WITH|INSERT|UPDATE|DELETE|CREATE TEMPORARY TABLE \w+ ON COMMIT DROP AS)\b",
        re.IGNORECASE,
    )

    def __init__(self, cursor: CursorWrapper) -> None:
        super().__init__(cursor.cursor, cursor.db)
        self.plans: list[tuple[str, dict[str, Any]]] = []

    def execute(self, sql: Any, params: Any = None) -> Any:
        text = str(sql).strip()
        if not self.EXPLAINABLE.match(text):
            return super().execute(sql, params)
        super().execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {text}", params)
        row = self.cursor.fetchone()
        plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
        self.plans.append((text, plan[0]["Plan"]))
        if text.upper().startswith(("SELECT", "WITH")) and "INSERT" not in text.upper():
            # The fold reads these rows: run it again for them (a read has no effect).
            return super().execute(sql, params)
        return None


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def rows_processed(plan: dict[str, Any]) -> float:
    """Rows every node produced or threw away, over all its loops."""
    total = 0.0
    for node in nodes(plan):
        loops = node.get("Actual Loops", 1)
        for key in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Join Filter"):
            total += node.get(key, 0) * loops
    return total


def last_position() -> Position:
    with connection.cursor() as cursor:
        branches = " UNION ALL ".join(
            f"SELECT xid, seq FROM {name}"  # noqa: S608 - table names of this test
            for name in ("ingest_prediction", "ingest_feedback", "experiments_exposure")
        )
        last = f"SELECT xid, seq FROM ({branches}) AS log ORDER BY xid DESC, seq DESC LIMIT 1"  # noqa: S608 - table names of this test
        cursor.execute(last)
        row = cursor.fetchone()
    return Position(int(row[0]), int(row[1]))


def watermark(projection: Projection) -> Position:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xid, seq FROM analytics_projectionstate WHERE name = %s", [projection.name]
        )
        row = cursor.fetchone()
    return Position(int(row[0]), int(row[1])) if row else Position(0, 0)


def fold_explained(projection: Projection, window: Window) -> tuple[float, float, list[Any]]:
    """Fold `window` under EXPLAIN ANALYZE and undo it: (rows processed, seconds, plans)."""
    started = time.perf_counter()
    sid = transaction.savepoint_create()
    with connection.cursor() as cursor:
        explaining = ExplainingCursor(cursor)
        projection.fold(explaining, window)
    transaction.savepoint_rollback(sid)
    seconds = time.perf_counter() - started
    return sum(rows_processed(plan) for _, plan in explaining.plans), seconds, explaining.plans


@pytest.mark.parametrize(
    "projection", [experiment_projection, performance_projection], ids=lambda p: p.name
)
def test_fold__statistics_analysed_when_nearly_empty__same_work_as_with_fresh_statistics(
    world, projection
):
    # Given every stored table analysed while nearly empty, before the experiment of the
    # windows below existed, with autovacuum off
    add_subjects(world, 0, SMALL - 1, early=True)
    runner.catch_up(projection)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks: ALTER may run
        for name in STORED:
            cursor.execute(f"ANALYZE {name}")
            cursor.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
    # And the tables grown by windows that never re-analyse them
    for step in range(GROWTH_WINDOWS):
        first = SMALL + step * GROWTH
        add_subjects(world, first, first + GROWTH - 1)
        runner.catch_up(projection)
    known = SMALL + GROWTH_WINDOWS * GROWTH
    # When one window brings 50,000 new subjects, few of them with feedback yet (the window
    # changes fewer stored values than would make anyone re-analyse), and some feedback on
    # subjects of the earlier windows
    add_subjects(world, known, known + FINAL - 1, feedback_every=20)
    add_late_feedback(world, 0, known - 1)
    window = Window(after=watermark(projection), upto=last_position())
    lying, lying_seconds, plans = fold_explained(projection, window)
    with connection.cursor() as cursor:
        for name in STORED:
            cursor.execute(f"ANALYZE {name}")
    fresh, fresh_seconds, _ = fold_explained(projection, window)
    print(  # noqa: T201 - the figures, for whoever reads the run
        f"\n{projection.name}: lying statistics {lying:,.0f} rows in {lying_seconds:.2f} s, "
        f"fresh {fresh:,.0f} rows in {fresh_seconds:.2f} s"
    )
    # Then the lying statistics cost at most a small constant more work than fresh ones
    assert lying <= SMALL_CONSTANT * fresh, (lying, fresh)
    # And that work is linear in the window, whatever the size of the stored tables
    events = FINAL * 3 + known
    assert lying <= 60 * events, (lying, events)
    # And no statement joins a stored table with a key left to a join filter
    for text, plan in plans:
        for node in nodes(plan):
            removed = node.get("Rows Removed by Join Filter", 0) * node.get("Actual Loops", 1)
            assert removed <= events, (text[:200], node.get("Node Type"), removed)

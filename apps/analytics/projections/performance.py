"""The performance projection: per model version × hour × segment counts, outcomes and latency.

Cells (analytics PerformanceCell, LatencyCell, ConfusionCell) are keyed by model version,
the UTC hour of the prediction's `occurred_at` and a PerformanceSegment: "all", or one
value of one of the model's `segment_attributes`. Days are rolled up at query time.

Segments. Each attribute gets its own cell for its first TOP_VALUES distinct values in
log order — the (xid, seq) order of the first prediction of the model carrying the value —
so a value's cell never changes and a rebuild admits exactly the values the incremental
folds admitted, whatever the window sizes. Later values, and the literal value "other",
go to the attribute's "other" cell; predictions without the attribute to its "absent" cell.
Values are compared as the text of the JSON value (`attributes ->> attribute`).

Outcomes. A prediction is *labeled* when it has a predicted outcome and a truth:
- binary: predicted positive = output.label equals the model's positive_label, else
  output.score ≥ decision_threshold; truth = the label feedback equals positive_label;
  the cell keeps TP, FP, FN, TN.
- multiclass: output.label against the label feedback; ConfusionCell keeps the pairs.
- regression: output.value against the *value* feedback (any metric); the cell keeps the
  exact `numeric` sums of the error (prediction − truth), its absolute value and square.
The truth is the latest feedback of the right kind by (occurred_at, seq). Every folded
prediction keeps its contribution in PredictionOutcome, so feedback folded later — a
first label, or a relabel — retracts the old contribution and adds the new (set-based).
Feedback folded before its prediction is found when the prediction is folded.

Latency sketch: per cell, predictions counted per log-spaced bin (bins and their values in
apps.analytics.performance_metrics); bin counts add, so sketches merge exactly.

Bounds. A prediction carrying a number out of API.md's bounds (latency, score or value: a
row stored before the bounds were enforced, or written around the API) is left out of every
figure and counted in its cells' `excluded`; a value feedback out of bounds is never a truth.

Plans. Window rows reach stored rows (a prediction, its stored outcome, its feedback)
through LATERAL subqueries on their indexed keys, run once per window row whatever the
planner believes of the tables' sizes, so a fold costs O(window × log(table)).

Models are the units of isolation (base.run_unit): a window is folded for every model at
once in a savepoint, and if that fails, model by model, each in its own savepoint; a model
that fails is recorded, left out of later windows, and refolded from scratch once its
backoff has passed.

Model facts. A `model_updated` registry event (threshold, positive label or segment
attributes changed) refolds that model from scratch in the fold that reaches it, with its
current facts — the numbers a rebuild would give. That fold reads every prediction of the
model: a rare, admin-made change pays for exactness.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db.backends.utils import CursorWrapper

from apps.analytics.performance_metrics import GAMMA, ZERO_BIN
from apps.analytics.projections import base
from apps.analytics.projections.base import FoldOutcome, Window, at_or_before, in_window
from apps.ingest import selectors as ingest_selectors
from apps.registry import selectors as registry_selectors

logger = logging.getLogger(__name__)

# Values of one attribute that get their own cell (per model), in log order.
TOP_VALUES = 100

_TEMPORARY = ("perf_touched", "perf_keys", "perf_segments", "perf_truth", "perf_outcomes")

# Predictions to fold: new ones in the window, and folded ones with feedback in the window.
_WINDOW_IDS = """
SELECT p.id FROM {prediction} p WHERE {prediction_in_window}
UNION
SELECT s.prediction_id FROM {feedback} f
CROSS JOIN LATERAL (
    SELECT s.prediction_id FROM analytics_predictionoutcome s
    WHERE s.prediction_id = f.prediction_id LIMIT 1
) AS s
WHERE {feedback_in_window}
"""

# Every prediction of one model up to the window's end (a refold after a model change).
_MODEL_IDS = """
SELECT p.id FROM {prediction} p JOIN {version} v ON v.id = p.model_version_id
WHERE v.model_id = %(model_id)s AND {prediction_upto}
"""

_TOUCHED = """
CREATE TEMPORARY TABLE perf_touched ON COMMIT DROP AS
SELECT p.id, p.xid, p.seq, p.model_version_id, v.model_id, v.task, v.positive_label,
       v.decision_threshold, v.segment_attributes,
       date_trunc('hour', p.occurred_at, 'UTC') AS bucket,
       p.attributes, p.output_label, p.output_score, p.output_value, p.latency_ms,
       p.error IS NOT NULL AS failed, {prediction_in_bounds} AS in_bounds,
       s.prediction_id IS NULL AS fresh,
       s.segments AS old_segments, s.labeled AS old_labeled,
       s.predicted_positive AS old_predicted_positive, s.actual_positive AS old_actual_positive,
       s.predicted AS old_predicted, s.actual AS old_actual, s.error AS old_error
FROM ({ids}) AS ids
CROSS JOIN LATERAL (
    SELECT * FROM {prediction} p WHERE p.id = ids.id LIMIT 1
) AS p
JOIN {version} v ON v.id = p.model_version_id
LEFT JOIN LATERAL (
    SELECT * FROM analytics_predictionoutcome s WHERE s.prediction_id = p.id LIMIT 1
) AS s ON true
WHERE v.model_id <> ALL(%(skip_models)s::bigint[])
  AND (%(only_model)s::bigint IS NULL OR v.model_id = %(only_model)s::bigint)
"""

# New attribute values get their own segment while the attribute has fewer than TOP_VALUES,
# first seen first (ON CONFLICT: two values with one md5 keep the first, the other is "other").
_ADMIT = """
WITH seen AS (
    SELECT DISTINCT ON (t.model_id, a.attribute, r.value)
           t.model_id, a.attribute, r.value, t.xid, t.seq
    FROM perf_touched t
    CROSS JOIN LATERAL (SELECT DISTINCT unnest(t.segment_attributes)) AS a(attribute)
    CROSS JOIN LATERAL (SELECT t.attributes ->> a.attribute) AS r(value)
    WHERE t.fresh AND r.value IS NOT NULL AND r.value <> 'other'
    ORDER BY t.model_id, a.attribute, r.value, t.xid, t.seq
), unseen AS (
    SELECT seen.*, row_number() OVER (
        PARTITION BY seen.model_id, seen.attribute ORDER BY seen.xid, seen.seq
    ) AS rank
    FROM seen
    WHERE NOT EXISTS (
        SELECT 1 FROM analytics_performancesegment g
        WHERE g.model_id = seen.model_id AND g.attribute = seen.attribute
          AND g.kind = 'value' AND md5(g.value) = md5(seen.value)
    )
), taken AS (
    SELECT g.model_id, g.attribute, count(*) AS admitted
    FROM analytics_performancesegment g
    WHERE g.kind = 'value' AND g.model_id IN (SELECT model_id FROM perf_touched WHERE fresh)
    GROUP BY g.model_id, g.attribute
)
INSERT INTO analytics_performancesegment (model_id, attribute, kind, value)
SELECT u.model_id, u.attribute, 'value', u.value
FROM unseen u LEFT JOIN taken ON taken.model_id = u.model_id AND taken.attribute = u.attribute
WHERE u.rank + COALESCE(taken.admitted, 0) <= %(top)s
ORDER BY u.model_id, u.attribute, u.rank
ON CONFLICT DO NOTHING
"""

_KEYS = """
CREATE TEMPORARY TABLE perf_keys ON COMMIT DROP AS
SELECT t.id, t.model_id, '' AS attribute, 'all' AS kind, '' AS value
FROM perf_touched t WHERE t.fresh
UNION ALL
SELECT t.id, t.model_id, a.attribute,
       CASE WHEN r.value IS NULL THEN 'absent' WHEN g.id IS NULL THEN 'other' ELSE 'value' END,
       CASE WHEN g.id IS NULL THEN '' ELSE r.value END
FROM perf_touched t
CROSS JOIN LATERAL (SELECT DISTINCT unnest(t.segment_attributes)) AS a(attribute)
CROSS JOIN LATERAL (SELECT t.attributes ->> a.attribute) AS r(value)
LEFT JOIN analytics_performancesegment g
  ON g.model_id = t.model_id AND g.attribute = a.attribute AND g.kind = 'value'
 AND md5(g.value) = md5(r.value) AND g.value = r.value
WHERE t.fresh
"""

_ENSURE_SEGMENTS = """
INSERT INTO analytics_performancesegment (model_id, attribute, kind, value)
SELECT DISTINCT model_id, attribute, kind, value FROM perf_keys
ORDER BY model_id, attribute, kind, value
ON CONFLICT DO NOTHING
"""

_SEGMENTS = """
CREATE TEMPORARY TABLE perf_segments ON COMMIT DROP AS
SELECT k.id, array_agg(g.id ORDER BY g.id) AS segments
FROM perf_keys k
JOIN analytics_performancesegment g
  ON g.model_id = k.model_id AND g.attribute = k.attribute AND g.kind = k.kind
 AND md5(g.value) = md5(k.value) AND g.value = k.value
GROUP BY k.id
"""

# The truth: the latest label feedback (classification) or value feedback within bounds
# (regression), of the predictions that count.
_TRUTH = """
CREATE TEMPORARY TABLE perf_truth ON COMMIT DROP AS
SELECT t.id AS prediction_id, f.label, f.value
FROM perf_touched t
CROSS JOIN LATERAL (
    SELECT f.label, f.value FROM {feedback} f
    WHERE f.prediction_id = t.id AND {feedback_upto}
      AND (f.value IS NOT NULL) = (t.task = 'regression') AND {feedback_in_bounds}
    ORDER BY f.occurred_at DESC, f.seq DESC
    LIMIT 1
) AS f
WHERE t.in_bounds
"""

_OUTCOMES = """
CREATE TEMPORARY TABLE perf_outcomes ON COMMIT DROP AS
WITH outcome AS (
    SELECT t.id, t.model_id, t.model_version_id, t.bucket, t.fresh, t.failed, t.latency_ms,
           t.in_bounds,
           COALESCE(t.old_segments, sg.segments) AS segments,
           t.old_labeled, t.old_predicted_positive, t.old_actual_positive,
           t.old_predicted, t.old_actual, t.old_error,
           CASE WHEN t.task = 'binary_classification' AND NOT t.failed
                THEN COALESCE(t.output_label = t.positive_label,
                              t.output_score >= t.decision_threshold) END
               AS predicted_positive,
           CASE WHEN t.task = 'binary_classification'
                THEN tr.label = t.positive_label END AS actual_positive,
           CASE WHEN t.task = 'multiclass_classification' THEN t.output_label END AS predicted,
           CASE WHEN t.task = 'multiclass_classification' THEN tr.label END AS actual,
           CASE WHEN t.task = 'regression'
                THEN t.output_value::numeric - tr.value::numeric END AS error
    FROM perf_touched t
    LEFT JOIN perf_segments sg ON sg.id = t.id
    LEFT JOIN perf_truth tr ON tr.prediction_id = t.id
), labeled AS (
    SELECT outcome.*,
           (predicted_positive IS NOT NULL AND actual_positive IS NOT NULL)
           OR (predicted IS NOT NULL AND actual IS NOT NULL)
           OR error IS NOT NULL AS labeled
    FROM outcome
)
SELECT labeled.*,
       fresh OR (labeled, predicted_positive, actual_positive, predicted, actual, error)
           IS DISTINCT FROM (old_labeled, old_predicted_positive, old_actual_positive,
                             old_predicted, old_actual, old_error) AS moved
FROM labeled WHERE in_bounds
UNION ALL
SELECT t.id, t.model_id, t.model_version_id, t.bucket, t.fresh, t.failed, t.latency_ms,
       false, COALESCE(t.old_segments, sg.segments), NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, false, true
FROM perf_touched t LEFT JOIN perf_segments sg ON sg.id = t.id
WHERE NOT t.in_bounds AND t.fresh
"""

_STORE_OUTCOMES = """
INSERT INTO analytics_predictionoutcome
    (prediction_id, model_id, model_version_id, bucket, segments, labeled,
     predicted_positive, actual_positive, predicted, actual, error)
SELECT id, model_id, model_version_id, bucket, segments, labeled,
       predicted_positive, actual_positive, predicted, actual, error
FROM perf_outcomes WHERE moved AND in_bounds
ORDER BY id
ON CONFLICT (prediction_id) DO UPDATE
SET labeled = EXCLUDED.labeled, predicted_positive = EXCLUDED.predicted_positive,
    actual_positive = EXCLUDED.actual_positive, predicted = EXCLUDED.predicted,
    actual = EXCLUDED.actual, error = EXCLUDED.error
"""


def _count_delta(*, predicted_positive: bool, actual_positive: bool) -> str:
    """SQL: the change in one confusion count (TP, FP, FN or TN) over a cell's predictions."""

    def term(prefix: str) -> str:
        predicted = f"{'' if predicted_positive else 'NOT '}o.{prefix}predicted_positive"
        actual = f"{'' if actual_positive else 'NOT '}o.{prefix}actual_positive"
        return f"COALESCE((o.{prefix}labeled AND {predicted} AND {actual})::int, 0)"

    return f"sum({term('')} - {term('old_')})"


_TRUE_POSITIVES = _count_delta(predicted_positive=True, actual_positive=True)
_FALSE_POSITIVES = _count_delta(predicted_positive=True, actual_positive=False)
_FALSE_NEGATIVES = _count_delta(predicted_positive=False, actual_positive=True)
_TRUE_NEGATIVES = _count_delta(predicted_positive=False, actual_positive=False)

_CELLS = f"""
INSERT INTO analytics_performancecell AS c
    (model_version_id, segment_id, bucket, predictions, excluded, errors, labeled,
     true_positives, false_positives, false_negatives, true_negatives,
     error_sum, absolute_error_sum, squared_error_sum)
SELECT o.model_version_id, s.segment_id, o.bucket,
       sum((o.fresh AND o.in_bounds)::int), sum((o.fresh AND NOT o.in_bounds)::int),
       sum((o.fresh AND o.in_bounds AND o.failed)::int),
       sum(o.labeled::int - COALESCE(o.old_labeled, false)::int),
       {_TRUE_POSITIVES}, {_FALSE_POSITIVES}, {_FALSE_NEGATIVES}, {_TRUE_NEGATIVES},
       sum(COALESCE(o.error, 0) - COALESCE(o.old_error, 0)),
       sum(COALESCE(abs(o.error), 0) - COALESCE(abs(o.old_error), 0)),
       sum(COALESCE(o.error * o.error, 0) - COALESCE(o.old_error * o.old_error, 0))
FROM perf_outcomes o CROSS JOIN unnest(o.segments) AS s(segment_id)
WHERE o.moved
GROUP BY o.model_version_id, s.segment_id, o.bucket
ORDER BY o.model_version_id, s.segment_id, o.bucket
ON CONFLICT (model_version_id, segment_id, bucket) DO UPDATE
SET predictions = c.predictions + EXCLUDED.predictions,
    excluded = c.excluded + EXCLUDED.excluded,
    errors = c.errors + EXCLUDED.errors,
    labeled = c.labeled + EXCLUDED.labeled,
    true_positives = c.true_positives + EXCLUDED.true_positives,
    false_positives = c.false_positives + EXCLUDED.false_positives,
    false_negatives = c.false_negatives + EXCLUDED.false_negatives,
    true_negatives = c.true_negatives + EXCLUDED.true_negatives,
    error_sum = c.error_sum + EXCLUDED.error_sum,
    absolute_error_sum = c.absolute_error_sum + EXCLUDED.absolute_error_sum,
    squared_error_sum = c.squared_error_sum + EXCLUDED.squared_error_sum
"""  # noqa: S608 - the fragments are this module's constants

_LATENCY = """
INSERT INTO analytics_latencycell AS c (model_version_id, segment_id, bucket, bin, count)
SELECT o.model_version_id, s.segment_id, o.bucket, b.bin, count(*)
FROM perf_outcomes o
CROSS JOIN unnest(o.segments) AS s(segment_id)
CROSS JOIN LATERAL (
    SELECT CASE WHEN o.latency_ms > 0 THEN floor(ln(o.latency_ms) / ln(%(gamma)s))::int
                ELSE %(zero_bin)s END
) AS b(bin)
WHERE o.fresh AND o.in_bounds AND o.latency_ms IS NOT NULL
GROUP BY o.model_version_id, s.segment_id, o.bucket, b.bin
ORDER BY o.model_version_id, s.segment_id, o.bucket, b.bin
ON CONFLICT (model_version_id, segment_id, bucket, bin) DO UPDATE
SET count = c.count + EXCLUDED.count
"""

# Grouped by the md5 the unique index holds, so one statement never hits a row twice.
_CONFUSION = """
WITH moves AS (
    SELECT o.model_version_id, o.bucket, o.segments, o.predicted, o.actual, 1 AS delta
    FROM perf_outcomes o WHERE o.moved AND o.labeled AND o.predicted IS NOT NULL
    UNION ALL
    SELECT o.model_version_id, o.bucket, o.segments, o.old_predicted, o.old_actual, -1
    FROM perf_outcomes o WHERE o.moved AND o.old_labeled AND o.old_predicted IS NOT NULL
)
INSERT INTO analytics_confusioncell AS c
    (model_version_id, segment_id, bucket, predicted, actual, count)
SELECT m.model_version_id, s.segment_id, m.bucket, min(m.predicted), min(m.actual),
       sum(m.delta)
FROM moves m CROSS JOIN unnest(m.segments) AS s(segment_id)
GROUP BY m.model_version_id, s.segment_id, m.bucket, md5(m.predicted), md5(m.actual)
HAVING sum(m.delta) <> 0
ORDER BY m.model_version_id, s.segment_id, m.bucket, md5(m.predicted), md5(m.actual)
ON CONFLICT (model_version_id, segment_id, bucket, md5(predicted), md5(actual)) DO UPDATE
SET count = c.count + EXCLUDED.count
"""

_UPDATED_MODELS = """
SELECT DISTINCT r.model_id FROM {model_changes} r
WHERE {registry_in_window}
ORDER BY r.model_id
"""

_FORGET_MODEL = (
    "DELETE FROM analytics_predictionoutcome WHERE model_id = %(model_id)s",
    "DELETE FROM analytics_performancecell WHERE model_version_id IN "
    "(SELECT id FROM {version} WHERE model_id = %(model_id)s)",
    "DELETE FROM analytics_latencycell WHERE model_version_id IN "
    "(SELECT id FROM {version} WHERE model_id = %(model_id)s)",
    "DELETE FROM analytics_confusioncell WHERE model_version_id IN "
    "(SELECT id FROM {version} WHERE model_id = %(model_id)s)",
    "DELETE FROM analytics_performancesegment WHERE model_id = %(model_id)s",
)


Params = dict[str, Any]


_WINDOW_EXCLUDED = """
SELECT (SELECT count(*) FROM {prediction} p WHERE {prediction_in_window}
          AND NOT {prediction_in_bounds})
     + (SELECT count(*) FROM {feedback} f WHERE {feedback_in_window}
          AND NOT {feedback_in_bounds})
"""


class PerformanceProjection:
    name = "performance"
    sources: tuple[str, ...] = (
        ingest_selectors.PREDICTION_LOG,
        ingest_selectors.FEEDBACK_LOG,
        registry_selectors.MODEL_CHANGE_LOG,
    )
    # 2: out-of-bounds predictions left out and counted; plans by index lookups.
    version = 2

    def _sql(self, template: str, **extra: str) -> str:
        return template.format(
            prediction=ingest_selectors.PREDICTION_LOG,
            feedback=ingest_selectors.FEEDBACK_LOG,
            model_changes=registry_selectors.MODEL_CHANGE_LOG,
            version=registry_selectors.VERSION_FACTS,
            prediction_in_bounds=ingest_selectors.prediction_in_bounds_sql("p"),
            feedback_in_bounds=ingest_selectors.feedback_in_bounds_sql("f"),
            prediction_in_window=in_window("p"),
            feedback_in_window=in_window("f"),
            registry_in_window=in_window("r"),
            prediction_upto=at_or_before("p", "upto"),
            feedback_upto=at_or_before("f", "upto"),
            **extra,
        )

    def fold(self, cursor: CursorWrapper, window: Window) -> FoldOutcome:
        outcome = FoldOutcome()
        params: Params = {**window.params()}
        cursor.execute(self._sql(_WINDOW_EXCLUDED), params)
        row = cursor.fetchone()
        outcome.excluded = int(row[0]) if row else 0
        failed = [int(unit) for unit in base.units_failed(cursor, self.name)]
        due = [int(unit) for unit in base.units_due(cursor, self.name)]
        cursor.execute(self._sql(_UPDATED_MODELS), params)
        refolded = sorted({int(model_id) for (model_id,) in cursor.fetchall()} | set(due))
        # Models refolded below read the whole window anyway; failed ones wait their turn.
        skipped = sorted(set(failed) | set(refolded))
        if not self._fold_all(cursor, window, params, skipped):
            for model_id in self._models_in_window(cursor, params, skipped):
                only = {**params, "skip_models": skipped, "only_model": model_id}
                work = functools.partial(
                    self._fold_predictions, cursor, self._sql(_WINDOW_IDS), only
                )
                self._run_model(cursor, window, outcome, model_id, work)
        for model_id in refolded:
            work = functools.partial(self.refold_model, cursor, window, model_id=model_id)
            if self._run_model(cursor, window, outcome, model_id, work) and model_id in due:
                base.unit_recovered(cursor, projection=self.name, unit=str(model_id))
                outcome.recomputed_units.append(str(model_id))
        return outcome

    def _fold_all(
        self, cursor: CursorWrapper, window: Window, params: Params, skipped: list[int]
    ) -> bool:
        """Fold the window for every model at once; False (undone) when that fails."""
        try:
            with base.unit_savepoint():
                self._fold_predictions(
                    cursor,
                    self._sql(_WINDOW_IDS),
                    {**params, "skip_models": skipped, "only_model": None},
                )
        except Exception as error:
            if base.interrupts_fold(error):
                raise
            logger.warning(
                "projection.fold_by_unit",
                extra={"projection": self.name, "window": str(window), "error": str(error)},
            )
            return False
        return True

    def _models_in_window(
        self, cursor: CursorWrapper, params: Params, skipped: list[int]
    ) -> list[int]:
        cursor.execute(
            self._sql(
                "SELECT DISTINCT v.model_id FROM ({ids}) AS ids "
                "JOIN {prediction} p ON p.id = ids.id "
                "JOIN {version} v ON v.id = p.model_version_id "
                "WHERE v.model_id <> ALL(%(skip_models)s::bigint[]) ORDER BY v.model_id",
                ids=self._sql(_WINDOW_IDS),
            ),
            {**params, "skip_models": skipped},
        )
        return [int(row[0]) for row in cursor.fetchall()]

    def _run_model(
        self,
        cursor: CursorWrapper,
        window: Window,
        outcome: FoldOutcome,
        model_id: int,
        work: Callable[[], None],
    ) -> bool:
        return base.run_unit(
            cursor,
            projection=self.name,
            unit=str(model_id),
            label=f"model {registry_selectors.model_name(model_id=model_id)}",
            window=window,
            outcome=outcome,
            work=work,
        )

    def refold_model(self, cursor: CursorWrapper, window: Window, *, model_id: int) -> None:
        """Throw one model's cells away and fold its predictions up to the window's end."""
        params: Params = {**window.params(), "model_id": model_id}
        for statement in _FORGET_MODEL:
            cursor.execute(self._sql(statement), params)
        self._fold_predictions(
            cursor, self._sql(_MODEL_IDS), {**params, "skip_models": [], "only_model": model_id}
        )

    def _fold_predictions(self, cursor: CursorWrapper, ids: str, params: Params) -> None:
        params = {**params, "top": TOP_VALUES, "gamma": GAMMA, "zero_bin": ZERO_BIN}
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(self._sql(_TOUCHED, ids=ids), params)
        cursor.execute("ANALYZE perf_touched")
        cursor.execute(_ADMIT, params)
        cursor.execute(_KEYS, params)
        cursor.execute(_ENSURE_SEGMENTS, params)
        cursor.execute(_SEGMENTS, params)
        cursor.execute(self._sql(_TRUTH), params)
        cursor.execute(_OUTCOMES, params)
        cursor.execute("ANALYZE perf_outcomes")
        cursor.execute(_STORE_OUTCOMES, params)
        cursor.execute(_CELLS, params)
        cursor.execute(_LATENCY, params)
        cursor.execute(_CONFUSION, params)
        cursor.execute("DELETE FROM analytics_confusioncell WHERE count = 0")
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE {name}")

    def reset(self, cursor: CursorWrapper) -> None:
        cursor.execute(
            "TRUNCATE analytics_predictionoutcome, analytics_performancecell, "
            "analytics_latencycell, analytics_confusioncell, analytics_performancesegment"
        )


performance_projection = base.register(PerformanceProjection())

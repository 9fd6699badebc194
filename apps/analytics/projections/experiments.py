"""The A/B projection: per-subject metric values, then per-variant sufficient statistics.

Units and values (API.md "Results"): a unit is a subject exposed to exactly one variant
(subjects exposed to several are counted in multiple_exposures); its value for a metric is
the sum of the numeric feedback on its predictions tagged with the experiment (0 without
feedback; for binomial metrics 1 when the sum is > 0); its breakdown values are the
attributes of its exposure. Statistics are per metric × variant, overall and per value of
each breakdown attribute: units, Σx and Σx², exact (integer and `numeric`), with mean and
variance derived in exact arithmetic and rounded once (see models.VariantMetricStats).

Folding a window (after, upto] costs in proportion to the window, not to the experiment:
1. Each (prediction, feedback) pair is counted once, when the later of the two is folded:
   feedback in the window joined with tagged predictions up to `upto`, plus predictions in
   the window joined with feedback up to `after`. Their sums per (experiment, metric,
   subject) are the window's deltas, added to SubjectMetricValue with a `numeric` upsert.
2. The subjects the window touched (a delta or an exposure in the window) are looked at as
   of `after` and as of `upto` — membership from their exposures at or before each bound,
   values from SubjectMetricValue before and after the deltas — and every group's
   statistics change by (what the subjects bring as of upto) − (what they brought as of
   after). Both bounds are positions of the log, so the result depends on the events
   folded only, never on when the fold ran: incremental folds equal a rebuild exactly.
3. An experiment seen for the first time, or whose metrics or breakdown attributes changed
   since its statistics were computed, is recomputed from scratch instead: every subject
   exposed up to `upto` counts as touched, with nothing before.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.backends.utils import CursorWrapper

from apps.analytics.projections.base import Window, at_or_before, in_window, register, table

# A window that changes this many per-subject values refreshes the table's statistics:
# a rebuild refills it inside its windows, where autovacuum cannot see it, and without
# statistics the planner joins the units to their values with a nested loop (quadratic).
ANALYZE_AFTER_ROWS = 10_000

_TEMPORARY = ("analytics_deltas", "analytics_plan", "analytics_touched", "analytics_membership")

_DELTAS = """
CREATE TEMPORARY TABLE analytics_deltas ON COMMIT DROP AS
WITH pairs AS (
    SELECT p.experiment AS experiment_key, f.metric, p.subject, f.value::numeric AS value
    FROM {feedback} f
    JOIN {prediction} p ON p.id = f.prediction_id
    WHERE {feedback_in_window} AND f.value IS NOT NULL
      AND p.experiment IS NOT NULL AND {prediction_upto}
    UNION ALL
    SELECT p.experiment, f.metric, p.subject, f.value::numeric
    FROM {prediction} p
    JOIN {feedback} f ON f.prediction_id = p.id
    WHERE {prediction_in_window} AND p.experiment IS NOT NULL
      AND f.value IS NOT NULL AND {feedback_after}
)
SELECT experiment_key, metric, subject, sum(value) AS delta FROM pairs
GROUP BY experiment_key, metric, subject
"""

_UPSERT_VALUES = """
INSERT INTO analytics_subjectmetricvalue (experiment_key, metric, subject, value)
SELECT experiment_key, metric, subject, delta FROM analytics_deltas
ON CONFLICT (experiment_key, metric, subject)
DO UPDATE SET value = analytics_subjectmetricvalue.value + EXCLUDED.value
"""

_TOUCHED_EXPERIMENTS = """
SELECT e.id, e.key, e.breakdown_attributes,
       COALESCE((SELECT array_agg(m.key || ':' || m.type ORDER BY m.key)
                 FROM experiments_experimentmetric m WHERE m.experiment_id = e.id), '{{}}'),
       COALESCE(s.configuration, '')
FROM experiments_experiment e
LEFT JOIN analytics_experimentsummary s ON s.experiment_key = e.key
WHERE e.key IN (SELECT DISTINCT experiment_key FROM analytics_deltas)
   OR e.id IN (SELECT DISTINCT experiment_id FROM {exposure} x WHERE {exposure_in_window})
ORDER BY e.key
"""

# The experiments the window touched, and how each is folded (by deltas or recomputed).
_PLAN = """
CREATE TEMPORARY TABLE analytics_plan ON COMMIT DROP AS
SELECT * FROM unnest(%(ids)s::bigint[], %(keys)s::text[], %(attributes)s::text[],
                     %(configurations)s::text[], %(recomputed)s::boolean[])
    AS plan(experiment_id, experiment_key, attributes, configuration, recomputed)
"""

# Subjects of the experiments folded by deltas whose contribution may have changed: a delta
# or an exposure in the window.
_TOUCHED = """
CREATE TEMPORARY TABLE analytics_touched ON COMMIT DROP AS
SELECT plan.experiment_id, touched.subject
FROM analytics_plan plan
JOIN LATERAL (
    SELECT d.subject FROM analytics_deltas d WHERE d.experiment_key = plan.experiment_key
    UNION
    SELECT x.subject FROM {exposure} x
    WHERE x.experiment_id = plan.experiment_id AND {exposure_in_window}
) AS touched ON true
WHERE NOT plan.recomputed
"""

# Each subject to look at, as of `after` (before_*) and as of `upto` (after_*): how many
# variants it was exposed to, and for a unit (one variant) that variant and its attributes.
# Touched subjects of experiments folded by deltas; every exposed subject of those
# recomputed, with nothing before.
_MEMBERSHIP = """
CREATE TEMPORARY TABLE analytics_membership ON COMMIT DROP AS
SELECT t.experiment_id, t.subject,
       count(x.id) FILTER (WHERE {exposure_after}) AS before_count,
       min(x.variant) FILTER (WHERE {exposure_after}) AS before_variant,
       (array_agg(x.attributes) FILTER (WHERE {exposure_after}))[1] AS before_attributes,
       count(x.id) AS after_count,
       min(x.variant) AS after_variant,
       (array_agg(x.attributes))[1] AS after_attributes
FROM analytics_touched t
LEFT JOIN {exposure} x
  ON x.experiment_id = t.experiment_id AND x.subject = t.subject AND {exposure_upto}
GROUP BY t.experiment_id, t.subject
UNION ALL
SELECT x.experiment_id, x.subject, 0, NULL, NULL,
       count(*), min(x.variant), (array_agg(x.attributes))[1]
FROM {exposure} x
WHERE x.experiment_id IN (SELECT experiment_id FROM analytics_plan WHERE recomputed)
  AND {exposure_upto}
GROUP BY x.experiment_id, x.subject
"""

# What the touched units bring to each group as of `upto` (+) minus as of `after` (−).
_GROUP_CHANGES = """
WITH metrics AS (
    SELECT key, type FROM experiments_experimentmetric WHERE experiment_id = %(experiment_id)s
), subjects AS (
    SELECT mb.before_count, mb.before_variant, mb.before_attributes,
           mb.after_count, mb.after_variant, mb.after_attributes, m.key AS metric, m.type,
           COALESCE(v.value, 0) AS after_value, {before_value} AS before_value
    FROM analytics_membership mb
    CROSS JOIN metrics m
    LEFT JOIN analytics_subjectmetricvalue v
      ON v.experiment_key = %(experiment_key)s AND v.metric = m.key AND v.subject = mb.subject
    {deltas_join}
    WHERE mb.experiment_id = %(experiment_id)s AND (mb.after_count = 1 OR mb.before_count = 1)
), sides AS (
    SELECT 1 AS sign, after_variant AS variant, after_attributes AS attributes, metric, type,
           after_value AS value
    FROM subjects WHERE after_count = 1
    UNION ALL
    SELECT -1, before_variant, before_attributes, metric, type, before_value
    FROM subjects WHERE before_count = 1
), xs AS (
    SELECT sign, variant, attributes, metric,
           CASE WHEN type = 'binomial' THEN CASE WHEN value > 0 THEN 1 ELSE 0 END::numeric
                ELSE value END AS x
    FROM sides
), groups AS (
    SELECT metric, '' AS attribute, NULL::text AS attribute_value, variant, sign, x FROM xs
    UNION ALL
    SELECT metric, a.attribute, xs.attributes ->> a.attribute, variant, sign, x
    FROM xs CROSS JOIN unnest(%(attributes)s::text[]) AS a(attribute)
)
INSERT INTO analytics_variantmetricstats AS s
    (experiment_key, metric, attribute, attribute_value, variant, units, total, total_squares)
SELECT %(experiment_key)s, metric, attribute, attribute_value, variant,
       sum(sign), sum(sign * x), sum(sign * x * x)
FROM groups
GROUP BY metric, attribute, attribute_value, variant
HAVING sum(sign) <> 0 OR sum(sign * x) <> 0 OR sum(sign * x * x) <> 0
ON CONFLICT ON CONSTRAINT variantmetricstats_unique DO UPDATE
SET units = s.units + EXCLUDED.units, total = s.total + EXCLUDED.total,
    total_squares = s.total_squares + EXCLUDED.total_squares
"""

# An experiment folded by deltas: a unit's value before the window is its value less the
# window's delta. One recomputed has no before.
_BY_DELTAS = {
    "before_value": "COALESCE(v.value, 0) - COALESCE(d.delta, 0)",
    "deltas_join": "LEFT JOIN analytics_deltas d ON d.experiment_key = %(experiment_key)s "
    "AND d.metric = m.key AND d.subject = mb.subject",
}
_RECOMPUTED = {"before_value": "NULL::numeric", "deltas_join": ""}

# Mean and sample variance from the exact sums; the division is the only rounding.
_DERIVE = """
UPDATE analytics_variantmetricstats
SET mean = (total / units)::float8,
    variance = CASE WHEN units > 1
                    THEN ((units * total_squares - total * total) / (units * (units - 1)))::float8
               END
WHERE experiment_key = %(experiment_key)s
"""

_UNIT_CHANGES = """
SELECT variant, sum(sign) FROM (
    SELECT after_variant AS variant, 1 AS sign FROM analytics_membership
    WHERE experiment_id = %(experiment_id)s AND after_count = 1
    UNION ALL
    SELECT before_variant, -1 FROM analytics_membership
    WHERE experiment_id = %(experiment_id)s AND before_count = 1
) AS sides
GROUP BY variant
"""

_MULTIPLE_CHANGE = """
SELECT count(*) FILTER (WHERE after_count > 1) - count(*) FILTER (WHERE before_count > 1)
FROM analytics_membership WHERE experiment_id = %(experiment_id)s
"""

_SUMMARY = """
INSERT INTO analytics_experimentsummary
    (experiment_key, units, multiple_exposures, configuration, computed_at)
VALUES (%(experiment_key)s, %(units)s::jsonb, %(multiple)s, %(configuration)s, now())
ON CONFLICT (experiment_key) DO UPDATE
SET units = EXCLUDED.units, multiple_exposures = EXCLUDED.multiple_exposures,
    configuration = EXCLUDED.configuration, computed_at = EXCLUDED.computed_at
"""


def _configuration(attributes: list[str] | None, metrics: list[str]) -> str:
    return json.dumps({"metrics": metrics, "breakdown_attributes": sorted(attributes or [])})


class ExperimentProjection:
    name = "experiments"
    sources: tuple[str, ...] = ("ingest.Prediction", "ingest.Feedback", "experiments.Exposure")

    def _sql(self, template: str) -> str:
        return template.format(
            feedback=table("ingest.Feedback"),
            prediction=table("ingest.Prediction"),
            exposure=table("experiments.Exposure"),
            feedback_in_window=in_window("f"),
            prediction_in_window=in_window("p"),
            exposure_in_window=in_window("x"),
            prediction_upto=at_or_before("p", "upto"),
            feedback_after=at_or_before("f", "after"),
            exposure_after=at_or_before("x", "after"),
            exposure_upto=at_or_before("x", "upto"),
        )

    def fold(self, cursor: CursorWrapper, window: Window) -> None:
        params = window.params()
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(self._sql(_DELTAS), params)
        changed = cursor.rowcount
        cursor.execute(_UPSERT_VALUES)
        if changed >= ANALYZE_AFTER_ROWS:
            cursor.execute("ANALYZE analytics_subjectmetricvalue")
        # Autovacuum never analyses temporary tables: without this the planner guesses a
        # handful of rows and may pick nested loops over hundreds of thousands.
        cursor.execute("ANALYZE analytics_deltas")
        keys = self._plan(cursor, params)
        cursor.execute(self._sql(_TOUCHED), params)
        cursor.execute("ANALYZE analytics_touched")
        cursor.execute(self._sql(_MEMBERSHIP), params)
        cursor.execute("ANALYZE analytics_membership")
        for key in keys:
            self.recompute(cursor, experiment_key=key)
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE {name}")

    def _plan(self, cursor: CursorWrapper, params: dict[str, int]) -> list[str]:
        """Record the touched experiments in analytics_plan; their keys."""
        cursor.execute(self._sql(_TOUCHED_EXPERIMENTS), params)
        plan: dict[str, list[Any]] = {
            "ids": [],
            "keys": [],
            "attributes": [],
            "configurations": [],
            "recomputed": [],
        }
        for experiment_id, key, attributes, metrics, stored in cursor.fetchall():
            configuration = _configuration(attributes, list(metrics))
            plan["ids"].append(experiment_id)
            plan["keys"].append(key)
            plan["attributes"].append(json.dumps(list(attributes or [])))
            plan["configurations"].append(configuration)
            plan["recomputed"].append(configuration != stored)
        cursor.execute(_PLAN, plan)
        return list(plan["keys"])

    def recompute(self, cursor: CursorWrapper, *, experiment_key: str) -> None:
        """Bring one experiment's statistics to the window's end, from the tables `fold`
        prepared: by the window's changes, or from scratch when it is planned so."""
        cursor.execute(
            "SELECT experiment_id, attributes, configuration, recomputed FROM analytics_plan "
            "WHERE experiment_key = %s",
            [experiment_key],
        )
        found = cursor.fetchone()
        if found is None:
            return
        experiment_id, attributes, configuration, recomputed = found
        params: dict[str, Any] = {
            "experiment_id": experiment_id,
            "experiment_key": experiment_key,
            "attributes": json.loads(attributes),
        }
        if recomputed:
            cursor.execute(
                "DELETE FROM analytics_variantmetricstats WHERE experiment_key = %s",
                [experiment_key],
            )
            units: dict[str, int] = {}
            multiple = 0
        else:
            units, multiple = self._summary(cursor, experiment_key)
        cursor.execute(_GROUP_CHANGES.format(**(_RECOMPUTED if recomputed else _BY_DELTAS)), params)
        cursor.execute(
            "DELETE FROM analytics_variantmetricstats WHERE experiment_key = %s AND units = 0",
            [experiment_key],
        )
        cursor.execute(_DERIVE, params)
        cursor.execute(_UNIT_CHANGES, params)
        for variant, change in cursor.fetchall():
            units[variant] = units.get(variant, 0) + int(change)
        cursor.execute(_MULTIPLE_CHANGE, params)
        row = cursor.fetchone()
        multiple += int(row[0]) if row else 0
        cursor.execute(
            _SUMMARY,
            {
                "experiment_key": experiment_key,
                "units": json.dumps({variant: n for variant, n in sorted(units.items()) if n}),
                "multiple": multiple,
                "configuration": configuration,
            },
        )

    def _summary(self, cursor: CursorWrapper, experiment_key: str) -> tuple[dict[str, int], int]:
        """Units per variant and multiple exposures as stored (none yet: empty, 0)."""
        cursor.execute(
            "SELECT units, multiple_exposures FROM analytics_experimentsummary "
            "WHERE experiment_key = %s",
            [experiment_key],
        )
        row = cursor.fetchone()
        if row is None:
            return {}, 0
        # Django's cursor hands jsonb over as text.
        stored = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        return {str(variant): int(count) for variant, count in stored.items()}, int(row[1])

    def reset(self, cursor: CursorWrapper) -> None:
        cursor.execute(
            "TRUNCATE analytics_subjectmetricvalue, analytics_variantmetricstats, "
            "analytics_experimentsummary"
        )


experiment_projection = register(ExperimentProjection())

"""The A/B projection: per-subject metric values, then per-variant sufficient statistics.

Folding a window (after, upto]:
1. Each (prediction, feedback) pair is counted once, when the later of the two is folded:
   feedback in the window joined with tagged predictions up to `upto`, plus predictions in
   the window joined with feedback up to `after`. Their numeric values are added to
   SubjectMetricValue (experiment, metric, subject) with an exact `numeric` upsert.
2. Every experiment touched by the window (new exposures or new values) gets its statistics
   recomputed from the per-subject table: units are the exposed subjects with exactly one
   variant (others are counted in multiple_exposures), a unit's value is its sum (0 without
   feedback; for binomial metrics 1 when the sum is > 0), grouped per variant and per value
   of each breakdown attribute (from the subject's first exposure), with count, avg and
   var_samp — PostgreSQL's stable accumulator, never Σx² − nμ².
"""

from __future__ import annotations

from django.db.backends.utils import CursorWrapper

from apps.analytics.projections.base import Window, at_or_before, in_window, register, table

_PAIRS_UPSERT = """
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
), upserted AS (
    INSERT INTO analytics_subjectmetricvalue (experiment_key, metric, subject, value)
    SELECT experiment_key, metric, subject, sum(value) FROM pairs
    GROUP BY experiment_key, metric, subject
    ON CONFLICT (experiment_key, metric, subject)
    DO UPDATE SET value = analytics_subjectmetricvalue.value + EXCLUDED.value
    RETURNING experiment_key
)
SELECT DISTINCT experiment_key FROM upserted
"""

_EXPOSED_IN_WINDOW = """
SELECT DISTINCT e.key FROM {exposure} x JOIN experiments_experiment e ON e.id = x.experiment_id
WHERE {exposure_in_window}
"""

_UNITS = """
CREATE TEMPORARY TABLE analytics_units ON COMMIT DROP AS
SELECT subject, min(variant) AS variant, count(*) AS variants,
       (array_agg(attributes ORDER BY seq))[1] AS attributes
FROM {exposure} WHERE experiment_id = %(experiment_id)s
GROUP BY subject
"""

_STATS = """
WITH metrics AS (
    SELECT key, type FROM experiments_experimentmetric WHERE experiment_id = %(experiment_id)s
), vals AS (
    SELECT u.variant, u.attributes, m.key AS metric,
           CASE WHEN m.type = 'binomial'
                THEN CASE WHEN COALESCE(v.value, 0) > 0 THEN 1.0::float8 ELSE 0.0::float8 END
                ELSE COALESCE(v.value, 0)::float8 END AS x
    FROM analytics_units u
    CROSS JOIN metrics m
    LEFT JOIN analytics_subjectmetricvalue v
      ON v.experiment_key = %(experiment_key)s AND v.metric = m.key AND v.subject = u.subject
    WHERE u.variants = 1
)
INSERT INTO analytics_variantmetricstats
    (experiment_key, metric, attribute, attribute_value, variant, units, mean, variance)
SELECT %(experiment_key)s, metric, '', NULL, variant, count(*), avg(x), var_samp(x)
FROM vals GROUP BY metric, variant
UNION ALL
SELECT %(experiment_key)s, metric, a.attribute, vals.attributes ->> a.attribute, variant,
       count(*), avg(x), var_samp(x)
FROM vals CROSS JOIN unnest(%(attributes)s::text[]) AS a(attribute)
GROUP BY metric, variant, a.attribute, vals.attributes ->> a.attribute
"""

_SUMMARY = """
INSERT INTO analytics_experimentsummary (experiment_key, units, multiple_exposures, computed_at)
SELECT %(experiment_key)s,
       COALESCE((SELECT jsonb_object_agg(variant, n) FROM (
           SELECT variant, count(*) AS n FROM analytics_units WHERE variants = 1 GROUP BY variant
       ) AS per_variant), '{}'::jsonb),
       (SELECT count(*) FROM analytics_units WHERE variants > 1),
       now()
ON CONFLICT (experiment_key) DO UPDATE
SET units = EXCLUDED.units, multiple_exposures = EXCLUDED.multiple_exposures,
    computed_at = EXCLUDED.computed_at
"""


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
        )

    def fold(self, cursor: CursorWrapper, window: Window) -> None:
        params = window.params()
        cursor.execute(self._sql(_PAIRS_UPSERT), params)
        touched = {row[0] for row in cursor.fetchall()}
        cursor.execute(self._sql(_EXPOSED_IN_WINDOW), params)
        touched |= {row[0] for row in cursor.fetchall()}
        for key in sorted(touched):
            self.recompute(cursor, experiment_key=key)

    def recompute(self, cursor: CursorWrapper, *, experiment_key: str) -> None:
        """Statistics of one experiment from the per-subject table (no-op if it is gone)."""
        cursor.execute(
            "SELECT id, breakdown_attributes FROM experiments_experiment WHERE key = %s",
            [experiment_key],
        )
        row = cursor.fetchone()
        if row is None:
            return
        params = {
            "experiment_id": row[0],
            "experiment_key": experiment_key,
            "attributes": list(row[1] or []),
        }
        cursor.execute("DROP TABLE IF EXISTS analytics_units")
        cursor.execute(self._sql(_UNITS), params)
        cursor.execute(
            "DELETE FROM analytics_variantmetricstats WHERE experiment_key = %s", [experiment_key]
        )
        cursor.execute(_STATS, params)
        cursor.execute(_SUMMARY, params)
        cursor.execute("DROP TABLE analytics_units")

    def reset(self, cursor: CursorWrapper) -> None:
        cursor.execute(
            "TRUNCATE analytics_subjectmetricvalue, analytics_variantmetricstats, "
            "analytics_experimentsummary"
        )


experiment_projection = register(ExperimentProjection())

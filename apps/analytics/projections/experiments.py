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
   feedback in the window with tagged predictions up to `upto`, plus predictions in the
   window with feedback up to `after`. A pair whose value is out of API.md's bounds (a row
   stored before the bounds, or around the API) is left out and counted in the
   experiment's `excluded_events`. The rest summed per (experiment, metric, subject) are
   the window's deltas, added to SubjectMetricValue with a `numeric` upsert.
2. The subjects the window touched (a delta or an exposure in the window) are looked at as
   of `after` and as of `upto` — membership from their exposures at or before each bound,
   values from SubjectMetricValue before and after the deltas — and every group's
   statistics change by (what the subjects bring as of upto) − (what they brought as of
   after). Both bounds are positions of the log, so the result depends on the events
   folded only, never on when the fold ran: incremental folds equal a rebuild exactly.
3. An experiment seen for the first time, or whose metrics or breakdown attributes changed
   since its statistics were computed, is recomputed from scratch instead: every subject
   exposed up to `upto` counts as touched, with nothing before.

Plans that do not depend on the planner's statistics. Rows the window needs from the log
are reached by unique id (a prediction) or indexed reference (its feedback): every join
method the planner may pick for those is linear. Rows whose key statistics can mislead it
(a subject's exposures, its stored values: an experiment's key may be missing from the
statistics) come from the window's own upsert or are looked up through their index by
LATERAL subqueries on the full key, which run once per window row whatever the planner
believes. Everything else joins temporary tables of the window, analysed as they are filled.

Each experiment's statistics change in a savepoint of their own (base.run_unit): one that
fails is left as it was, recorded, and recomputed from scratch once its backoff passed;
the other experiments of the window are folded as usual.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.db.backends.utils import CursorWrapper

from apps.analytics.projections import base
from apps.analytics.projections.base import FoldOutcome, Window, at_or_before, in_window
from apps.experiments import selectors as experiment_selectors
from apps.ingest import selectors as ingest_selectors

_TEMPORARY = (
    "analytics_deltas",
    "analytics_upserted",
    "analytics_plan",
    "analytics_touched",
    "analytics_membership",
    "analytics_units",
)

# Window rows meet the log's rows by unique id (a prediction) or by an indexed reference
# (its feedback): whatever the planner believes of the tables, every join method it can pick
# for such a key is linear (an index lookup per row, or one hash of the window), so these
# are plain joins. The second branch finds nothing when the window starts the log (a
# rebuild's first window). Per (experiment, metric, subject): the sum of the pairs within
# bounds (NULL: none) and the number left out.
_DELTAS = """
CREATE TEMPORARY TABLE analytics_deltas ON COMMIT DROP AS
WITH pairs AS (
    SELECT p.experiment AS experiment_key, f.metric, p.subject, f.value,
           {feedback_in_bounds} AS in_bounds
    FROM {feedback} f
    JOIN {prediction} p ON p.id = f.prediction_id
    WHERE {feedback_in_window} AND f.value IS NOT NULL
      AND p.experiment IS NOT NULL AND {prediction_upto}
    UNION ALL
    SELECT p.experiment, f.metric, p.subject, f.value, {feedback_in_bounds}
    FROM {prediction} p
    JOIN {feedback} f ON f.prediction_id = p.id
    WHERE {prediction_in_window} AND p.experiment IS NOT NULL
      AND f.value IS NOT NULL AND {feedback_after} AND %(after_seq)s + %(after_xid)s > 0
)
SELECT experiment_key, metric, subject,
       sum(value::numeric) FILTER (WHERE in_bounds) AS delta,
       count(*) FILTER (WHERE NOT in_bounds) AS excluded
FROM pairs
GROUP BY experiment_key, metric, subject
"""

# The new value of every (experiment, metric, subject) with a delta, as the upsert returns
# it: those need no lookup below.
_UPSERT_VALUES = """
WITH upserted AS (
    INSERT INTO analytics_subjectmetricvalue (experiment_key, metric, subject, value)
    SELECT experiment_key, metric, subject, delta FROM analytics_deltas
    WHERE delta IS NOT NULL
    ON CONFLICT (experiment_key, metric, subject)
    DO UPDATE SET value = analytics_subjectmetricvalue.value + EXCLUDED.value
    RETURNING experiment_key, metric, subject, value
)
INSERT INTO analytics_upserted SELECT * FROM upserted
"""

# Out-of-bounds pairs count against their experiment whatever its state (a failed or
# recomputed experiment keeps the count: it is of the log, not of the statistics).
_EXCLUDED = """
INSERT INTO analytics_experimentsummary
    (experiment_key, units, multiple_exposures, excluded_events, configuration, computed_at)
SELECT experiment_key, '{}'::jsonb, 0, sum(excluded), '', now()
FROM analytics_deltas WHERE excluded > 0
GROUP BY experiment_key
ORDER BY experiment_key
ON CONFLICT (experiment_key) DO UPDATE
SET excluded_events = analytics_experimentsummary.excluded_events + EXCLUDED.excluded_events
"""

_TOUCHED_EXPERIMENTS = """
SELECT e.id, e.key, e.breakdown_attributes,
       COALESCE((SELECT array_agg(m.key || ':' || m.type ORDER BY m.key)
                 FROM {metric} m WHERE m.experiment_id = e.id), '{{}}'),
       COALESCE(s.configuration, '')
FROM {experiment} e
LEFT JOIN analytics_experimentsummary s ON s.experiment_key = e.key
WHERE e.key IN (SELECT DISTINCT experiment_key FROM analytics_deltas WHERE delta IS NOT NULL)
   OR e.id IN (SELECT DISTINCT experiment_id FROM {exposure} x WHERE {exposure_in_window})
   OR e.key = ANY(%(due)s)
ORDER BY e.key
"""

# The touched experiments, and how each is folded (by deltas or recomputed).
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
SELECT DISTINCT plan.experiment_id, plan.experiment_key, touched.subject
FROM analytics_plan plan
JOIN LATERAL (
    SELECT d.subject FROM analytics_deltas d
    WHERE d.experiment_key = plan.experiment_key AND d.delta IS NOT NULL
    UNION ALL
    SELECT x.subject FROM {exposure} x
    WHERE x.experiment_id = plan.experiment_id AND {exposure_in_window}
) AS touched ON true
WHERE NOT plan.recomputed
"""

# Each subject to look at, as of `after` (before_*) and as of `upto` (after_*): how many
# variants it was exposed to, and for a unit (one variant) that variant and its attributes.
# Touched subjects of experiments folded by deltas (their exposures looked up by
# (experiment, subject)); every exposed subject of those recomputed, with nothing before.
_MEMBERSHIP = """
CREATE TEMPORARY TABLE analytics_membership ON COMMIT DROP AS
SELECT t.experiment_id, t.experiment_key, t.subject, x.*
FROM analytics_touched t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE {exposure_after}) AS before_count,
           min(x.variant) FILTER (WHERE {exposure_after}) AS before_variant,
           (array_agg(x.attributes) FILTER (WHERE {exposure_after}))[1] AS before_attributes,
           count(*) AS after_count,
           min(x.variant) AS after_variant,
           (array_agg(x.attributes))[1] AS after_attributes
    FROM {exposure} x
    WHERE x.experiment_id = t.experiment_id AND x.subject = t.subject AND {exposure_upto}
) AS x
UNION ALL
SELECT x.experiment_id, plan.experiment_key, x.subject, 0, NULL, NULL,
       count(*), min(x.variant), (array_agg(x.attributes))[1]
FROM analytics_plan plan
JOIN {exposure} x ON x.experiment_id = plan.experiment_id
WHERE plan.recomputed AND x.experiment_id = ANY(%(recomputed)s::bigint[]) AND {exposure_upto}
GROUP BY x.experiment_id, plan.experiment_key, x.subject
"""

# Every (unit, metric) the groups need, with its membership as of both bounds, its value as
# of `upto` and the window's delta: the value from the upsert when the window changed it (a
# window that starts the log finds every value there), else looked up by its unique key in a
# LATERAL subquery, run per row whatever the planner believes: the table's statistics may
# date from when it held none of this experiment's rows, and a planner that thinks so picks
# a join that compares every unit with every stored value (a key left to a join filter).
_UNITS = """
CREATE TEMPORARY TABLE analytics_units ON COMMIT DROP AS
SELECT mb.experiment_id, mb.before_count, mb.before_variant, mb.before_attributes,
       mb.after_count, mb.after_variant, mb.after_attributes, m.key AS metric, m.type,
       COALESCE(u.value, v.value, 0) AS after_value, COALESCE(d.delta, 0) AS delta
FROM analytics_membership mb
JOIN {metric} m ON m.experiment_id = mb.experiment_id
LEFT JOIN analytics_upserted u
  ON u.experiment_key = mb.experiment_key AND u.metric = m.key AND u.subject = mb.subject
LEFT JOIN analytics_deltas d
  ON d.experiment_key = mb.experiment_key AND d.metric = m.key AND d.subject = mb.subject
LEFT JOIN LATERAL (
    SELECT v.value FROM analytics_subjectmetricvalue v
    WHERE u.value IS NULL AND %(after_seq)s + %(after_xid)s > 0
      AND v.experiment_key = mb.experiment_key AND v.metric = m.key AND v.subject = mb.subject
    LIMIT 1
) AS v ON true
WHERE mb.after_count = 1 OR mb.before_count = 1
"""

# What the touched units bring to each group as of `upto` (+) minus as of `after` (−): a
# unit's value before the window is its value less the window's delta (an experiment
# recomputed has no unit before: its membership counts none).
_GROUP_CHANGES = """
WITH sides AS (
    SELECT 1 AS sign, after_variant AS variant, after_attributes AS attributes, metric, type,
           after_value AS value
    FROM analytics_units WHERE experiment_id = %(experiment_id)s AND after_count = 1
    UNION ALL
    SELECT -1, before_variant, before_attributes, metric, type, after_value - delta
    FROM analytics_units WHERE experiment_id = %(experiment_id)s AND before_count = 1
), xs AS (
    SELECT sign, variant, attributes, metric,
           CASE WHEN type = 'binomial' THEN CASE WHEN value > 0 THEN 1 ELSE 0 END::numeric
                ELSE value END AS x
    FROM sides
), cells AS (
    SELECT metric, variant, sign{breakdown_values},
           count(*) AS n, sum(x) AS total, sum(x * x) AS total_squares
    FROM xs
    GROUP BY metric, variant, sign{breakdown_keys}
), groups AS (
    SELECT metric, '' AS attribute, NULL::text AS attribute_value, variant, sign, n, total,
           total_squares
    FROM cells{breakdown_groups}
)
INSERT INTO analytics_variantmetricstats AS s
    (experiment_key, metric, attribute, attribute_value, variant, units, total, total_squares)
SELECT %(experiment_key)s, metric, attribute, attribute_value, variant,
       sum(sign * n), sum(sign * total), sum(sign * total_squares)
FROM groups
GROUP BY metric, attribute, attribute_value, variant
HAVING sum(sign * n) <> 0 OR sum(sign * total) <> 0 OR sum(sign * total_squares) <> 0
ON CONFLICT ON CONSTRAINT variantmetricstats_unique DO UPDATE
SET units = s.units + EXCLUDED.units, total = s.total + EXCLUDED.total,
    total_squares = s.total_squares + EXCLUDED.total_squares
"""


def _group_changes(attributes: list[str]) -> str:
    """_GROUP_CHANGES for an experiment broken down by `attributes` (parameters a0, a1…):
    the units are summed per cell (metric, variant, side, breakdown values) first, then
    each cell counts once overall and once per attribute."""
    names = [f"a{number}" for number in range(len(attributes))]
    return _GROUP_CHANGES.format(
        breakdown_values="".join(f", attributes ->> %({name})s AS value_{name}" for name in names),
        breakdown_keys="".join(f", value_{name}" for name in names),
        breakdown_groups="".join(
            f"\n    UNION ALL\n    SELECT metric, %({name})s, value_{name}, variant, sign, n, "  # noqa: S608 - names of this function; the attribute is a parameter
            "total, total_squares FROM cells"
            for name in names
        ),
    )


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
    (experiment_key, units, multiple_exposures, excluded_events, configuration, computed_at)
VALUES (%(experiment_key)s, %(units)s::jsonb, %(multiple)s, 0, %(configuration)s, now())
ON CONFLICT (experiment_key) DO UPDATE
SET units = EXCLUDED.units, multiple_exposures = EXCLUDED.multiple_exposures,
    configuration = EXCLUDED.configuration, computed_at = EXCLUDED.computed_at
"""


def _configuration(attributes: list[str] | None, metrics: list[str]) -> str:
    return json.dumps({"metrics": metrics, "breakdown_attributes": sorted(attributes or [])})


class ExperimentProjection:
    name = "experiments"
    sources: tuple[str, ...] = (
        ingest_selectors.PREDICTION_LOG,
        ingest_selectors.FEEDBACK_LOG,
        experiment_selectors.EXPOSURE_LOG,
    )
    # 2: out-of-bounds feedback left out and counted; plans by index lookups.
    version = 2

    def _sql(self, template: str) -> str:
        return template.format(
            feedback=ingest_selectors.FEEDBACK_LOG,
            prediction=ingest_selectors.PREDICTION_LOG,
            exposure=experiment_selectors.EXPOSURE_LOG,
            experiment=experiment_selectors.EXPERIMENT_FACTS,
            metric=experiment_selectors.METRIC_FACTS,
            feedback_in_bounds=ingest_selectors.feedback_in_bounds_sql("f"),
            feedback_in_window=in_window("f"),
            prediction_in_window=in_window("p"),
            exposure_in_window=in_window("x"),
            prediction_upto=at_or_before("p", "upto"),
            feedback_after=at_or_before("f", "after"),
            exposure_after=at_or_before("x", "after"),
            exposure_upto=at_or_before("x", "upto"),
        )

    def fold(self, cursor: CursorWrapper, window: Window) -> FoldOutcome:
        params: dict[str, Any] = window.params()
        outcome = FoldOutcome()
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(self._sql(_DELTAS), params)
        # Autovacuum never analyses temporary tables: without this the planner guesses a
        # handful of rows and may pick nested loops over hundreds of thousands.
        cursor.execute("ANALYZE analytics_deltas")
        cursor.execute(
            "CREATE TEMPORARY TABLE analytics_upserted (experiment_key text, metric text, "
            "subject text, value numeric) ON COMMIT DROP"
        )
        cursor.execute(_UPSERT_VALUES)
        cursor.execute("ANALYZE analytics_upserted")
        cursor.execute(_EXCLUDED)
        cursor.execute("SELECT COALESCE(sum(excluded), 0) FROM analytics_deltas")
        row = cursor.fetchone()
        outcome.excluded = int(row[0]) if row else 0
        plan = self._plan(cursor, params)
        cursor.execute(self._sql(_TOUCHED), params)
        cursor.execute("ANALYZE analytics_touched")
        cursor.execute(self._sql(_MEMBERSHIP), params)
        # Each experiment's statements below read its own rows of these two.
        cursor.execute("CREATE INDEX ON analytics_membership (experiment_id)")
        cursor.execute("ANALYZE analytics_membership (experiment_id, experiment_key, subject)")
        cursor.execute(self._sql(_UNITS), params)
        cursor.execute("CREATE INDEX ON analytics_units (experiment_id)")
        cursor.execute("ANALYZE analytics_units (experiment_id)")
        for key, recovering in plan:
            recomputed = base.run_unit(
                cursor,
                projection=self.name,
                unit=key,
                label=f"experiment {key}",
                window=window,
                outcome=outcome,
                work=functools.partial(self.recompute, cursor, experiment_key=key),
            )
            if recomputed and recovering:
                base.unit_recovered(cursor, projection=self.name, unit=key)
                outcome.recomputed_units.append(key)
        for name in _TEMPORARY:
            cursor.execute(f"DROP TABLE {name}")
        return outcome

    def _plan(self, cursor: CursorWrapper, params: dict[str, Any]) -> list[tuple[str, bool]]:
        """Record the experiments to fold in analytics_plan: those the window touched,
        less those failed and waiting, plus those failed and due (recomputed). Their keys,
        each with whether it is recovering from a failure; the ids of those recomputed go
        in params["recomputed"]."""
        failed = set(base.units_failed(cursor, self.name))
        due = set(base.units_due(cursor, self.name))
        cursor.execute(self._sql(_TOUCHED_EXPERIMENTS), {**params, "due": sorted(due)})
        plan: dict[str, list[Any]] = {
            "ids": [],
            "keys": [],
            "attributes": [],
            "configurations": [],
            "recomputed": [],
        }
        for experiment_id, key, attributes, metrics, stored in cursor.fetchall():
            if key in failed and key not in due:
                continue
            configuration = _configuration(attributes, list(metrics))
            plan["ids"].append(experiment_id)
            plan["keys"].append(key)
            plan["attributes"].append(json.dumps(list(attributes or [])))
            plan["configurations"].append(configuration)
            plan["recomputed"].append(configuration != stored or key in due)
        cursor.execute(_PLAN, plan)
        params["recomputed"] = [
            experiment_id
            for experiment_id, recomputed in zip(plan["ids"], plan["recomputed"], strict=True)
            if recomputed
        ]
        return [(key, key in due) for key in plan["keys"]]

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
        breakdown: list[str] = json.loads(attributes)
        params: dict[str, Any] = {
            "experiment_id": experiment_id,
            "experiment_key": experiment_key,
            **{f"a{number}": attribute for number, attribute in enumerate(breakdown)},
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
        cursor.execute(_group_changes(breakdown), params)
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


experiment_projection = base.register(ExperimentProjection())

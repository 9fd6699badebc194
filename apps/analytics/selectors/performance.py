"""Model performance (API.md "Performance"): per version × bucket × segment, from the projection.

Figures come from the `performance` projection's hourly cells (projections/performance.py);
a day bucket sums its hours. A range selects whole buckets: every bucket overlapping
[start, end), so whole-hour (whole-day) bounds select exactly [start, end).

The metrics of a row are computed from its summed cells by apps.analytics.performance_metrics.

Interface for threshold rules (apps.monitoring): `performance_metric_value` and
`PERFORMANCE_METRICS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from apps.analytics.models import SegmentKind
from apps.analytics.performance_metrics import RELATIVE_ERROR, Totals, metrics_compute
from apps.analytics.selectors.status import stale_warning
from apps.core.errors import ValidationFailed
from apps.registry import selectors as registry_selectors

# Metric names a rule may watch. Label metrics need truth (label feedback for
# classification, value feedback for regression); the others count every prediction.
LABEL_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "mae", "rmse")
PREDICTION_METRICS: tuple[str, ...] = (
    "error_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "count",
)
PERFORMANCE_METRICS: tuple[str, ...] = LABEL_METRICS + PREDICTION_METRICS

BUCKETS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_RANGE = timedelta(days=7)
# The longest range one request may ask for, per bucket (the answer is not paginated).
MAX_RANGE: dict[str, timedelta] = {"hour": timedelta(days=92), "day": timedelta(days=1830)}

__all__ = [
    "BUCKETS",
    "PERFORMANCE_METRICS",
    "RELATIVE_ERROR",
    "model_performance",
    "performance_metric_value",
    "time_parse",
]


# --- reads of the cells ---------------------------------------------------------------------

Key = tuple[int, str, str, datetime]  # version id, segment kind, segment value, bucket start

# One statement, so the three tables are read in one snapshot (a fold commits all at once):
# part 0 the cells, part 1 their latency bins, part 2 their confusion pairs (multiclass).
_READ = """
WITH chosen AS (
    SELECT id, kind, value FROM analytics_performancesegment
    WHERE model_id = %(model_id)s AND attribute = %(attribute)s{only}
)
SELECT 0 AS part, c.model_version_id, g.kind, g.value,
       date_trunc(%(bucket)s, c.bucket, 'UTC') AS start, NULL::int AS bin,
       NULL::text AS predicted, NULL::text AS actual,
       sum(c.predictions) AS count, sum(c.labeled), sum(c.errors),
       sum(c.true_positives), sum(c.false_positives), sum(c.false_negatives),
       sum(c.true_negatives), sum(c.absolute_error_sum), sum(c.squared_error_sum),
       sum(c.excluded)
FROM analytics_performancecell c JOIN chosen g ON g.id = c.segment_id
WHERE {where}
GROUP BY c.model_version_id, g.kind, g.value, 5
UNION ALL
SELECT 1, c.model_version_id, g.kind, g.value, date_trunc(%(bucket)s, c.bucket, 'UTC'), c.bin,
       NULL, NULL, sum(c.count), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM analytics_latencycell c JOIN chosen g ON g.id = c.segment_id
WHERE {where}
GROUP BY c.model_version_id, g.kind, g.value, 5, c.bin
UNION ALL
SELECT 2, c.model_version_id, g.kind, g.value, date_trunc(%(bucket)s, c.bucket, 'UTC'), NULL,
       c.predicted, c.actual, sum(c.count), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM analytics_confusioncell c JOIN chosen g ON g.id = c.segment_id
WHERE {where} AND %(multiclass)s
GROUP BY c.model_version_id, g.kind, g.value, 5, c.predicted, c.actual
ORDER BY part
"""

_WHERE = "c.model_version_id = ANY(%(versions)s) AND c.bucket >= %(lower)s AND c.bucket < %(upper)s"


@dataclass(frozen=True)
class Selection:
    """Which cells to read: a model's versions, one attribute ('' = all), whole hours."""

    model_id: int
    task: str
    version_ids: tuple[int, ...]
    attribute: str
    lower: datetime
    upper: datetime
    bucket: str = "hour"
    # A single segment (kind, value), or every segment of the attribute.
    only: tuple[str, str] | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model_id": self.model_id,
            "attribute": self.attribute,
            "versions": list(self.version_ids),
            "lower": self.lower,
            "upper": self.upper,
            "bucket": self.bucket,
            "multiclass": self.task == "multiclass_classification",
        }
        if self.only is not None:
            params["kind"], params["value"] = self.only
        return params

    def sql(self) -> str:
        only = " AND kind = %(kind)s AND value = %(value)s" if self.only else ""
        return _READ.format(where=_WHERE, only=only)


def _totals(selection: Selection) -> dict[Key, Totals]:
    """The summed cells per (version, segment, bucket start) of a selection."""
    found: dict[Key, Totals] = {}
    with connection.cursor() as cursor:
        cursor.execute(selection.sql(), selection.params())
        rows = cursor.fetchall()
    for part, version, kind, value, start, index, guess, truth, count, *sums in rows:
        key = (version, kind, value, start)
        if part == 0:
            found[key] = Totals(
                count=int(count),
                labeled=int(sums[0]),
                errors=int(sums[1]),
                true_positives=int(sums[2]),
                false_positives=int(sums[3]),
                false_negatives=int(sums[4]),
                true_negatives=int(sums[5]),
                absolute_error_sum=Decimal(sums[6]),
                squared_error_sum=Decimal(sums[7]),
                excluded=int(sums[8]),
            )
        elif part == 1:
            found[key].latency[int(index)] = int(count)
        else:
            confusion = found[key].confusion
            confusion[(guess, truth)] = confusion.get((guess, truth), 0) + int(count)
    return found


# --- request validation ---------------------------------------------------------------------


def time_parse(value: str | None, *, field_name: str) -> datetime | None:
    """An RFC 3339 time with its offset, in UTC; ValidationFailed otherwise (None passes)."""
    if value is None or value == "":
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationFailed(
            f"{field_name} is not an RFC 3339 time.",
            details=[
                {
                    "field": field_name,
                    "message": "Use e.g. 2026-11-26T10:00:00Z (URL-encode '+' as %2B).",
                }
            ],
        )
    _require_aware(parsed, field_name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(
            f"{field_name} is out of range.",
            details=[{"field": field_name, "message": "The time in UTC is out of range."}],
        ) from None


def _require_aware(value: datetime, field_name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(
            f"{field_name} has no timezone.",
            details=[{"field": field_name, "message": "Give an offset or Z."}],
        )


def _floor(value: datetime, step: timedelta) -> datetime:
    value = value.astimezone(UTC)
    if step == BUCKETS["day"]:
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


def _ceil(value: datetime, step: timedelta) -> datetime:
    floored = _floor(value, step)
    if floored == value:
        return floored
    try:
        return floored + step
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _range(
    start: datetime | None, end: datetime | None, *, bucket: str, limit: timedelta | None
) -> tuple[datetime, datetime]:
    """[start, end) defaulted (the last 7 days) and checked; ValidationFailed when absurd."""
    for value, name in ((start, "start"), (end, "end")):
        if value is not None:
            _require_aware(value, name)
    if end is None:
        end = datetime.now(UTC) if start is None else max(datetime.now(UTC), start)
    if start is None:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:
            start = datetime.min.replace(tzinfo=UTC)
    if end <= start:
        raise ValidationFailed(
            "end must be after start.",
            details=[{"field": "end", "message": "Give an end later than start."}],
        )
    if limit is not None and end - start > limit:
        raise ValidationFailed(
            f"The range is too long for bucket={bucket}.",
            details=[{"field": "start", "message": f"At most {limit.days} days per request."}],
        )
    return start, end


def _segment_attribute(model: Any, attribute: str, field_name: str) -> None:
    if attribute not in (model.segment_attributes or []):
        allowed = ", ".join(model.segment_attributes or []) or "none configured"
        raise ValidationFailed(
            f"{field_name} must be one of the model's segment_attributes ({allowed}).",
            details=[{"field": field_name, "message": f"Unknown attribute {attribute!r}."}],
        )


def _version_ids(model: str, version: str | None) -> tuple[dict[int, str], tuple[int, ...]]:
    names = dict(registry_selectors.model_version_list(model=model).values_list("id", "version"))
    if version is None:
        return names, tuple(sorted(names))
    chosen = registry_selectors.model_version_get(model=model, version=version)
    return names, (chosen.id,)


# --- the reads ------------------------------------------------------------------------------


def _segment_output(attribute: str | None, kind: str, value: str) -> dict[str, str | None] | None:
    if attribute is None:
        return None
    shown = {SegmentKind.VALUE: value, SegmentKind.OTHER: "other"}.get(SegmentKind(kind))
    return {attribute: shown}


def _segment_order(kind: str, value: str) -> tuple[int, str]:
    return ({"all": 0, "value": 1, "absent": 2, "other": 3}[kind], value)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def model_performance(
    *,
    model: str,
    version: str | None = None,
    segment: str | None = None,
    bucket: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """API.md's performance answer: one row per bucket × version × segment with data.

    Raises NotFound (model, version) and ValidationFailed (bucket, segment, range).
    """
    found = registry_selectors.model_get(name=model)
    bucket = bucket or "hour"
    if bucket not in BUCKETS:
        raise ValidationFailed(
            "bucket must be hour or day.",
            details=[{"field": "bucket", "message": f"Unknown bucket {bucket!r}."}],
        )
    if segment is not None:
        _segment_attribute(found, segment, "segment")
    start, end = _range(start, end, bucket=bucket, limit=MAX_RANGE[bucket])
    names, version_ids = _version_ids(found.name, version)
    step = BUCKETS[bucket]
    selection = Selection(
        model_id=found.id,
        task=found.task,
        version_ids=version_ids,
        attribute=segment or "",
        lower=_floor(start, step),
        upper=_ceil(end, step),
        bucket=bucket,
    )
    totals = _totals(selection)
    order = sorted(totals, key=lambda key: (key[3], key[0], _segment_order(key[1], key[2])))
    return {
        "model": found.name,
        "bucket": bucket,
        "warning": stale_warning("performance", str(found.id)),
        "results": [_row(found.task, names, segment, key, totals[key]) for key in order],
    }


def _row(
    task: str, names: Mapping[int, str], attribute: str | None, key: Key, totals: Totals
) -> dict[str, Any]:
    version_id, kind, value, start = key
    return {
        "start": _time(start),
        "version": names.get(version_id),
        "segment": _segment_output(attribute, kind, value),
        "count": totals.count,
        "labeled": totals.labeled,
        "errors": totals.errors,
        **metrics_compute(task, totals),
        "excluded_events": totals.excluded,
    }


def _only(segment: Mapping[str, str] | None, model: Any) -> tuple[str, tuple[str, str] | None]:
    if not segment:
        return "", None
    if len(segment) != 1:
        raise ValidationFailed(
            "A segment names one attribute.",
            details=[{"field": "segment", "message": "Give at most one attribute."}],
        )
    ((attribute, value),) = segment.items()
    _segment_attribute(model, attribute, "segment")
    if value == "other":
        return attribute, (SegmentKind.OTHER.value, "")
    return attribute, (SegmentKind.VALUE.value, str(value))


def _merged(rows: Iterable[Totals]) -> Totals:
    total = Totals()
    for row in rows:
        total.add(row)
    return total


def performance_metric_value(
    *,
    model: str,
    metric: str,
    start: datetime,
    end: datetime,
    segment: Mapping[str, str] | None = None,
    version: str | None = None,
) -> tuple[float | None, int]:
    """One metric of `model` over [start, end): (value, sample size).

    All versions together unless `version` is given; the whole traffic unless `segment`
    names one attribute and value ({"country": "DE"}; "other" is the overflow cell, and a
    value past the attribute's first 100 has no cell of its own: (None, 0)). The sample size
    follows API.md's rules: labeled predictions for label metrics (LABEL_METRICS),
    predictions otherwise. The value is None when the metric does not apply to the model's
    task or there is no data — except `count`, which is 0 then. Buckets are whole UTC hours:
    every hour overlapping [start, end) counts, so pass whole-hour bounds for an exact
    window. Raises NotFound (unknown model or version) and ValidationFailed (unknown metric,
    naive times, end not after start, a segment of more than one attribute or an attribute
    not among the model's segment_attributes).
    """
    if metric not in PERFORMANCE_METRICS:
        raise ValidationFailed(
            f"Unknown performance metric {metric!r}.",
            details=[{"field": "metric", "message": f"One of {', '.join(PERFORMANCE_METRICS)}."}],
        )
    found = registry_selectors.model_get(name=model)
    start, end = _range(start, end, bucket="hour", limit=None)
    attribute, only = _only(segment, found)
    _, version_ids = _version_ids(found.name, version)
    step = BUCKETS["hour"]
    selection = Selection(
        model_id=found.id,
        task=found.task,
        version_ids=version_ids,
        attribute=attribute,
        lower=_floor(start, step),
        upper=_ceil(end, step),
        only=only,
    )
    totals = _merged(_totals(selection).values())
    sample = totals.labeled if metric in LABEL_METRICS else totals.count
    if metric == "count":
        return float(totals.count), totals.count
    return metrics_compute(found.task, totals)[metric], sample

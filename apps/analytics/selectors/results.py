"""Experiment results (API.md "Results") from the A/B projection's sufficient statistics."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

from apps.analytics import stats
from apps.analytics.models import ExperimentSummary, ProjectionState, VariantMetricStats
from apps.analytics.selectors.status import stale_warning
from apps.core.errors import ValidationFailed
from apps.experiments import selectors as experiment_selectors


def _computed_at(name: str) -> str | None:
    state = ProjectionState.objects.filter(name=name).first()
    if state is None or state.updated_at is None:
        return None
    return state.updated_at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _metric_results(experiment: Any, rows: Iterable[VariantMetricStats]) -> list[dict[str, Any]]:
    by_metric: dict[str, dict[str, VariantMetricStats]] = {}
    for row in rows:
        by_metric.setdefault(row.metric, {})[row.variant] = row
    variants = [variant.key for variant in experiment.variants.all()]
    results = []
    for metric in experiment.metrics.all():
        found = by_metric.get(metric.key, {})
        groups = {
            key: stats.GroupStats.from_sql(
                count=found[key].units, avg=found[key].mean, var_samp=found[key].variance
            )
            if key in found
            else stats.GroupStats(units=0)
            for key in variants
        }
        result = stats.compare_metric(
            groups, control=experiment.control, alpha=experiment.alpha, mde=experiment.mde
        )
        results.append({"metric": metric.key, "type": metric.type, "variants": result.as_dicts()})
    return results


def _srm(experiment: Any, units: dict[str, int]) -> dict[str, Any]:
    weights = {variant.key: variant.weight for variant in experiment.variants.all()}
    known = {key: count for key, count in units.items() if key in weights}
    return stats.sample_ratio_mismatch(known, weights).as_dict()


def _segment_units(rows: list[VariantMetricStats]) -> dict[str, int]:
    units: dict[str, int] = {}
    for row in rows:
        units[row.variant] = max(units.get(row.variant, 0), row.units)
    return units


def experiment_results(*, key: str, segment: str | None = None) -> dict[str, Any]:
    """API.md's results of one experiment, overall or per value of one breakdown attribute."""
    experiment = experiment_selectors.experiment_get(key=key)
    if segment is not None and segment not in (experiment.breakdown_attributes or []):
        allowed = ", ".join(experiment.breakdown_attributes or []) or "none configured"
        raise ValidationFailed(
            f"segment must be one of the experiment's breakdown_attributes ({allowed}).",
            details=[{"field": "segment", "message": f"Unknown breakdown attribute {segment!r}."}],
        )
    summary = ExperimentSummary.objects.filter(experiment_key=key).first()
    head: dict[str, Any] = {
        "experiment": key,
        "status": experiment.status,
        "computed_at": _computed_at("experiments"),
        "multiple_exposures": summary.multiple_exposures if summary else 0,
        "excluded_events": summary.excluded_events if summary else 0,
        "warning": stale_warning("experiments", key),
    }
    rows = list(
        VariantMetricStats.objects.filter(experiment_key=key, attribute=segment or "").order_by(
            "attribute_value", "metric", "variant"
        )
    )
    if segment is None:
        units = dict(summary.units) if summary else {}
        return {
            **head,
            "srm": _srm(experiment, units),
            "metrics": _metric_results(experiment, rows),
        }
    by_value: dict[str | None, list[VariantMetricStats]] = {}
    for row in rows:
        by_value.setdefault(row.attribute_value, []).append(row)
    values = [
        {
            "value": value,
            "srm": _srm(experiment, _segment_units(value_rows)),
            "metrics": _metric_results(experiment, value_rows),
        }
        for value, value_rows in by_value.items()
    ]
    return {**head, "segment": segment, "values": values}

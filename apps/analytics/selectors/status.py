"""How the projections are doing: lag, the last fold, skipped triggers, failures.

The same figures feed /readyz (a projection or a unit failing makes it `degraded`), /metrics
(Prometheus gauges and counters) and the admin.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.analytics.models import ProjectionHealth, ProjectionState, UnitFailure
from apps.analytics.projections.base import projections

LAG_COUNT_CAP = 1_000_000


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _lag(state: ProjectionState | None, sources: tuple[str, ...]) -> dict[str, Any]:
    xid, seq = (state.xid, state.seq) if state else (0, 0)
    behind = 0
    oldest: datetime | None = None
    with connection.cursor() as cursor:
        for source in sources:
            cursor.execute(
                f"SELECT count(*), min(received_at) FROM (SELECT received_at FROM {source} "  # noqa: S608 - relation names of the apps' selectors
                "WHERE (xid, seq) > (%s, %s) LIMIT %s) AS behind",
                [xid, seq, LAG_COUNT_CAP],
            )
            row = cursor.fetchone()
            if row is None:
                continue
            behind += int(row[0])
            if row[1] is not None and (oldest is None or row[1] < oldest):
                oldest = row[1]
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return {
        "events_behind": behind,
        "oldest_unfolded_age_seconds": round(max(age, 0.0), 3),
        "updated_at": _iso(state.updated_at) if state else None,
    }


def _health(health: ProjectionHealth | None, failures: list[UnitFailure]) -> dict[str, Any]:
    failing = health is not None and health.consecutive_failures > 0
    entry: dict[str, Any] = {
        "status": "failing" if failing else ("degraded" if failures else "ok"),
        "last_fold_seconds": health.last_fold_seconds if health else None,
        "last_fold_events": health.last_fold_events if health else 0,
        "last_fold_at": _iso(health.last_fold_at) if health else None,
        "window_events": health.chunk if health else None,
        "skipped_triggers": health.skipped_triggers if health else 0,
        "timeouts": health.timeouts if health else 0,
        "failures": health.failures if health else 0,
    }
    if failing and health is not None:
        entry["error"] = health.last_error
        entry["failed_window"] = health.failed_window
        entry["retry_at"] = _iso(health.retry_at)
    entry["failing_units"] = [
        {
            "unit": failure.label,
            "error": failure.error,
            "attempts": failure.attempts,
            "since": _iso(failure.first_failed_at),
            "retry_at": _iso(failure.retry_at),
        }
        for failure in failures
    ]
    return entry


def projection_status_report() -> dict[str, Any]:
    """Per projection: lag, the last fold, skips, timeouts and what is failing (/readyz)."""
    states = {state.name: state for state in ProjectionState.objects.all()}
    healths = {health.name: health for health in ProjectionHealth.objects.all()}
    failures: dict[str, list[UnitFailure]] = {}
    for failure in UnitFailure.objects.order_by("projection", "unit"):
        failures.setdefault(failure.projection, []).append(failure)
    report = {}
    for projection in projections():
        state = states.get(projection.name)
        report[projection.name] = {
            **_lag(state, projection.sources),
            "excluded_events": state.excluded_events if state else 0,
            "rebuilding": state is not None and state.version != projection.version,
            **_health(healths.get(projection.name), failures.get(projection.name, [])),
        }
    return report


def stale_warning(projection: str, unit: str) -> str | None:
    """Why a unit's figures are not up to date (its fold failed), or None when they are."""
    failure = UnitFailure.objects.filter(projection=projection, unit=unit).first()
    if failure is None:
        return None
    return (
        f"These figures stopped updating at {_iso(failure.first_failed_at)}: folding "
        f"{failure.label} failed ({failure.error}); it is retried from the log at "
        f"{_iso(failure.retry_at)}."
    )


def projection_problems(report: dict[str, Any]) -> list[str]:
    """What makes /readyz `degraded`: failing projections and failing units, in words."""
    problems = []
    for name, entry in report.items():
        if entry.get("status") == "failing":
            problems.append(f"projection {name} is failing: {entry.get('error', '')}")
        problems += [
            f"projection {name}: {unit['unit']} is failing: {unit['error']}"
            for unit in entry.get("failing_units", [])
        ]
    return problems


def projection_gauges() -> Iterable[Metric]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=["projection"])

    def counter(name: str, text: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, text, labels=["projection"])

    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "events_behind": gauge("kaizen_projection_lag_events", "Events not yet folded"),
        "oldest_unfolded_age_seconds": gauge(
            "kaizen_projection_lag_seconds", "Age of the oldest event not yet folded"
        ),
        "last_fold_seconds": gauge(
            "kaizen_projection_last_fold_seconds", "Duration of the last fold that committed"
        ),
        "last_fold_events": gauge(
            "kaizen_projection_last_fold_events", "Events of the last fold that committed"
        ),
        "window_events": gauge("kaizen_projection_window_events", "Events the next window holds"),
        "failing": gauge("kaizen_projection_failing", "1 while the projection's folds fail"),
        "failing_units": gauge(
            "kaizen_projection_failing_units", "Units (experiments, models) failing to fold"
        ),
        "skipped_triggers": counter(
            "kaizen_projection_skipped_triggers",
            "Scheduled folds skipped because another process was folding",
        ),
        "timeouts": counter("kaizen_projection_timeouts", "Folds rolled back past their budget"),
        "failures": counter("kaizen_projection_failures", "Folds that failed and rolled back"),
        "excluded_events": counter(
            "kaizen_projection_excluded_events", "Events left out for numbers out of bounds"
        ),
    }
    for name, entry in projection_status_report().items():
        values = {
            **entry,
            "failing": 1 if entry["status"] == "failing" else 0,
            "failing_units": len(entry["failing_units"]),
        }
        for key, family in families.items():
            value = values.get(key)
            if value is not None:  # no sample rather than NaN (never folded yet)
                family.add_metric([name], float(value))
    yield from families.values()

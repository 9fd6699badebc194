"""Projection lag: events not yet folded and the age of the oldest, per projection."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from prometheus_client.core import GaugeMetricFamily

from apps.analytics.models import ProjectionState
from apps.analytics.projections.base import projections, table

LAG_COUNT_CAP = 1_000_000


def _lag(name: str, sources: tuple[str, ...]) -> dict[str, Any]:
    state = ProjectionState.objects.filter(name=name).first()
    xid, seq = (state.xid, state.seq) if state else (0, 0)
    behind = 0
    oldest: datetime | None = None
    with connection.cursor() as cursor:
        for label in sources:
            cursor.execute(
                f"SELECT count(*), min(received_at) FROM (SELECT received_at FROM {table(label)} "  # noqa: S608 - table names from the model registry
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
        "updated_at": state.updated_at.isoformat() if state and state.updated_at else None,
    }


def projection_lag_report() -> dict[str, Any]:
    """Per projection: events not yet folded and the age of the oldest (for /readyz)."""
    return {
        projection.name: _lag(projection.name, projection.sources) for projection in projections()
    }


def projection_lag_gauges() -> Iterable[GaugeMetricFamily]:
    events = GaugeMetricFamily(
        "kaizen_projection_lag_events", "Events not yet folded", labels=["projection"]
    )
    seconds = GaugeMetricFamily(
        "kaizen_projection_lag_seconds",
        "Age of the oldest event not yet folded",
        labels=["projection"],
    )
    for name, lag in projection_lag_report().items():
        events.add_metric([name], lag["events_behind"])
        seconds.add_metric([name], lag["oldest_unfolded_age_seconds"])
    yield events
    yield seconds

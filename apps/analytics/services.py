"""Use cases of the aggregation workers: catch every projection up, rebuild one from the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apps.analytics.projections import base
from apps.core.errors import NotFound

logger = logging.getLogger(__name__)

# Work that runs after each aggregation (threshold rules, issue 6), registered by its app.
AfterAggregation = Callable[[], dict[str, Any]]
_after_aggregation: dict[str, AfterAggregation] = {}


def register_after_aggregation(name: str, hook: AfterAggregation) -> None:
    _after_aggregation[name] = hook


def aggregations_run(
    *, max_events: int | None = None, progress: base.Progress | None = None
) -> dict[str, Any]:
    """Bring every projection up to date (or `max_events` further each), then run the hooks."""
    folded = {
        projection.name: base.catch_up(projection, max_events=max_events, progress=progress)
        for projection in base.projections()
    }
    report: dict[str, Any] = {"projections": {name: {"folded": n} for name, n in folded.items()}}
    for name, hook in _after_aggregation.items():
        report[name] = hook()
    return report


def projection_rebuild(*, name: str, progress: base.Progress | None = None) -> int:
    """Throw a projection away and fold the whole log again, in chunked transactions."""
    projection = base.projection_get(name)
    if projection is None:
        known = ", ".join(sorted(p.name for p in base.projections()))
        raise NotFound(f"No projection named {name!r}; known: {known}.")
    logger.info("projection.rebuild_started", extra={"projection": name})
    base.reset(projection)
    return base.catch_up(projection, chunk=base.REBUILD_CHUNK, progress=progress)

"""Use cases of the aggregation workers: catch every projection up, rebuild one from the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from apps.analytics.projections import base
from apps.core.errors import NotFound

logger = logging.getLogger(__name__)

# Work that runs after each aggregation (threshold rules, issue 6), registered by its app.
AfterAggregation = Callable[[], dict[str, Any]]
_after_aggregation: dict[str, AfterAggregation] = {}


def register_after_aggregation(name: str, hook: AfterAggregation) -> None:
    _after_aggregation[name] = hook


def _named(name: str) -> base.Projection:
    projection = base.projection_get(name)
    if projection is None:
        known = ", ".join(sorted(p.name for p in base.projections()))
        raise NotFound(f"No projection named {name!r}; known: {known}.")
    return projection


def aggregations_run(
    *,
    max_events: int | None = None,
    chunk: int = base.DEFAULT_CHUNK,
    names: Collection[str] | None = None,
    progress: base.Progress | None = None,
) -> dict[str, Any]:
    """Bring every projection (or those `names`) up to date, then run the hooks.

    Each projection folds windows of at most `chunk` events, one transaction each, and at
    most `max_events` events in this run.
    """
    chosen = base.projections() if names is None else [_named(name) for name in names]
    folded = {
        projection.name: base.catch_up(
            projection, chunk=chunk, max_events=max_events, progress=progress
        )
        for projection in chosen
    }
    report: dict[str, Any] = {"projections": {name: {"folded": n} for name, n in folded.items()}}
    for name, hook in _after_aggregation.items():
        report[name] = hook()
    return report


def projection_rebuild(*, name: str, progress: base.Progress | None = None) -> int:
    """Throw a projection away and fold the whole log again, in chunked transactions."""
    projection = _named(name)
    logger.info("projection.rebuild_started", extra={"projection": name})
    base.reset(projection)
    return base.catch_up(projection, chunk=base.REBUILD_CHUNK, progress=progress)

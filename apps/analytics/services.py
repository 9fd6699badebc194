"""Use cases of the aggregation workers: catch every projection up, rebuild one from the log.

Each projection folds in its own transactions and fails on its own: a projection that fails
is reported (and backs off, see projections/runner.py) while the others keep advancing, and
the hooks registered to run after aggregation (threshold rules) run whatever happened to
the projections, each on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.analytics.models import ProjectionHealth
from apps.analytics.projections import base, health, runner
from apps.core.errors import NotFound, Unavailable, describe_error

logger = logging.getLogger(__name__)

# Work that runs after each aggregation (threshold rules), registered by its app.
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


@dataclass
class _Progress:
    """One projection's part of a run."""

    folded: int = 0
    status: str = "behind"
    error: str | None = None
    retry_at: str | None = None
    # The run has finished with this projection (up to date, its share spent, skipped…).
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"folded": self.folded, "status": self.status}
        if self.error is not None:
            entry["error"] = self.error
        if self.retry_at is not None:
            entry["retry_at"] = self.retry_at
        return entry


@dataclass
class _Run:
    chosen: list[base.Projection]
    max_events: int | None
    chunk: int | None
    deadline: float | None
    wait_busy: bool
    progress: runner.Progress | None
    on_wait: Callable[[str], None] | None = None
    figures: dict[str, _Progress] = field(default_factory=dict)

    def pending(self) -> list[base.Projection]:
        return [p for p in self.chosen if not self.figures[p.name].done]


def aggregations_run(
    *,
    max_events: int | None = None,
    chunk: int | None = None,
    names: Collection[str] | None = None,
    progress: runner.Progress | None = None,
    max_seconds: float | None = None,
    wait_busy: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Bring every projection (or those `names`) up to date, then run the hooks.

    Projections take turns, one window each, so a long backlog in one never holds the others
    back. Each folds at most `max_events` events in this run and no fold starts after
    `max_seconds`. A projection folded by another process at the moment is skipped
    (`wait_busy` False: the scheduled runs) or waited for until the run's time is up
    (`on_wait` is told the first time each is found busy).
    Every projection's entry says how it ended: `up_to_date`, `behind` (its share of the
    run is spent), `skipped` (busy elsewhere), `busy` (still busy when time was up) or
    `failing` (with the error and when it is retried).
    """
    run = _Run(
        chosen=base.projections() if names is None else [_named(name) for name in names],
        max_events=max_events,
        chunk=chunk,
        deadline=None if max_seconds is None else time.monotonic() + max_seconds,
        wait_busy=wait_busy,
        progress=progress,
        on_wait=on_wait,
    )
    run.figures = {projection.name: _Progress() for projection in run.chosen}
    _fold_in_turns(run)
    report: dict[str, Any] = {
        "projections": {name: figures.as_dict() for name, figures in run.figures.items()}
    }
    for name, hook in _after_aggregation.items():
        try:
            report[name] = hook()
        except Exception as error:  # one hook failing never stops the others or the report
            logger.exception("aggregation.hook_failed", extra={"hook": name})
            report[name] = {"status": "failing", "error": describe_error(error)}
    return report


def _fold_in_turns(run: _Run) -> None:
    while pending := run.pending():
        if run.deadline is not None and time.monotonic() >= run.deadline:
            return
        waiting = True
        for projection in pending:
            if run.deadline is not None and time.monotonic() >= run.deadline:
                return
            _take_turn(run, projection)
            waiting = waiting and run.figures[projection.name].status == "busy"
        if waiting:
            time.sleep(runner.BUSY_POLL_SECONDS)


def _take_turn(run: _Run, projection: base.Projection) -> None:
    figures = run.figures[projection.name]
    state = health.health_get(projection.name)
    if state.retry_at is not None and state.retry_at > timezone.now():
        _failing(figures, state)
        return
    remaining = None if run.deadline is None else run.deadline - time.monotonic()
    try:
        folded = runner.fold_next(projection, chunk=run.chunk, timeout=remaining)
    except runner.ProjectionBusy:
        _busy(run, figures, projection.name)
        return
    except runner.FoldTimedOut as timed_out:
        if run.chunk is not None or timed_out.events <= health.MIN_CHUNK:
            _failing(figures, health.health_get(projection.name), error=str(timed_out))
        return  # the next turn folds a smaller window
    except runner.FoldFailed:
        _failing(figures, health.health_get(projection.name))
        return
    _folded(run, figures, projection.name, folded)


def _busy(run: _Run, figures: _Progress, name: str) -> None:
    if not run.wait_busy:
        health.record_skipped(name)
        figures.status, figures.done = "skipped", True
        return
    if figures.status != "busy" and run.on_wait is not None:
        run.on_wait(name)
    figures.status = "busy"


def _folded(run: _Run, figures: _Progress, name: str, folded: int) -> None:
    figures.status = "behind"
    if folded == 0:
        figures.status, figures.done = "up_to_date", True
        return
    figures.folded += folded
    if run.progress is not None:
        run.progress(name, figures.folded)
    if run.max_events is not None and figures.folded >= run.max_events:
        figures.done = True


def _failing(figures: _Progress, state: ProjectionHealth, *, error: str | None = None) -> None:
    figures.status, figures.done = "failing", True
    figures.error = error or state.last_error or None
    figures.retry_at = state.retry_at.isoformat() if state.retry_at else None


def aggregations_run_now() -> dict[str, Any]:
    """POST /api/v1/aggregations/run: every projection up to date, then the rules, within
    KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS; past it, Unavailable naming what still folds
    (the folding goes on in the workers: nothing is lost)."""
    bound = float(settings.KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS)
    report = aggregations_run(max_seconds=bound, wait_busy=True)
    unfinished = [
        {"field": f"projections.{name}", "message": f"{figures['status']} after {bound:g} s"}
        for name, figures in report["projections"].items()
        if figures["status"] in {"behind", "busy"}
    ]
    if unfinished:
        raise Unavailable(
            f"Not every projection could be brought up to date within {bound:g} s; "
            "they keep folding in the workers. Retry later.",
            details=unfinished,
            retry_after=30,
        )
    return report


def projection_rebuild(*, name: str, progress: runner.Progress | None = None) -> int:
    """Throw a projection away and fold the whole log again, in windows sized to their time."""
    projection = _named(name)
    logger.info("projection.rebuild_started", extra={"projection": name})
    return runner.rebuild(projection, progress=progress)

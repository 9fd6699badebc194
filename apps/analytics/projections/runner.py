"""Folding the log into projections: one window per transaction, exactly once, bounded in time.

`fold_next` folds one window (after, upto] in one transaction. It takes the projection's
ProjectionState row with `FOR UPDATE SKIP LOCKED`: a projection being folded elsewhere is
not waited for (ProjectionBusy, the caller decides to skip or to come back). It takes the
safe horizon (no running transaction below it, see apps.events.selectors), picks the window
end at the `chunk`-th event after the watermark, folds, and writes the new watermark in the
same transaction, so a crash anywhere redoes the slice and never double counts.

Bounded in time: the transaction runs under `statement_timeout`, and every statement of the
fold first checks the fold's budget (KAIZEN_FOLD_TIMEOUT_SECONDS, or less when the caller
has less time left). A fold past it rolls back and the next window holds a quarter of the
events (health.py sizes windows from the measured rate, so this is rare). A fold that fails
otherwise rolls back, is recorded with its error and window, and backs off exponentially;
the caller goes on with the other projections.

A projection whose code `version` differs from the one its aggregates were built with is
reset in the first fold that meets it and rebuilt by the following windows.

What stalls a projection: a transaction left open anywhere in the database holds the
horizon back (nothing it could still insert is folded past). Settings bound that with
`idle_in_transaction_session_timeout`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from apps.analytics.projections import base, health
from apps.analytics.projections.base import (
    FoldOutcome,
    FoldTimeout,
    Projection,
    Window,
    is_timeout,
)
from apps.events.selectors import START, Position, safe_horizon

logger = logging.getLogger(__name__)

Progress = Callable[[str, int], None]

# How often a caller waiting for a projection folded elsewhere looks again.
BUSY_POLL_SECONDS = 0.2


class ProjectionBusy(Exception):
    """Another process is folding this projection right now."""


class FoldTimedOut(Exception):
    """The window did not fold within its budget; it was rolled back (nothing lost)."""

    def __init__(self, name: str, events: int, next_chunk: int) -> None:
        super().__init__(f"{name}: a window of {events:,} events timed out")
        self.events = events
        self.next_chunk = next_chunk


class FoldFailed(Exception):
    """The window failed and was rolled back; the projection backs off before retrying."""

    def __init__(self, name: str, failure: health.Failure, error: BaseException) -> None:
        super().__init__(f"{name}: {error}")
        self.failure = failure


class BudgetedCursor(CursorWrapper):
    """A cursor that refuses to start a statement once the fold's time budget is spent."""

    def __init__(self, cursor: CursorWrapper, deadline: float) -> None:
        super().__init__(cursor.cursor, cursor.db)
        self.deadline = deadline

    def execute(self, sql: Any, params: Any = None) -> Any:
        if time.monotonic() > self.deadline:
            raise FoldTimeout("the fold's time budget is spent")
        return super().execute(sql, params)


@dataclass(frozen=True)
class _State:
    position: Position
    version: int


def _lock_state(cursor: CursorWrapper, projection: Projection) -> _State | None:
    """The projection's watermark, its row locked for this transaction; None when busy."""
    name = projection.name
    cursor.execute(
        "INSERT INTO analytics_projectionstate (name, xid, seq, events_folded, excluded_events, "
        "version) VALUES (%s, 0, 0, 0, 0, %s) ON CONFLICT (name) DO NOTHING",
        [name, projection.version],
    )
    cursor.execute(
        "SELECT xid, seq, version FROM analytics_projectionstate WHERE name = %s "
        "FOR UPDATE SKIP LOCKED",
        [name],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return _State(Position(int(row[0]), int(row[1])), int(row[2]))


def _window_end(
    cursor: CursorWrapper, projection: Projection, after: Position, horizon: int, chunk: int
) -> tuple[Position, int] | None:
    """The position of the chunk-th event after `after` (or the last one) and the count."""
    branches = " UNION ALL ".join(
        f"(SELECT xid, seq FROM {source} "  # noqa: S608 - relation names of the apps' selectors
        "WHERE (xid, seq) > (%(xid)s, %(seq)s) AND xid < %(horizon)s "
        "ORDER BY xid, seq LIMIT %(chunk)s)"
        for source in projection.sources
    )
    # The window's last position and size are found in the server: a rebuild's window holds
    # millions of positions, not worth sending over.
    cursor.execute(
        f"WITH candidates AS MATERIALIZED (SELECT xid, seq FROM ({branches}) AS branches "  # noqa: S608 - relation names of the apps' selectors
        "ORDER BY xid, seq LIMIT %(chunk)s), "
        "last AS (SELECT max(xid) AS xid, count(*) AS events FROM candidates) "
        "SELECT last.xid, (SELECT max(seq) FROM candidates WHERE xid = last.xid), last.events "
        "FROM last",
        {"xid": after.xid, "seq": after.seq, "horizon": horizon, "chunk": chunk},
    )
    row = cursor.fetchone()
    if row is None or not row[2]:
        return None
    return Position(int(row[0]), int(row[1])), int(row[2])


def _restart(cursor: CursorWrapper, projection: Projection, built: int) -> None:
    """Throw away aggregates built by another version of the projection's code."""
    logger.warning(
        "projection.rebuilding",
        extra={"projection": projection.name, "from_version": built, "to": projection.version},
    )
    _start_over(cursor, projection)


def _start_over(cursor: CursorWrapper, projection: Projection) -> None:
    """Empty the aggregates, forget failed units, move the watermark to the log's start
    under the current code version (the caller holds the projection's row)."""
    projection.reset(cursor)
    cursor.execute("DELETE FROM analytics_unitfailure WHERE projection = %s", [projection.name])
    cursor.execute(
        "UPDATE analytics_projectionstate SET xid = 0, seq = 0, events_folded = 0, "
        "excluded_events = 0, version = %s, updated_at = NULL WHERE name = %s",
        [projection.version, projection.name],
    )


@dataclass
class _Fold:
    """One fold in progress: what it found, for the records after its transaction."""

    chunk: int
    window: Window | None = None
    events: int = 0
    outcome: FoldOutcome | None = None


def fold_next(
    projection: Projection, *, chunk: int | None = None, timeout: float | None = None
) -> int:
    """Fold the next window; the number of events folded (0: nothing new below the horizon).

    `chunk` fixes the window's size (else it adapts, see health.py); `timeout` bounds the
    fold (else KAIZEN_FOLD_TIMEOUT_SECONDS). Raises ProjectionBusy when another process
    holds the projection, FoldTimedOut or FoldFailed when the window rolled back.
    """
    name = projection.name
    fold = _Fold(chunk=chunk or health.health_get(name).chunk)
    budget = min(timeout or health.fold_timeout_seconds(), health.fold_timeout_seconds())
    started = time.monotonic()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _fold_in_transaction(cursor, projection, fold, deadline=started + budget)
    except ProjectionBusy:
        raise
    except Exception as error:
        elapsed = time.monotonic() - started
        window = str(fold.window) if fold.window else "before the window"
        if is_timeout(error) and fold.window is not None:
            next_chunk = health.record_timeout(
                name, events=fold.events, seconds=elapsed, window=window
            )
            if isinstance(error, SoftTimeLimitExceeded):
                raise  # the task must stop: its time is up
            raise FoldTimedOut(name, fold.events, next_chunk) from error
        failure = health.record_failed(name, error=error, window=window)
        raise FoldFailed(name, failure, error) from error
    if fold.window is not None:
        health.record_folded(
            name,
            events=fold.events,
            seconds=time.monotonic() - started,
            chunk=fold.chunk,
            adapt=chunk is None,
            at=timezone.now(),
        )
        logger.info(
            "projection.folded",
            extra={
                "projection": name,
                "events": fold.events,
                "excluded": fold.outcome.excluded if fold.outcome else 0,
                "seconds": round(time.monotonic() - started, 3),
                "xid": fold.window.upto.xid,
                "seq": fold.window.upto.seq,
            },
        )
    return fold.events


def _fold_in_transaction(
    cursor: CursorWrapper, projection: Projection, fold: _Fold, *, deadline: float
) -> None:
    state = _lock_state(cursor, projection)
    if state is None:
        raise ProjectionBusy(projection.name)
    after = state.position
    if state.version != projection.version:
        _restart(cursor, projection, state.version)
        after = START
    end = _window_end(cursor, projection, after, safe_horizon(), fold.chunk)
    if end is None and not base.units_due(cursor, projection.name):
        cursor.execute(
            "UPDATE analytics_projectionstate SET updated_at = %s WHERE name = %s",
            [timezone.now(), projection.name],
        )
        return
    # Nothing new, but failed units are due: an empty window recomputes them.
    upto, fold.events = end if end is not None else (after, 0)
    fold.window = Window(after=after, upto=upto)
    remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(remaining_ms)])
    fold.outcome = projection.fold(BudgetedCursor(cursor, deadline), fold.window)
    cursor.execute(
        "UPDATE analytics_projectionstate SET xid = %s, seq = %s, "
        "events_folded = events_folded + %s, excluded_events = excluded_events + %s, "
        "updated_at = %s WHERE name = %s",
        [upto.xid, upto.seq, fold.events, fold.outcome.excluded, timezone.now(), projection.name],
    )


def catch_up(
    projection: Projection,
    *,
    chunk: int | None = None,
    max_events: int | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
    wait_busy: bool = False,
) -> int:
    """Fold windows until the projection reaches the horizon, `max_events` or `deadline`
    (time.monotonic()); a window that timed out is retried smaller. Raises FoldFailed,
    ProjectionBusy (unless `wait_busy`: then waits for the other fold), and FoldTimedOut
    only for a window that cannot get smaller."""
    total = 0
    while max_events is None or total < max_events:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        try:
            folded = fold_next(projection, chunk=chunk, timeout=remaining)
        except ProjectionBusy:
            if not wait_busy:
                raise
            time.sleep(BUSY_POLL_SECONDS)
            continue
        except FoldTimedOut as timed_out:
            if chunk is not None or timed_out.events <= health.MIN_CHUNK:
                raise
            continue
        if folded == 0:
            break
        total += folded
        if progress is not None:
            progress(projection.name, total)
    return total


# A rebuild folds the whole log: the fewer windows the cheaper (a subject's rows are rewritten
# once per window that touches it), so its windows start at this size and are sized for half
# the fold timeout, apart from the scheduled folds' sizing.
REBUILD_FIRST_CHUNK = 5_000_000


def rebuild(projection: Projection, *, progress: Progress | None = None) -> int:
    """Throw the projection's aggregates away and fold the whole log again; events folded.

    Waits for a fold in progress elsewhere; a window that times out is retried with a
    quarter of its events."""
    reset(projection)
    chunk, total = REBUILD_FIRST_CHUNK, 0
    target = health.fold_timeout_seconds() / 2
    while True:
        started = time.monotonic()
        try:
            folded = fold_next(projection, chunk=chunk)
        except ProjectionBusy:
            time.sleep(BUSY_POLL_SECONDS)
            continue
        except FoldTimedOut as timed_out:
            if timed_out.events <= health.MIN_CHUNK:
                raise
            chunk = max(health.MIN_CHUNK, timed_out.events // health.GROWTH)
            continue
        if folded == 0:
            return total
        total += folded
        if progress is not None:
            progress(projection.name, total)
        seconds = time.monotonic() - started
        chunk = health.next_chunk(chunk=chunk, events=folded, seconds=seconds, target=target)


def reset(projection: Projection) -> None:
    """Throw the projection's aggregates away and move its watermark to the log's start."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO analytics_projectionstate (name, xid, seq, events_folded, "
            "excluded_events, version) VALUES (%s, 0, 0, 0, 0, %s) ON CONFLICT (name) DO NOTHING",
            [projection.name, projection.version],
        )
        # Waits for a fold in progress: a reset is an operator's explicit request.
        cursor.execute(
            "SELECT 1 FROM analytics_projectionstate WHERE name = %s FOR UPDATE",
            [projection.name],
        )
        _start_over(cursor, projection)

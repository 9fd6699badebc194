"""What a projection is: the event tables it reads, how it folds a window, and its units.

A projection folds a window (after, upto] of the log's (xid, seq) order into its aggregate
tables with set-based SQL (runner.py drives the windows, the watermark and the timing).
`fold` returns what the window did besides its aggregates: events it left out for numbers
out of API.md's bounds, and units (an experiment, a model) whose part of the fold failed.

A unit that fails is isolated, not fatal: its part of the window is rolled back to a
savepoint, the unit is recorded in UnitFailure (in the fold's transaction) and left out of
later windows, and once its backoff has passed a fold recomputes it from the log up to
that fold's window end (`recompute_units`). Every other unit keeps advancing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from apps.core.backoff import backoff_seconds, worth_logging
from apps.core.errors import describe_error
from apps.events.selectors import Position

logger = logging.getLogger(__name__)

# A unit that fails again waits twice as long, up to this.
UNIT_BACKOFF_SECONDS = 5
UNIT_BACKOFF_MAX_SECONDS = 600


@dataclass(frozen=True)
class Window:
    after: Position
    upto: Position

    def params(self) -> dict[str, int]:
        return {
            "after_xid": self.after.xid,
            "after_seq": self.after.seq,
            "upto_xid": self.upto.xid,
            "upto_seq": self.upto.seq,
        }

    def __str__(self) -> str:
        return f"({self.after.xid}, {self.after.seq}] .. ({self.upto.xid}, {self.upto.seq}]"


@dataclass
class FoldOutcome:
    """What folding one window did besides updating the aggregates."""

    # Events of the window left out for a number out of bounds.
    excluded: int = 0
    # Units whose part failed (recorded in UnitFailure) and units recomputed after failing.
    failed_units: list[str] = field(default_factory=list)
    recomputed_units: list[str] = field(default_factory=list)


def in_window(alias: str) -> str:
    """SQL: the row `alias` lies in the window (row comparisons use the (xid, seq) index)."""
    return (
        f"({alias}.xid, {alias}.seq) > (%(after_xid)s, %(after_seq)s) "
        f"AND ({alias}.xid, {alias}.seq) <= (%(upto_xid)s, %(upto_seq)s)"
    )


def at_or_before(alias: str, bound: str) -> str:
    """SQL: the row `alias` lies at or before the window's `after` or `upto` bound."""
    return f"({alias}.xid, {alias}.seq) <= (%({bound}_xid)s, %({bound}_seq)s)"


class Projection(Protocol):
    name: str
    # Relations (views their apps own) whose rows move the watermark: each has the log's
    # (xid, seq) position and received_at.
    sources: tuple[str, ...]
    # Bumped when the projection's code folds differently: the aggregates are rebuilt.
    version: int

    def fold(self, cursor: CursorWrapper, window: Window) -> FoldOutcome: ...

    def reset(self, cursor: CursorWrapper) -> None: ...


_registry: dict[str, Projection] = {}


def register[P: Projection](projection: P) -> P:
    _registry[projection.name] = projection
    return projection


def unregister(name: str) -> None:
    """Forget a projection (tests that register one of their own)."""
    _registry.pop(name, None)


def projections() -> list[Projection]:
    return list(_registry.values())


def projection_get(name: str) -> Projection | None:
    return _registry.get(name)


# --- units: isolation of one experiment's or one model's part of a fold ----------------------


@contextmanager
def unit_savepoint() -> Iterator[None]:
    """A savepoint around one unit's part of a fold; its failure undoes that part only."""
    with transaction.atomic():
        yield


def run_unit(
    cursor: CursorWrapper,
    *,
    projection: str,
    unit: str,
    label: str,
    window: Window,
    outcome: FoldOutcome,
    work: Callable[[], None],
) -> bool:
    """Run one unit's part of a fold in a savepoint; on failure, record it and go on."""
    try:
        with unit_savepoint():
            work()
    except Exception as error:
        if interrupts_fold(error):
            raise
        unit_failed(
            cursor, projection=projection, unit=unit, label=label, window=window, error=error
        )
        outcome.failed_units.append(unit)
        return False
    return True


class FoldTimeout(Exception):
    """A fold ran past its time budget (runner.py rolls it back and shrinks the window)."""


def is_timeout(error: BaseException) -> bool:
    """Whether `error` is the fold running out of time: its budget, its statement_timeout,
    or its Celery task's soft time limit."""
    if isinstance(error, FoldTimeout | SoftTimeLimitExceeded):
        return True
    return isinstance(error.__cause__, psycopg.errors.QueryCanceled)


def interrupts_fold(error: BaseException) -> bool:
    """Whether `error` stops the whole fold rather than one unit: a timeout of the fold or
    of its task, an operator's cancel, or a connection that is gone."""
    if isinstance(error, FoldTimeout | SoftTimeLimitExceeded):
        return True
    cause = error.__cause__
    if isinstance(cause, psycopg.Error):
        state = cause.sqlstate or ""
        # 57: operator intervention (statement timeout, cancel, shutdown); 08: connection.
        return state.startswith(("57", "08")) or cause.sqlstate is None
    return False


def unit_failed(
    cursor: CursorWrapper,
    *,
    projection: str,
    unit: str,
    label: str,
    window: Window,
    error: Exception,
) -> None:
    """Record that `unit` failed in `window` (attempts count up, backoff doubles)."""
    now = timezone.now()
    cursor.execute(
        "SELECT attempts FROM analytics_unitfailure WHERE projection = %s AND unit = %s",
        [projection, unit],
    )
    row = cursor.fetchone()
    attempts = int(row[0]) + 1 if row else 1
    retry_at = now + timedelta(
        seconds=backoff_seconds(attempts, base=UNIT_BACKOFF_SECONDS, cap=UNIT_BACKOFF_MAX_SECONDS)
    )
    cursor.execute(
        "INSERT INTO analytics_unitfailure (projection, unit, label, error, attempts, "
        "first_failed_at, last_failed_at, retry_at, failed_window) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (projection, unit) DO UPDATE SET error = EXCLUDED.error, "
        "attempts = EXCLUDED.attempts, last_failed_at = EXCLUDED.last_failed_at, "
        "retry_at = EXCLUDED.retry_at, failed_window = EXCLUDED.failed_window",
        [projection, unit, label, describe_error(error), attempts, now, now, retry_at, str(window)],
    )
    extra = {"projection": projection, "unit": label, "attempts": attempts, "window": str(window)}
    if worth_logging(attempts):
        logger.error("projection.unit_failed", extra=extra, exc_info=error)
    else:
        logger.warning("projection.unit_failed_again", extra=extra)


def units_failed(cursor: CursorWrapper, projection: str) -> list[str]:
    """Units of `projection` currently recorded as failed (left out of windows)."""
    cursor.execute(
        "SELECT unit FROM analytics_unitfailure WHERE projection = %s ORDER BY unit", [projection]
    )
    return [str(row[0]) for row in cursor.fetchall()]


def units_due(cursor: CursorWrapper, projection: str, now: datetime | None = None) -> list[str]:
    """Failed units of `projection` whose backoff has passed: to recompute in this fold."""
    cursor.execute(
        "SELECT unit FROM analytics_unitfailure WHERE projection = %s AND retry_at <= %s "
        "ORDER BY unit",
        [projection, now or timezone.now()],
    )
    return [str(row[0]) for row in cursor.fetchall()]


def unit_recovered(cursor: CursorWrapper, *, projection: str, unit: str) -> None:
    cursor.execute(
        "DELETE FROM analytics_unitfailure WHERE projection = %s AND unit = %s", [projection, unit]
    )

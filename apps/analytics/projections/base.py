"""The projection machinery: incremental folds of the log by watermark, exactly once.

A projection names the event tables it reads and folds a window (after, upto] of the log's
(xid, seq) order into its aggregate tables with set-based SQL. `fold_next` runs one window
in one transaction: it locks the projection's ProjectionState row (so two workers never
fold the same window; the second waits, then sees the advanced watermark), takes the safe
horizon (no running transaction below it, see apps.events.selectors), picks the window end
at the `chunk`-th event after the watermark, folds, and writes the new watermark — all in
the same transaction, so a crash anywhere redoes the slice and never double counts.

What stalls a projection: a transaction left open anywhere in the database holds the
horizon back (nothing it could still insert is folded past). Settings bound that with
`idle_in_transaction_session_timeout`; folds are capped at `chunk` events per transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from django.apps import apps
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from apps.events.selectors import Position, safe_horizon

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 100_000
# Rebuilds fold bigger windows. A window's joins read the other side of every pair from the
# whole log, and a subject's per-subject rows are rewritten once per window that touches it,
# so the fewer windows the cheaper; a window of 5,000,000 events is one transaction of
# about 20 s on a 2-core machine (the horizon of concurrent folds waits for it).
REBUILD_CHUNK = 5_000_000


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


def in_window(alias: str) -> str:
    """SQL: the row `alias` lies in the window (row comparisons use the (xid, seq) index)."""
    return (
        f"({alias}.xid, {alias}.seq) > (%(after_xid)s, %(after_seq)s) "
        f"AND ({alias}.xid, {alias}.seq) <= (%(upto_xid)s, %(upto_seq)s)"
    )


def at_or_before(alias: str, bound: str) -> str:
    """SQL: the row `alias` lies at or before the window's `after` or `upto` bound."""
    return f"({alias}.xid, {alias}.seq) <= (%({bound}_xid)s, %({bound}_seq)s)"


def table(label: str) -> str:
    """The database table of an event model, by app label ("ingest.Prediction")."""
    return str(apps.get_model(label)._meta.db_table)


class Projection(Protocol):
    name: str
    # Event models whose rows move the watermark, as "app_label.Model".
    sources: tuple[str, ...]

    def fold(self, cursor: CursorWrapper, window: Window) -> None: ...

    def reset(self, cursor: CursorWrapper) -> None: ...


_registry: dict[str, Projection] = {}


def register(projection: Projection) -> Projection:
    _registry[projection.name] = projection
    return projection


def projections() -> list[Projection]:
    return list(_registry.values())


def projection_get(name: str) -> Projection | None:
    return _registry.get(name)


def _lock_state(cursor: CursorWrapper, name: str) -> Position:
    cursor.execute(
        "INSERT INTO analytics_projectionstate (name, xid, seq, events_folded) "
        "VALUES (%s, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
        [name],
    )
    cursor.execute(
        "SELECT xid, seq FROM analytics_projectionstate WHERE name = %s FOR UPDATE", [name]
    )
    row = cursor.fetchone()
    assert row is not None  # noqa: S101 - inserted just above
    return Position(int(row[0]), int(row[1]))


def _window_end(
    cursor: CursorWrapper, projection: Projection, after: Position, horizon: int, chunk: int
) -> tuple[Position, int] | None:
    """The position of the chunk-th event after `after` (or the last one) and the count."""
    branches = " UNION ALL ".join(
        f"(SELECT xid, seq FROM {table(label)} "  # noqa: S608 - table names from the model registry
        "WHERE (xid, seq) > (%(xid)s, %(seq)s) AND xid < %(horizon)s "
        "ORDER BY xid, seq LIMIT %(chunk)s)"
        for label in projection.sources
    )
    # The window's last position and size are found in the server: a rebuild's window holds
    # millions of positions, not worth sending over.
    cursor.execute(
        f"WITH candidates AS MATERIALIZED (SELECT xid, seq FROM ({branches}) AS branches "  # noqa: S608 - table names from the model registry
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


def fold_next(projection: Projection, *, chunk: int = DEFAULT_CHUNK) -> int:
    """Fold the next window of at most `chunk` events; the number of events folded."""
    with transaction.atomic(), connection.cursor() as cursor:
        after = _lock_state(cursor, projection.name)
        horizon = safe_horizon()
        end = _window_end(cursor, projection, after, horizon, chunk)
        now = datetime.now(UTC)
        if end is None:
            cursor.execute(
                "UPDATE analytics_projectionstate SET updated_at = %s WHERE name = %s",
                [now, projection.name],
            )
            return 0
        upto, count = end
        projection.fold(cursor, Window(after=after, upto=upto))
        cursor.execute(
            "UPDATE analytics_projectionstate SET xid = %s, seq = %s, "
            "events_folded = events_folded + %s, updated_at = %s WHERE name = %s",
            [upto.xid, upto.seq, count, now, projection.name],
        )
    logger.info(
        "projection.folded",
        extra={"projection": projection.name, "events": count, "xid": upto.xid, "seq": upto.seq},
    )
    return count


Progress = Callable[[str, int], None]


def catch_up(
    projection: Projection,
    *,
    chunk: int = DEFAULT_CHUNK,
    max_events: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Fold windows until the projection reaches the horizon (or `max_events`)."""
    total = 0
    while max_events is None or total < max_events:
        folded = fold_next(projection, chunk=chunk)
        if folded == 0:
            break
        total += folded
        if progress is not None:
            progress(projection.name, total)
    return total


def reset(projection: Projection) -> None:
    """Throw the projection's aggregates away and move its watermark to the log's start."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_state(cursor, projection.name)
        projection.reset(cursor)
        cursor.execute(
            "UPDATE analytics_projectionstate SET xid = 0, seq = 0, events_folded = 0, "
            "updated_at = NULL WHERE name = %s",
            [projection.name],
        )

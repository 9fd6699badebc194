"""Reads of the log: the unified feed and the safe horizon that watermarks stop at.

Positions are (xid, seq). A row is only handed out once every transaction with a smaller
xid that could still insert rows here has finished (`xid < safe_horizon()`, the oldest
transaction running in this database): a transaction that took a lower sequence number but
commits later can then never appear behind a position already handed out. A long-open
transaction therefore holds the feed and projections back;
`idle_in_transaction_session_timeout` (settings) bounds how long.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Q

from apps.core.cursors import cursor_sign, cursor_unsign, forged
from apps.events.models import Event
from apps.events.registry import sources

HEARTBEAT_KEY = "events:heartbeat"
BIGINT_MAX = 2**63 - 1


CURSOR_KIND = "events.feed"


@dataclass(frozen=True, order=True)
class Position:
    xid: int
    seq: int

    def encode(self) -> str:
        """The feed's cursor of this position: signed, so a forged one never reaches SQL."""
        return cursor_sign(CURSOR_KIND, [self.xid, self.seq])

    @classmethod
    def decode(cls, cursor: str, *, field: str = "after") -> Position:
        """The position a feed cursor holds; ValidationFailed naming `field` otherwise."""
        values = cursor_unsign(CURSOR_KIND, cursor, field=field)
        if not (
            isinstance(values, list)
            and len(values) == 2
            and all(type(value) is int and 0 <= value <= BIGINT_MAX for value in values)
        ):
            raise forged(field)
        return cls(values[0], values[1])


START = Position(0, 0)


# The horizon: the snapshot's xmax, lowered to the oldest transaction that is still running
# *in this database* and has an xid (the only ones that can still insert rows here), or is
# prepared. pg_snapshot_xmin alone is cluster-wide: an open transaction in any other database
# of the server would hold every projection back. backend_xid is 32 bits; it is widened with
# the epoch of xmax (it is never more than 2^31 behind).
_HORIZON_SQL = """
WITH snapshot AS (
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
), running AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL
      AND pid <> pg_backend_pid()
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database()
)
SELECT least(
    snapshot.xmax,
    (SELECT min(CASE WHEN ((snapshot.xmax >> 32) << 32) + running.xid <= snapshot.xmax
                     THEN ((snapshot.xmax >> 32) << 32) + running.xid
                     ELSE ((snapshot.xmax >> 32) << 32) + running.xid - 4294967296 END)
     FROM running)
) FROM snapshot
"""


def safe_horizon() -> int:
    """The smallest xid that may still insert rows here: rows below it are final and visible.

    Every writer must use a role whose sessions this role can see in pg_stat_activity (the
    same role, or pg_read_all_stats), as Kaizen's processes do.
    """
    with connection.cursor() as cursor:
        cursor.execute(_HORIZON_SQL)
        row = cursor.fetchone()
    assert row is not None  # noqa: S101 - SELECT of a scalar always returns a row
    return int(row[0])


def after_position(position: Position) -> Q:
    """Rows after `position` in (xid, seq) order.

    The leading `xid >= …` is implied by the rest; it lets PostgreSQL start the (xid, seq)
    index scan at the position instead of filtering every row before it.
    """
    return Q(xid__gte=position.xid) & (
        Q(xid__gt=position.xid) | Q(xid=position.xid, seq__gt=position.seq)
    )


@dataclass(frozen=True)
class FeedItem:
    type: str
    position: Position
    event: dict[str, Any]


def event_feed(*, after: Position, limit: int) -> tuple[list[FeedItem], Position]:
    """Up to `limit` events of every type after `after`, in log order, and the next cursor."""
    horizon = safe_horizon()
    candidates: list[tuple[Position, Event, Any]] = []
    for source in sources():
        rows = (
            source.rows()
            .filter(after_position(after), xid__lt=horizon)
            .order_by("xid", "seq")[:limit]
        )
        candidates.extend((Position(row.xid, row.seq), row, source) for row in rows)
    page = heapq.nsmallest(limit, candidates, key=lambda item: item[0])
    items = [
        FeedItem(type=row.feed_type(), position=position, event=source.serialize(row))
        for position, row, source in page
    ]
    return items, items[-1].position if items else after


def worker_heartbeat() -> dict[str, Any]:
    """Age of the last heartbeat a worker processed: how far behind the broker's queue is."""
    try:
        beat = cache.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - any cache failure means "unknown", never a failed probe
        return {"status": "unknown"}
    if beat is None:
        return {"status": "unknown", "last_heartbeat": None}
    age = (datetime.now(UTC) - datetime.fromisoformat(beat)).total_seconds()
    return {"status": "ok", "last_heartbeat": beat, "age_seconds": round(age, 3)}

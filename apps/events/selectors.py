"""Reads of the log: the unified feed and the safe horizon that watermarks stop at.

Positions are (xid, seq). A row is only handed out once every transaction with a smaller
xid has finished (`xid < pg_snapshot_xmin(pg_current_snapshot())`): a transaction that
took a lower sequence number but commits later can then never appear behind a position
already handed out. A long-open transaction therefore holds the feed and projections back;
`idle_in_transaction_session_timeout` (settings) bounds how long.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Q

from apps.core.errors import ValidationFailed
from apps.events.models import Event
from apps.events.registry import sources

HEARTBEAT_KEY = "events:heartbeat"


@dataclass(frozen=True, order=True)
class Position:
    xid: int
    seq: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.xid}.{self.seq}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
            xid, seq = raw.decode("ascii").split(".")
            position = cls(int(xid), int(seq))
        except (ValueError, UnicodeError, binascii.Error) as error:
            raise ValidationFailed(
                "The cursor is not one this server gave out.",
                details=[{"field": "after", "message": "Pass next_cursor from a previous page."}],
            ) from error
        if position.xid < 0 or position.seq < 0:
            raise ValidationFailed("The cursor is not one this server gave out.")
        return position


START = Position(0, 0)


def safe_horizon() -> int:
    """The smallest xid that may still be running: rows below it are final and visible."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        row = cursor.fetchone()
    assert row is not None  # noqa: S101 - SELECT of a scalar always returns a row
    return int(row[0])


def after_position(position: Position) -> Q:
    return Q(xid__gt=position.xid) | Q(xid=position.xid, seq__gt=position.seq)


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

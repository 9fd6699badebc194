"""The abstract immutable event: every event table of every app derives from it.

Each row carries the producer's UUID, when it happened, when it was stored, and its position
in the one global order of the log: `seq` from one sequence shared by all event tables, and
`xid`, the id of the transaction that inserted it. Readers that must not skip rows whose
transactions commit out of sequence order (the feed, projection watermarks) only read rows
with `xid` below the oldest transaction still running and order by (xid, seq); see
selectors.py. A trigger installed by each table's migration (operations.py) refuses UPDATE
and DELETE in PostgreSQL itself; save() and delete() refuse them in the ORM too.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.db import models
from django.db.models.functions import Now

from apps.core.errors import ApplicationError


class ImmutableEventError(ApplicationError):
    code = "method_not_allowed"
    status = 405


class NextEventSeq(models.Func):
    """nextval of the log's one sequence, shared by every event table (one global order)."""

    template = "nextval('kaizen_event_seq')"
    output_field = models.BigIntegerField()


class CurrentTransactionId(models.Func):
    """The inserting transaction's id as a 64-bit integer (xid8 never wraps)."""

    template = "(pg_current_xact_id()::text::bigint)"
    output_field = models.BigIntegerField()


class Event(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    seq = models.BigIntegerField(db_default=NextEventSeq(), editable=False)
    xid = models.BigIntegerField(db_default=CurrentTransactionId(), editable=False)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now(), editable=False)

    # The name this table's rows carry in the feed (`type`), unless feed_type() says otherwise.
    event_type: ClassVar[str] = ""

    class Meta:
        abstract = True
        indexes = [models.Index(fields=["xid", "seq"], name="%(class)s_xid_seq")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableEventError(f"{type(self).__name__} events are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableEventError(f"{type(self).__name__} events are immutable.")

    def feed_type(self) -> str:
        return self.event_type


class ChangeEvent(Event):
    """A change to configuration people edit: its kind, who made it, the full state after it.

    DESIGN.md principle 1: the current-state row plus one of these per change lets any past
    state be rebuilt. Subclasses redeclare `type` with their choices.
    """

    type = models.CharField(max_length=40)
    actor = models.CharField(max_length=200)
    state = models.JSONField()

    class Meta(Event.Meta):
        abstract = True

    def feed_type(self) -> str:
        return self.type

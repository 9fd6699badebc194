"""Rows the event-log tests start from: a registry model and its events, written by the ORM.

RegistryEvent is the concrete event table these tests use; `insert_statement` gives the SQL
the ORM would send for a row, for tests that insert through their own connections.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models.sql import InsertQuery

from apps.registry.models import MLModel, RegistryEvent, RegistryEventType, Task

_names = itertools.count(1)


def ml_model(name: str | None = None) -> MLModel:
    return MLModel.objects.create(
        name=name or f"events-model-{next(_names)}", task=Task.BINARY_CLASSIFICATION
    )


def registry_event(
    *,
    model: MLModel,
    kind: str = RegistryEventType.MODEL_UPDATED,
    actor: str = "tests",
    state: dict[str, Any] | None = None,
) -> RegistryEvent:
    return RegistryEvent.objects.create(
        model=model,
        type=kind,
        actor=actor,
        state=state if state is not None else {"n": 1},
        occurred_at=datetime.now(UTC),
    )


def unsaved_registry_event(*, model: MLModel, kind: str = RegistryEventType.MODEL_UPDATED) -> Any:
    return RegistryEvent(
        model=model, type=kind, actor="tests", state={"n": 1}, occurred_at=datetime.now(UTC)
    )


def insert_statement(event: RegistryEvent) -> tuple[str, tuple[Any, ...]]:
    """The INSERT … RETURNING seq, xid the ORM would send for `event` (unsaved)."""
    meta = RegistryEvent._meta
    query = InsertQuery(RegistryEvent)
    query.insert_values([f for f in meta.local_concrete_fields if not f.generated], [event])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [meta.get_field("seq"), meta.get_field("xid")]
    [(sql, params)] = compiler.as_sql()
    return sql, tuple(params)


def as_feed_event(row: RegistryEvent) -> dict[str, Any]:
    """The test feed's serialisation of a registry event."""
    return {"id": str(row.id), "type": row.type, "actor": row.actor, "model": row.model.name}

"""The write path of ingestion: binary COPY into a staging table, then one INSERT … SELECT.

Per request: rows are COPYed (binary) into a temporary table of the session, then one
`INSERT … SELECT … ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id` moves them into the
event table. (A batch of a few events goes in one multi-row INSERT instead, also in id
order: the COPY costs two round trips, which a single event would feel.) Ids come sorted,
so two batches racing on the same ids take their row locks in the same order and cannot
deadlock; a batch that meets a row another transaction is still inserting waits for it,
then sees it. For the ids not returned, one query reads the stored content hashes: those
that differ from the posted ones are conflicts.

The columns `seq`, `xid` and `received_at` are not listed, so each row takes the event base's
database defaults. The staging table lives as long as the database session and is emptied
at every commit (ON COMMIT DELETE ROWS: a truncation, no dead rows). `prepare()` creates it
once per session, outside any transaction, so that a request costs no DDL; inside a
caller's transaction (tests, another service) `store()` creates it there if need be, and
empties it first, since that transaction commits later, if ever.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg import pq
from psycopg.adapt import Dumper


@dataclass(frozen=True)
class Table:
    """An event table and the columns the write path fills, with their PostgreSQL types."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def staging(self) -> str:
        return f"{self.name}_staging"


@dataclass(frozen=True)
class Stored:
    inserted: list[uuid.UUID]
    conflicting: list[uuid.UUID]


class EncodedJson:
    """Marker type: a jsonb column whose values arrive as JSON bytes msgspec encoded."""


class _EncodedJsonbDumper(Dumper):
    """Binary jsonb straight from encoded bytes: the format's version byte, then the text."""

    format = pq.Format.BINARY
    oid = 3802  # jsonb, fixed in PostgreSQL's catalog

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + bytes(obj)


# Batches up to this size skip the staging table (see store()).
SMALL_BATCH = 8

# Database sessions (psycopg connections) → the staging tables created in them and committed.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def prepare(table: Table) -> None:
    """Create the session's staging table for `table` once, when no transaction is open."""
    if connection.in_atomic_block:
        return
    connection.ensure_connection()
    session = connection.connection
    made = _prepared.setdefault(session, set())
    if table.staging in made:
        return
    with connection.cursor() as cursor:
        cursor.execute(_create_sql(table))
    made.add(table.staging)


def store(table: Table, rows: Sequence[Sequence[Any]]) -> Stored:
    """Insert `rows` (column order of `table`: id first, content_hash last) not stored yet.

    Runs inside the caller's transaction; the ids in `rows` are distinct. Returns the ids
    inserted and the ids already stored with another `content_hash` (the caller then rolls
    back). Up to SMALL_BATCH rows go in one multi-row INSERT, which costs two round trips
    less than the staging table; larger batches take the COPY path.
    """
    with connection.cursor() as cursor:
        if len(rows) <= SMALL_BATCH:
            inserted = _insert_values(cursor, table, rows)
        else:
            inserted = _copy_then_insert(cursor, table, rows)
        conflicting: list[uuid.UUID] = []
        if len(inserted) < len(rows):
            conflicting = _conflicting(cursor, table, rows, set(inserted))
    return Stored(inserted=inserted, conflicting=conflicting)


def _copy_then_insert(cursor: Any, table: Table, rows: Sequence[Sequence[Any]]) -> list[Any]:
    names = ", ".join(column for column, _ in table.columns)
    statements = []
    if table.staging not in _prepared.get(connection.connection, ()):
        statements.append(_create_sql(table))
    if len(connection.atomic_blocks) > 1:
        # An enclosing transaction has not committed since the last use: rows may remain.
        statements.append(f"DELETE FROM {table.staging}")  # noqa: S608 - a constant name
    if statements:
        cursor.execute("; ".join(statements))
    raw = cursor.cursor
    raw.adapters.register_dumper(EncodedJson, _EncodedJsonbDumper)
    with raw.copy(f"COPY {table.staging} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind for _, kind in table.columns])
        for row in rows:
            copy.write_row(row)
    cursor.execute(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {table.staging} "  # noqa: S608 - names are constants of this module's callers
        "ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id"
    )
    return [row[0] for row in cursor.fetchall()]


def _insert_values(cursor: Any, table: Table, rows: Sequence[Sequence[Any]]) -> list[Any]:
    names = ", ".join(column for column, _ in table.columns)
    jsonb = [kind == "jsonb" for _, kind in table.columns]
    one = "(" + ", ".join("%s::jsonb" if is_json else "%s" for is_json in jsonb) + ")"
    parameters: list[Any] = []
    for row in sorted(rows, key=lambda row: row[0].int):  # id order: no deadlock (module doc)
        parameters.extend(
            value.decode() if is_json and value is not None else value
            for value, is_json in zip(row, jsonb, strict=True)
        )
    cursor.execute(
        f"INSERT INTO {table.name} ({names}) VALUES {', '.join([one] * len(rows))} "  # noqa: S608 - constants and placeholders
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        parameters,
    )
    return [row[0] for row in cursor.fetchall()]


def _conflicting(
    cursor: Any, table: Table, rows: Sequence[Sequence[Any]], inserted: set[Any]
) -> list[uuid.UUID]:
    """Ids of `rows` not inserted whose stored content hash differs from theirs."""
    wanted = {row[0]: bytes(row[-1]) for row in rows if row[0] not in inserted}
    cursor.execute(
        f"SELECT id, content_hash FROM {table.name} WHERE id = ANY(%s)",  # noqa: S608 - constant
        [list(wanted)],
    )
    return sorted(
        (
            stored_id
            for stored_id, digest in cursor.fetchall()
            if bytes(digest) != wanted[stored_id]
        ),
        key=lambda stored_id: stored_id.int,
    )


def _create_sql(table: Table) -> str:
    columns = ", ".join(f"{column} {kind}" for column, kind in table.columns)
    return f"CREATE TEMP TABLE IF NOT EXISTS {table.staging} ({columns}) ON COMMIT DELETE ROWS"

"""Statements on the hot paths: prepared once per connection, executed by libpq in one call.

Django's psycopg cursors bind parameters client-side: every execution sends a new statement
text that PostgreSQL parses and plans again. And a psycopg cursor, even one that binds
server-side, drives the protocol from Python (a generator per query, a wait loop, the
result's bookkeeping): measured in one process, about 130 µs of CPU per statement, more than
the rest of POST /api/v1/assignments' view put together.

`fetchone_prepared` runs a statement on Django's own connection (its transaction, its
autocommit state) through that connection's libpq handle: the statement is prepared the
first time a connection runs it (`PQprepare`; PostgreSQL infers the parameter types, so the
SQL casts where the context does not tell), then executed with `PQexecPrepared`, one C call
that sends, waits without holding the GIL and reads the result. psycopg's own adapters turn
parameters into text and the result into Python values, so every type psycopg knows works.
Database errors become Django's, as from any cursor, and the statement is logged in
`connection.queries` when Django logs queries (DEBUG, assertNumQueries).

The connection's `prepare_threshold` is the switch (settings: DATABASE_PREPARED_STATEMENTS):
None, for a pooler in transaction mode that cannot keep prepared statements, executes the
statement unnamed (`PQexecParams`: parsed and planned each time, still one C call). A
prepared statement gone from the session (DEALLOCATE ALL, DISCARD ALL) is prepared again:
at once in autocommit, on the next call inside a transaction (the failure aborted it).

A statement waits in C without a timeout of its own, as the sync worker would in psycopg:
PostgreSQL's statement_timeout, or the worker's timeout, bounds it.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import abc, pq
from psycopg.adapt import PyFormat, Transformer

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")
_STATEMENT_GONE = b"26000"  # invalid_sql_statement_name: "prepared statement … does not exist"


@dataclass(frozen=True)
class _Statement:
    name: bytes
    query: bytes
    # The parameters' names in $n order (named placeholders), or None for positional ones.
    names: tuple[str, ...] | None


# Each SQL text as libpq takes it, named once for the process: the same name on every
# connection that prepares it.
_statements: dict[str, _Statement] = {}


class _Session:
    """One psycopg connection's prepared statements and adapters (dropped with it)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.prepared: set[bytes] = set()
        # From the adapters, not the connection: a reference to it would keep it alive here.
        self.transformer: abc.Transformer = Transformer(conn.adapters)


_sessions: weakref.WeakKeyDictionary[psycopg.Connection[Any], _Session] = (
    weakref.WeakKeyDictionary()
)


def _session(conn: psycopg.Connection[Any]) -> _Session:
    session = _sessions.get(conn)
    if session is None:
        session = _sessions[conn] = _Session(conn)
    return session


def _statement(sql: str) -> _Statement:
    statement = _statements.get(sql)
    if statement is None:
        names: list[str] = []
        positional = 0

        def number(match: re.Match[str]) -> str:
            nonlocal positional
            name = match.group(1)
            if name is None:
                positional += 1
                return f"${positional}"
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        query = _PLACEHOLDER.sub(number, sql)
        if names and positional:
            raise ValueError("Use either %s or %(name)s placeholders in one statement.")
        statement = _Statement(
            name=f"kaizen_{len(_statements)}".encode(),
            query=query.encode(),
            names=tuple(names) if names else None,
        )
        _statements[sql] = statement
    return statement


def fetchone_prepared(
    sql: str, parameters: Sequence[Any] | Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The first row of `sql` (%s or %(name)s placeholders), or None when it has no row."""
    # The wrapper itself: each attribute read through django.db.connection is a lookup of
    # this thread's connection.
    database = connections[DEFAULT_DB_ALIAS]
    database.ensure_connection()
    started = time.monotonic()
    with database.wrap_database_errors:
        conn = database.connection
        session = _session(conn)
        statement = _statement(sql)
        if statement.names is None:
            if isinstance(parameters, Mapping):
                raise TypeError("Pass a sequence for %s placeholders.")
            values = list(parameters)
        else:
            if not isinstance(parameters, Mapping):
                raise TypeError("Pass a mapping for %(name)s placeholders.")
            values = [parameters[name] for name in statement.names]
        with conn.lock:
            result = _execute(conn, session, statement, values)
        row = _first_row(session.transformer, result)
    if database.queries_logged:
        database.queries_log.append(
            {"sql": f"{sql} -- {parameters!r}", "time": f"{time.monotonic() - started:.3f}"}
        )
    return row


def _execute(
    conn: psycopg.Connection[Any], session: _Session, statement: _Statement, values: list[Any]
) -> pq.abc.PGresult:
    transformer = session.transformer
    # None is SQL NULL to libpq; psycopg's stubs do not say so.
    encoded = cast(
        "Sequence[bytes]", transformer.dump_sequence(values, [PyFormat.TEXT] * len(values))
    )
    pgconn = conn.pgconn
    if conn.prepare_threshold is None:
        return _checked(conn, pgconn.exec_params(statement.query, encoded))
    # Outside a transaction (autocommit) a failed statement leaves nothing behind, so a
    # statement found gone can be prepared again and retried; inside one, the failure has
    # aborted the transaction and is raised.
    retry = pgconn.transaction_status == pq.TransactionStatus.IDLE
    for attempt in (1, 2):
        if statement.name not in session.prepared:
            _checked(conn, pgconn.prepare(statement.name, statement.query))
            session.prepared.add(statement.name)
        result = pgconn.exec_prepared(statement.name, encoded)
        if result.error_field(pq.DiagnosticField.SQLSTATE) == _STATEMENT_GONE:
            session.prepared.discard(statement.name)
            if retry and attempt == 1:
                continue
        return _checked(conn, result)
    raise AssertionError("unreachable")  # pragma: no cover


def _checked(conn: psycopg.Connection[Any], result: pq.abc.PGresult) -> pq.abc.PGresult:
    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return result
    raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


def _first_row(transformer: abc.Transformer, result: pq.abc.PGresult) -> tuple[Any, ...] | None:
    if result.ntuples == 0:
        return None
    transformer.set_pgresult(result)
    try:
        row: tuple[Any, ...] | None = transformer.load_row(0, tuple)
        return row
    finally:
        transformer.set_pgresult(None)

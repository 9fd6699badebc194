"""Statements on the hot paths, prepared once per connection and bound server-side.

Django's psycopg cursors bind parameters client-side: every execution sends a new statement
text that PostgreSQL parses and plans again. For a statement run on every request that is a
measurable share of its cost (for POST /api/v1/assignments, about a tenth). `fetchone_prepared`
runs the statement on Django's own connection (its transaction, its autocommit state) through
a psycopg cursor with `prepare=True`: parsed and planned on first use per connection, then
only executed. Database errors become Django's, as from any cursor, and the statement is
logged in `connection.queries` when Django logs queries (DEBUG, assertNumQueries).

Not for a connection pooler in transaction mode that does not keep prepared statements.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection


def fetchone_prepared(sql: str, parameters: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of `sql` (%s placeholders) with `parameters`, prepared server-side."""
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
        row = cursor.execute(sql, parameters, prepare=True).fetchone()
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- {list(parameters)!r}", "time": f"{time.monotonic() - started:.3f}"}
        )
    return row

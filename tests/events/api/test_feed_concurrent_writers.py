"""The feed under concurrent writers: a transaction that took a lower sequence number but
commits last is neither skipped nor repeated by a reader paging through the log meanwhile.

Two raw psycopg connections to the test database (autocommit off) play the writers; the
reader is the API, on Django's own connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from apps.events.selectors import START
from tests.events.api.test_feed import URL
from tests.events.factories import (
    insert_statement,
    ml_model,
    registry_event,
    unsaved_registry_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writers() -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    settings = connection.settings_dict
    params = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "password": settings["PASSWORD"] or None,
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
    }
    first = psycopg.connect(**params, autocommit=False)
    second = psycopg.connect(**params, autocommit=False)
    try:
        yield first, second
    finally:
        for writer in (first, second):
            writer.rollback()
            writer.close()


def _insert(writer: psycopg.Connection[Any], event: Any) -> tuple[int, int]:
    sql, params = insert_statement(event)
    row = writer.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _drain(client: Any, cursor: str) -> tuple[list[str], str]:
    """Page through the feed one event at a time from `cursor`; ids read and the new cursor."""
    ids: list[str] = []
    while True:
        page = client.get(URL, {"after": cursor, "limit": 1}).json()
        cursor = page["next_cursor"]
        if not page["results"]:
            return ids, cursor
        ids.extend(item["event"]["id"] for item in page["results"])


def test_feed__lower_seq_and_lower_xid_commits_last__later_row_held_back_then_both_once(
    reader, registry_feed, writers, wait_for_horizon
):
    # Given: events already read, and a reader at the end of the log
    model = ml_model()
    earlier = [registry_event(model=model) for _ in range(2)]
    wait_for_horizon(max(event.xid for event in earlier))
    read, cursor = _drain(reader, START.encode())
    assert read == [str(event.id) for event in earlier]
    # When: A takes the lower seq (and xid), B a higher one; B commits first
    writer_a, writer_b = writers
    event_a = unsaved_registry_event(model=model)
    event_b = unsaved_registry_event(model=model)
    seq_a, xid_a = _insert(writer_a, event_a)
    seq_b, xid_b = _insert(writer_b, event_b)
    assert (seq_a < seq_b, xid_a < xid_b) == (True, True)
    writer_b.commit()
    between, cursor = _drain(reader, cursor)
    writer_a.commit()
    wait_for_horizon(xid_b)
    after, cursor = _drain(reader, cursor)
    # Then: B waited for A (an older transaction was still open); then both, once, in order
    assert between == []
    assert after == [str(event_a.id), str(event_b.id)]
    assert sorted(read + between + after) == sorted({*read, str(event_a.id), str(event_b.id)})
    assert _drain(reader, cursor)[0] == []


def test_feed__lower_seq_commits_last_with_higher_xid__committed_row_shown_then_late_row_once(
    reader, registry_feed, writers, wait_for_horizon
):
    # Given: a reader at the end of the (empty) log
    model = ml_model()
    cursor = reader.get(URL).json()["next_cursor"]
    writer_a, writer_b = writers
    # When: B gets its xid first, A then inserts and takes the LOWER seq, B inserts with the
    # higher seq and commits; A (lower seq) commits last
    xid_row = writer_b.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert xid_row is not None
    event_a = unsaved_registry_event(model=model)
    event_b = unsaved_registry_event(model=model)
    seq_a, xid_a = _insert(writer_a, event_a)
    seq_b, xid_b = _insert(writer_b, event_b)
    assert (seq_a < seq_b, xid_b < xid_a, xid_b == xid_row[0]) == (True, True, True)
    writer_b.commit()
    wait_for_horizon(xid_b)
    between, cursor = _drain(reader, cursor)
    writer_a.commit()
    wait_for_horizon(xid_a)
    after, cursor = _drain(reader, cursor)
    # Then: B is handed out while A is open; A, though its seq is lower than B's (a
    # seq-only watermark would now skip it), comes next; nothing twice
    assert between == [str(event_b.id)]
    assert after == [str(event_a.id)]
    assert _drain(reader, cursor)[0] == []


def test_feed__writer_rolls_back__its_rows_never_appear_and_nothing_is_skipped(
    reader, registry_feed, writers, wait_for_horizon
):
    # Given
    model = ml_model()
    cursor = reader.get(URL).json()["next_cursor"]
    writer_a, writer_b = writers
    # When: A inserts and rolls back after B committed
    event_a = unsaved_registry_event(model=model)
    event_b = unsaved_registry_event(model=model)
    _, xid_a = _insert(writer_a, event_a)
    _, xid_b = _insert(writer_b, event_b)
    writer_b.commit()
    between, cursor = _drain(reader, cursor)
    writer_a.rollback()
    wait_for_horizon(max(xid_a, xid_b))
    after, cursor = _drain(reader, cursor)
    # Then
    assert between + after == [str(event_b.id)]

"""GET /api/v1/events: every event of every type in one order, pages that never skip or repeat.

These tests commit for real (transactional_db): the feed hands out only rows whose
transaction has finished, so rows of a test's own open transaction would never show.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection, transaction

from apps.events.selectors import START, Position, after_position, event_feed
from apps.registry.models import RegistryEvent, RegistryEventType
from tests.events.factories import ml_model, registry_event

URL = "/api/v1/events"

pytestmark = pytest.mark.django_db(transaction=True)


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def _read_all(client: Any, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
    """Follow next_cursor from `after` until a page comes back empty; items and last cursor."""
    items: list[dict[str, Any]] = []
    cursor = after
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["after"] = cursor
        response = client.get(URL, params)
        assert response.status_code == 200, response.content
        page = response.json()
        assert set(page) == {"results", "next_cursor"}
        assert isinstance(page["next_cursor"], str)
        items.extend(page["results"])
        cursor = page["next_cursor"]
        if not page["results"]:
            return items, cursor


def test_feed__events_of_two_sources__one_order_by_transaction_then_sequence(
    reader, two_source_feed, wait_for_horizon
):
    # Given: events of two sources, interleaved in time
    model = ml_model()
    written = [
        registry_event(model=model, kind=RegistryEventType.MODEL_UPDATED),
        registry_event(model=model, kind=RegistryEventType.ALIAS_MOVED),
        registry_event(model=model, kind=RegistryEventType.MODEL_UPDATED),
        registry_event(model=model, kind=RegistryEventType.ALIAS_MOVED),
    ]
    wait_for_horizon(max(event.xid for event in written))
    # When
    response = reader.get(URL)
    # Then
    assert response.status_code == 200
    body = response.json()
    ordered = sorted(written, key=lambda event: (event.xid, event.seq))
    assert [item["event"]["id"] for item in body["results"]] == [str(e.id) for e in ordered]
    assert [item["type"] for item in body["results"]] == [e.type for e in ordered]
    assert [set(item) for item in body["results"]] == [{"type", "cursor", "event"}] * 4
    assert body["results"][0]["event"] == {
        "id": str(ordered[0].id),
        "type": ordered[0].type,
        "actor": "tests",
        "model": model.name,
    }
    assert body["next_cursor"] == body["results"][-1]["cursor"]


def test_feed__one_transaction_writes_several_events__ordered_by_sequence(
    reader, registry_feed, wait_for_horizon
):
    # Given: rows of one transaction share an xid; seq orders them
    model = ml_model()
    with transaction.atomic():
        written = [registry_event(model=model) for _ in range(3)]
    assert len({event.xid for event in written}) == 1
    wait_for_horizon(written[0].xid)
    # When
    items, _ = _read_all(reader, after=None, limit=2)
    # Then
    assert [item["event"]["id"] for item in items] == [str(event.id) for event in written]


@pytest.mark.parametrize("parameter", ["after", "cursor"])
def test_feed__pages_of_two__every_event_once_in_order(
    reader, registry_feed, wait_for_horizon, parameter
):
    # Given
    model = ml_model()
    written = [registry_event(model=model) for _ in range(5)]
    wait_for_horizon(max(event.xid for event in written))
    # When: following next_cursor under either parameter name
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params = {"limit": 2} | ({parameter: cursor} if cursor else {})
        page = reader.get(URL, params).json()
        seen.extend(item["event"]["id"] for item in page["results"])
        cursor = page["next_cursor"]
    # Then
    assert seen == [str(event.id) for event in written]
    assert reader.get(URL, {parameter: cursor}).json()["results"] == []


def test_feed__empty__next_cursor_given_and_later_yields_new_events(
    reader, registry_feed, wait_for_horizon
):
    # Given: nothing logged yet
    first = reader.get(URL)
    assert first.status_code == 200
    assert first.json()["results"] == []
    cursor = first.json()["next_cursor"]
    assert isinstance(cursor, str)
    # When: events arrive afterwards
    event = registry_event(model=ml_model())
    wait_for_horizon(event.xid)
    later = reader.get(URL, {"after": cursor})
    # Then
    assert [item["event"]["id"] for item in later.json()["results"]] == [str(event.id)]


def test_feed__caught_up__next_cursor_stays_put_and_resumes(
    reader, registry_feed, wait_for_horizon
):
    # Given: a reader at the end of the log
    model = ml_model()
    first = registry_event(model=model)
    wait_for_horizon(first.xid)
    items, cursor = _read_all(reader, after=None, limit=10)
    assert [item["event"]["id"] for item in items] == [str(first.id)]
    # When: an empty page, then a new event
    empty = reader.get(URL, {"after": cursor}).json()
    second = registry_event(model=model)
    wait_for_horizon(second.xid)
    resumed = reader.get(URL, {"after": empty["next_cursor"]}).json()
    # Then
    assert empty == {"results": [], "next_cursor": cursor}
    assert [item["event"]["id"] for item in resumed["results"]] == [str(second.id)]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("1", 1), ("3", 3), ("1000", 3), ("", 3)],
)
def test_feed__limit_within_bounds__at_most_limit_results(
    reader, registry_feed, wait_for_horizon, limit, expected
):
    # Given
    model = ml_model()
    written = [registry_event(model=model) for _ in range(3)]
    wait_for_horizon(max(event.xid for event in written))
    # When
    response = reader.get(URL, {"limit": limit})
    # Then
    assert response.status_code == 200
    assert len(response.json()["results"]) == expected


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1", "1.5", "9" * 40])
def test_feed__limit_out_of_bounds__400_validation_error(reader, registry_feed, limit):
    # When
    response = reader.get(URL, {"limit": limit})
    # Then
    assert response.status_code == 400
    assert _error(response) == {
        "code": "validation_error",
        "message": "limit must be an integer from 1 to 1000.",
        "details": [{"field": "limit", "message": "Between 1 and 1000."}],
    }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "not-a-cursor",
        _b64(b"1.2.3"),
        _b64(b"abc.def"),
        _b64(b"-1.5"),
        _b64(b"5.-1"),
        _b64(b"\xff\xfe"),
        _b64(f"{2**63}.1".encode()),
        _b64(f"1.{2**64}".encode()),
        _b64(("9" * 5000 + ".1").encode()),
        "%00",
        "é",
        _b64(b"5.7"),  # a well-formed position, unsigned
        Position(5, 7).encode()[:-1],  # its signature cut short
    ],
)
def test_feed__forged_cursor__400_validation_error(reader, registry_feed, cursor):
    # When
    response = reader.get(URL, {"after": cursor})
    # Then
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "validation_error"
    assert error["message"] == "The cursor is not one this server gave out."


def test_feed__an_item_cursor__continues_right_after_that_item(
    reader, registry_feed, wait_for_horizon
):
    # Given
    model = ml_model()
    written = [registry_event(model=model) for _ in range(3)]
    wait_for_horizon(max(event.xid for event in written))
    first = reader.get(URL).json()["results"][0]
    # When
    rest = reader.get(URL, {"after": first["cursor"]}).json()["results"]
    # Then
    assert [item["event"]["id"] for item in rest] == [str(event.id) for event in written[1:]]


def test_feed__largest_valid_position__200_empty(reader, registry_feed):
    # Given: the last position a bigint allows
    cursor = Position(2**63 - 1, 2**63 - 1).encode()
    # When
    response = reader.get(URL, {"after": cursor})
    # Then
    assert response.status_code == 200
    assert response.json() == {"results": [], "next_cursor": cursor}


def test_event_feed__two_sources__one_query_for_the_horizon_and_one_per_source(
    two_source_feed, wait_for_horizon, django_assert_num_queries
):
    # Given
    model = ml_model()
    written = [
        registry_event(model=model, kind=kind)
        for kind in [RegistryEventType.ALIAS_MOVED, RegistryEventType.MODEL_UPDATED] * 5
    ]
    wait_for_horizon(max(event.xid for event in written))
    # When / Then: serialising the rows (which reads event.model) costs no further query
    with django_assert_num_queries(3):
        items, last = event_feed(after=START, limit=100)
    assert len(items) == 10
    assert last == items[-1].position


def test_event_feed__a_page_deep_in_the_log__index_scan_starts_at_the_position():
    # Given: a position deep in the log
    after = Position(10**9, 5)
    query = RegistryEvent.objects.filter(after_position(after)).order_by("xid", "seq")[:10]
    # When
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            plan = "\n".join(str(row) for row in query.explain().splitlines())
        finally:
            cursor.execute("SET enable_seqscan = on")
    # Then: the position bounds the index scan (an Index Cond), not only a filter
    assert "registryevent_xid_seq" in plan
    assert "Index Cond: (xid >= " in plan

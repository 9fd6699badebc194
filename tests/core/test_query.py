"""Query and path parameters: each kind's accepted and refused values, unknown and repeated
names, and the endpoints outside DRF (/healthz, /readyz, /metrics, the schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.http import QueryDict

from apps.core.cursors import cursor_sign, cursor_unsign
from apps.core.errors import NotFound, ValidationFailed
from apps.core.query import (
    PAGE,
    Boolean,
    Choice,
    Cursor,
    Integer,
    Limit,
    Text,
    Time,
    check_path,
    parse_query,
)

LIST = (Text("model"), Choice("status", choices=("queued", "running")), Boolean("enabled"), *PAGE)
PERFORMANCE = (Time("start"), Time("end"), Integer("rule", minimum=1))


def _query(**values: str | list[str]) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in values.items():
        query.setlist(name, value if isinstance(value, list) else [value])
    return query


def _refusal(query: QueryDict, parameters: Any) -> dict[str, Any]:
    with pytest.raises(ValidationFailed) as raised:
        parse_query(query, parameters)
    return {"message": raised.value.message, "details": raised.value.details}


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", 1), ("100", 100), ("1000", 1000), ("0042", 42)]
)
def test_limit__ascii_digits_in_range__parsed(raw, expected):
    assert parse_query(_query(limit=raw), PAGE) == {"limit": expected}


@pytest.mark.parametrize(
    "raw",
    [
        "-1",
        "0",
        "1001",
        "1e9",
        "1e2",
        "abc",
        "٣",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
        "１０",  # fullwidth digits
        "9" * 5000,
        " 5",
        "5 ",
        "+5",
        "5_0",
        "1.0",
        "0x10",
        "5\x00",
    ],
)
def test_limit__absurd__400_naming_limit(raw):
    assert _refusal(_query(limit=raw), PAGE) == {
        "message": "limit must be an integer from 1 to 1000.",
        "details": [{"field": "limit", "message": "Between 1 and 1000."}],
    }


def test_text__control_character__400_naming_it_and_where():
    assert _refusal(_query(model="churn\x00"), LIST) == {
        "message": "model holds a control character.",
        "details": [
            {
                "field": "model",
                "message": "Must not contain control characters (found U+0000 at position 5).",
            }
        ],
    }


@pytest.mark.parametrize("character", ["\x01", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"])
def test_text__any_c0_c1_or_del__400(character):
    details = _refusal(_query(model=f"a{character}b"), LIST)["details"]
    assert details == [
        {
            "field": "model",
            "message": "Must not contain control characters "
            f"(found U+{ord(character):04X} at position 1).",
        }
    ]


@pytest.mark.parametrize("value", ["churn", "ünïcödé", "a b", "x" * 1024, "٣", "\u00a0"])
def test_text__printable_up_to_1024__accepted(value):
    assert parse_query(_query(model=value), LIST) == {"model": value}


def test_text__over_1024_characters__400():
    assert _refusal(_query(model="x" * 1025), LIST)["details"] == [
        {"field": "model", "message": "At most 1024 characters."}
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-26T10:00:00Z", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T12:00:00+02:00", datetime(2026, 11, 26, 10, tzinfo=UTC)),
        ("2026-11-26T00:00:00-23:59", datetime(2026, 11, 26, 23, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_time__rfc3339_with_offset__in_utc(raw, expected):
    assert parse_query(_query(start=raw), PERFORMANCE) == {"start": expected}


@pytest.mark.parametrize(
    ("raw", "message", "detail"),
    [
        (
            "9999-12-31T23:59:59-23:59",
            "start is out of range.",
            "The time in UTC is out of range.",
        ),
        ("0001-01-01T00:00:00+01:00", "start is out of range.", "The time in UTC is out of range."),
        ("2026-11-26T10:00:00", "start has no timezone.", "Give an offset or Z."),
        ("0000-01-01T00:00:00Z", "start is not an RFC 3339 time.", None),
        ("2026-11-26T10:00:00+25:00", "start is not an RFC 3339 time.", None),
        ("2026-11-26T10:00:00+24:00", "start is not an RFC 3339 time.", None),
        ("2026-02-30T10:00:00Z", "start is not an RFC 3339 time.", None),
        ("2026-11-26T25:00:00Z", "start is not an RFC 3339 time.", None),
        ("10000-01-01T00:00:00Z", "start is not an RFC 3339 time.", None),
        ("yesterday", "start is not an RFC 3339 time.", None),
        ("２０２６-11-26T10:00:00Z", "start is not an RFC 3339 time.", None),
        ("2026-11-26T10:00:00Z\x00", "start is not an RFC 3339 time.", None),
    ],
)
def test_time__impossible__400_naming_it(raw, message, detail):
    refusal = _refusal(_query(start=raw), PERFORMANCE)
    assert refusal["message"] == message
    assert refusal["details"] == [
        {
            "field": "start",
            "message": detail or "Use e.g. 2026-11-26T10:00:00Z (URL-encode '+' as %2B).",
        }
    ]


@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "9223372036854775808", "1e3", "٣"])
def test_integer__out_of_range_or_not_ascii_digits__400(raw):
    assert _refusal(_query(rule=raw), PERFORMANCE)["details"] == [
        {"field": "rule", "message": "Between 1 and 9223372036854775807."}
    ]


@pytest.mark.parametrize("raw", ["True", "1", "yes", "false\x00"])
def test_boolean__not_true_or_false__400(raw):
    assert _refusal(_query(enabled=raw), LIST) == {
        "message": "enabled is true or false.",
        "details": [{"field": "enabled", "message": "true or false."}],
    }


def test_choice__unknown__400_listing_the_choices():
    assert _refusal(_query(status="done"), LIST) == {
        "message": "Unknown status.",
        "details": [{"field": "status", "message": "queued, running"}],
    }


@pytest.mark.parametrize("raw", ["x" * 1025, "é", "a\x00", "a\tb"])
def test_cursor__not_printable_ascii_or_too_long__400(raw):
    assert _refusal(_query(cursor=raw), PAGE)["details"] == [
        {"field": "cursor", "message": "Pass next_cursor from a previous page."}
    ]


def test_unknown_parameters__400_listing_each_and_what_is_accepted():
    assert _refusal(_query(model="churn", colour="red", **{"x\x00": "1"}), LIST) == {
        "message": "Unknown query parameters: colour, x\x00.",
        "details": [
            {
                "field": "colour",
                "message": "Not a parameter here; accepted: cursor, enabled, limit, model, status.",
            },
            {
                "field": "x\x00",
                "message": "Not a parameter here; accepted: cursor, enabled, limit, model, status.",
            },
        ],
    }


def test_unknown_parameters__where_none_is_accepted__400_saying_none():
    assert _refusal(_query(format="json"), ())["details"] == [
        {"field": "format", "message": "Not a parameter here; accepted: none."}
    ]


def test_unknown_parameters__many_long_names__at_most_20_echoed_and_cut():
    names = {f"{index:02d}" + "x" * 500: "1" for index in range(30)}
    details = _refusal(_query(**names), LIST)["details"]
    assert len(details) == 20
    assert {len(detail["field"]) for detail in details} == {100}


def test_repeated_parameter__400():
    assert _refusal(_query(limit=["5", "6"]), PAGE) == {
        "message": "limit is given more than once.",
        "details": [{"field": "limit", "message": "Give it once."}],
    }


def test_several_bad_values__every_one_listed():
    refusal = _refusal(_query(limit="0", model="a\x01", enabled="maybe"), LIST)
    assert refusal["message"] == "Some query parameters are invalid."
    assert [detail["field"] for detail in refusal["details"]] == ["limit", "model", "enabled"]


def test_empty_values__count_as_not_given():
    assert parse_query(_query(model="", limit="", status=""), LIST) == {}


def test_page_declaration__cursor_and_limit_as_the_schema_shows_them():
    assert [parameter.openapi().name for parameter in PAGE] == ["cursor", "limit"]
    assert Limit().schema() == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert Cursor().schema() == {"type": "string", "maxLength": 1024}


@pytest.mark.parametrize("value", ["churn\x00", "a\nb", "\x7f", "x" * 1025])
def test_check_path__control_character_or_too_long__404_naming_the_parameter(value):
    with pytest.raises(NotFound) as raised:
        check_path({"name": "churn", "version": value})
    assert raised.value.message == "No such version."
    assert [detail["field"] for detail in raised.value.details] == ["version"]


def test_check_path__ordinary_names_and_non_strings__pass():
    check_path({"name": "ünïcödé model", "id": 7, "version": "x" * 1024})


def test_cursor__signed_for_one_kind__refused_by_another():
    cursor = cursor_sign("list.a", [1, "b"])
    assert cursor_unsign("list.a", cursor, field="cursor") == [1, "b"]
    with pytest.raises(ValidationFailed) as raised:
        cursor_unsign("list.b", cursor, field="after")
    assert raised.value.details == [
        {"field": "after", "message": "Pass next_cursor from a previous page."}
    ]


# --- the endpoints outside DRF -----------------------------------------------------------------


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/api/schema/"])
def test_operations_endpoints__unknown_parameter__400_error_body(anonymous, path):
    # When
    response = anonymous.get(path, {"verbose": "1"})
    # Then
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert _error(response)["code"] == "validation_error"
    assert [detail["field"] for detail in _error(response)["details"]] == ["verbose"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operations_endpoints__no_parameter__200(anonymous, path):
    assert anonymous.get(path).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"format": "json"}, 200),
        ({"format": "yaml"}, 200),
        ({"format": "xml"}, 400),
        ({"format": "json\x00"}, 400),
        ({"lang": "de"}, 400),
    ],
)
def test_schema_endpoint__format_only__its_choices(anonymous, query, status):
    # When
    response = anonymous.get("/api/schema/", query)
    # Then
    assert response.status_code == status
    if status == 400:
        assert [detail["field"] for detail in _error(response)["details"]] == list(query)

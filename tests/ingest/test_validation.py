"""The one-pass decoder: shapes, limits, error details, and when two events are equal."""

from __future__ import annotations

import orjson
import pytest

from apps.core.errors import PayloadTooLarge, ValidationFailed
from apps.ingest.validation import InvalidJson, Limits, content_hash, decode
from tests.ingest.factories import feedback, prediction

LIMITS = Limits(
    batch_events=5,
    attributes=3,
    features=4,
    string_length=10,
    future_seconds=300,
    body_bytes=100_000,
)
SMALL = {"attributes": {"country": "DE"}, "features": {"a": 1}, "explanation": {"a": 0.5}}


def _prediction(**fields):
    return prediction(**{"subject": "u1", "output": {"label": "churn"}, **SMALL, **fields})


def _decode(body, kind="prediction", limits=LIMITS):
    return decode(orjson.dumps(body), kind=kind, limits=limits)


def test_decode__single_valid_prediction__one_event_no_details():
    # Given a valid event
    body = _prediction()
    # When
    decoded = _decode(body)
    # Then
    assert decoded.batch is False
    assert decoded.details == []
    assert str(decoded.events[0].id) == body["id"]
    assert decoded.events[0].features == {"a": 1.0}


def test_decode__batch__events_in_order():
    bodies = [_prediction() for _ in range(3)]
    decoded = _decode({"events": bodies})
    assert decoded.batch is True
    assert [str(event.id) for event in decoded.events] == [body["id"] for body in bodies]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # key order ignored
        (
            b'{"a": 1, "b": "x"}',
            b'{"b": "x", "a": 1}',
        ),
        # numbers as floats
        (b'{"a": 1}', b'{"a": 1.0}'),
        (b'{"a": 10}', b'{"a": 1e1}'),
    ],
)
def test_content_hash__equal_features_written_differently__equal(first, second):
    # Given two bodies that differ only in how the features are written
    event = _prediction()
    template = orjson.dumps({**event, "features": "@"}).replace(b'"@"', b"%s")
    # When
    one = decode(template % first, kind="prediction", limits=LIMITS).events[0]
    other = decode(template % second, kind="prediction", limits=LIMITS).events[0]
    # Then
    assert content_hash(one) == content_hash(other)


def test_content_hash__same_instant_other_offset_and_uppercase_id__equal():
    event = _prediction(occurred_at="2026-11-01T10:00:00Z")
    same = {
        **event,
        "id": event["id"].upper(),
        "occurred_at": "2026-11-01T12:00:00+02:00",
        "latency_ms": 12.5,
    }
    event["latency_ms"] = 12.50
    assert content_hash(_decode(event).events[0]) == content_hash(_decode(same).events[0])


@pytest.mark.parametrize(
    "change",
    [
        {"features": {"a": True}},  # a boolean is not the number 1
        {"features": {"a": "1"}},  # a string is not a number
        {"attributes": {"country": "FR"}},
        {"occurred_at": "2026-11-01T10:00:00.000001Z"},
        {"output": {"label": "churn", "score": 0.5}},
        {"subject": "u2"},
    ],
)
def test_content_hash__other_content__differs(change):
    event = _prediction()
    assert content_hash(_decode(event).events[0]) != content_hash(
        _decode({**event, **change}).events[0]
    )


def test_decode__bad_events__every_bad_index_with_its_field():
    # Given a batch with a structural problem at 1 and a rule problem at 3
    bodies = [_prediction() for _ in range(5)]
    bodies[1]["output"] = {"score": "high"}
    bodies[3]["output"] = {}
    # When
    decoded = _decode({"events": bodies})
    # Then
    assert decoded.details == [
        {"index": 1, "field": "output.score", "message": "Expected `float | null`, got `str`"},
        {"index": 3, "field": "output", "message": "Give at least one of label, score, value."},
    ]
    assert [event is None for event in decoded.events] == [False, True, False, True, False]


@pytest.mark.parametrize(
    ("field", "value", "expected_field"),
    [
        ("attributes", {"a": "1", "b": "2", "c": "3", "d": "4"}, "attributes"),
        ("features", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, "features"),
        ("subject", "x" * 11, "subject"),
        ("attributes", {"k" * 11: "v"}, "attributes"),
        ("output", {"label": "y" * 11}, "output.label"),
    ],
)
def test_decode__over_configured_limits__detail_names_field(field, value, expected_field):
    decoded = _decode(_prediction(**{field: value}))
    assert [detail["field"] for detail in decoded.details] == [expected_field]


def test_decode__string_of_limit_length_in_characters__accepted():
    # Given 10 characters that take 20 bytes in UTF-8
    decoded = _decode(_prediction(subject="é" * 10))
    assert decoded.details == []


def test_decode__batch_over_limit__payload_too_large():
    with pytest.raises(PayloadTooLarge):
        _decode({"events": [_prediction() for _ in range(6)]})


def test_decode__batch_over_limit_with_bad_events__still_payload_too_large():
    bodies = [_prediction() for _ in range(6)]
    bodies[0]["id"] = "nope"
    with pytest.raises(PayloadTooLarge):
        _decode({"events": bodies})


def test_decode__body_over_limit__payload_too_large():
    with pytest.raises(PayloadTooLarge):
        decode(b" " * 100_001, kind="prediction", limits=LIMITS)


@pytest.mark.parametrize("body", [b"", b"   ", b"\n"])
def test_decode__empty_body__invalid_json(body):
    with pytest.raises(InvalidJson):
        decode(body, kind="prediction", limits=LIMITS)


def test_decode__batch_with_extra_key__unknown_field_reported():
    with pytest.raises(ValidationFailed) as raised:
        _decode({"events": [_prediction()], "source": "app"})
    assert raised.value.details[0]["field"] == "source"


def test_decode__feedback_with_value_and_label__one_problem():
    decoded = _decode(feedback(label="churn"), kind="feedback")
    assert decoded.details == [
        {"index": 0, "field": "value", "message": "Send exactly one of value or label."}
    ]


def test_content_hash__feedback_value_int_or_float__equal():
    event = feedback(value=1)
    assert content_hash(_decode(event, kind="feedback").events[0]) == content_hash(
        _decode({**event, "value": 1.0}, kind="feedback").events[0]
    )


# Bodies and their content hashes as computed when the rows were first stored: stored rows
# carry these digests, so any change to the declaration must leave them byte-identical.
PINNED_HASHES = [
    (
        "prediction",
        b'{"id":"5f0c2f5e-2d0e-4d9b-9a55-2b1f1b7a3c01","model":"churn","model_version":"3",'
        b'"subject":"user-1842","experiment":"churn-v3-vs-v2","variant":"treatment",'
        b'"attributes":{"plan":"pro","country":"DE","vip":true,"age":41},'
        b'"features":{"tenure_days":412,"sessions_7d":3,"device":"ios","newsletter":false,'
        b'"coupon":null},"output":{"label":"churn","score":0.83,"value":1.5},'
        b'"explanation":{"tenure_days":-0.12,"sessions_7d":0.31},"latency_ms":12.5,'
        b'"occurred_at":"2026-11-26T11:00:00+01:00"}',
        "b055cd9260308c80e2155826e0db710b",
    ),
    (
        "prediction",
        b'{"id":"0b6f1a52-6c43-4d0e-8a57-1c2f4a1e9d10","model":"churn","model_version":"3",'
        b'"error":"timeout after 2 s","occurred_at":"2026-11-26T10:00:00Z"}',
        "4b7d6cc5989d8624bcc7353d8965804f",
    ),
    (
        "prediction",
        b'{"id":"8c3f9d1e-0a4b-4b7c-9e2d-3f5a6b7c8d9e","model":"fraud","model_version":"v1.2",'
        b'"output":{"value":-1e15},"latency_ms":0,"features":{"x":1e15,"y":-0.0},'
        b'"occurred_at":"2026-01-02T03:04:05.678901Z"}',
        "3b7bb46f715d0f93dc39b2eb05f3cd20",
    ),
    (
        "feedback",
        b'{"id":"7d1e0c2a-3b4c-4d5e-8f60-718293a4b5c6",'
        b'"prediction_id":"5f0c2f5e-2d0e-4d9b-9a55-2b1f1b7a3c01","metric":"revenue",'
        b'"value":19.99,"occurred_at":"2026-11-26T10:05:00Z"}',
        "68038e8bcff68f1af7d3794839b013fb",
    ),
    (
        "feedback",
        b'{"id":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",'
        b'"prediction_id":"5f0c2f5e-2d0e-4d9b-9a55-2b1f1b7a3c01","metric":"label",'
        b'"label":"churn","occurred_at":"2026-11-26T09:05:00-02:00"}',
        "8a975cfc3a5525ea2c75034efffbfe79",
    ),
]


@pytest.mark.parametrize(("kind", "body", "expected"), PINNED_HASHES)
def test_content_hash__event_stored_before__same_digest(kind, body, expected):
    # Given an event as a client posted it, under the default limits
    limits = Limits(
        batch_events=1000,
        attributes=50,
        features=500,
        string_length=1024,
        future_seconds=300,
        body_bytes=5 * 1024 * 1024,
    )
    # When it is decoded
    decoded = decode(body, kind=kind, limits=limits)
    # Then it is valid and hashes to the digest stored with it
    assert decoded.details == []
    assert content_hash(decoded.events[0]).hex() == expected


# --- limits at N and N + 1 (LIMITS: 3 attributes, 4 features, strings of 10) ---------------


def _sized(count: int, value: object = 1) -> dict[str, object]:
    return {f"k{index}": value for index in range(count)}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "s" * 10}, None),
        ({"subject": "s" * 11}, "subject"),
        ({"model": "m" * 10}, None),  # references are the service's to check
        ({"model": "m" * 11}, "model"),
        ({"subject": ""}, "subject"),
        ({"subject": "s"}, None),
        ({"error": "e" * 10, "output": None}, None),
        ({"error": "e" * 11, "output": None}, "error"),
        ({"output": {"label": "l" * 10}}, None),
        ({"output": {"label": "l" * 11}}, "output.label"),
        ({"attributes": _sized(3)}, None),
        ({"attributes": _sized(4)}, "attributes"),
        ({"attributes": {"k" * 10: "v"}}, None),
        ({"attributes": {"k" * 11: "v"}}, "attributes"),
        ({"attributes": {"plan": "p" * 10}}, None),
        ({"attributes": {"plan": "p" * 11}}, "attributes.plan"),
        ({"features": _sized(4), "explanation": None}, None),
        ({"features": _sized(5), "explanation": None}, "features"),
        ({"features": {"device": "d" * 10}, "explanation": None}, None),
        ({"features": {"device": "d" * 11}, "explanation": None}, "features.device"),
        ({"features": None, "explanation": _sized(4, 0.5)}, None),
        ({"features": None, "explanation": _sized(5, 0.5)}, "explanation"),
    ],
)
def test_decode__at_and_past_a_limit__accepted_or_the_field_named(changes, field):
    # When a prediction is decoded with a string or key count at or past its limit
    decoded = _decode(_prediction(**changes))
    # Then it passes at the limit and fails one past it, naming the field
    assert [detail["field"] for detail in decoded.details] == ([] if field is None else [field])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metric": "m" * 10}, None),
        ({"metric": "m" * 11}, "metric"),
        ({"metric": ""}, "metric"),
        ({"value": None, "label": "l" * 10}, None),
        ({"value": None, "label": "l" * 11}, "label"),
    ],
)
def test_decode__feedback_at_and_past_a_limit__accepted_or_the_field_named(changes, field):
    decoded = _decode(feedback(**changes), kind="feedback")
    assert [detail["field"] for detail in decoded.details] == ([] if field is None else [field])


# --- control characters in names -------------------------------------------------------------

CONTROL = "Names must not contain control characters (U+0000-U+001F, U+007F-U+009F)."


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'"subject": "user\\u0001"', "subject"),
        (b'"subject": "user\\n2"', "subject"),
        (b'"model_version": "3\\t"', "model_version"),
        (b'"subject": "user\x7f"', "subject"),  # DEL, valid JSON as a raw byte
        (b'"subject": "user\xc2\x85"', "subject"),  # NEL (C1), raw UTF-8
        (b'"subject": "user\\u009f"', "subject"),
        (b'"attributes": {"coun\\rtry": "DE"}', "attributes"),
        (b'"attributes": {"country\x7f": "DE"}', "attributes"),
    ],
)
def test_decode__control_character_in_a_name__400_naming_it(raw, field):
    # Given a prediction whose name or key holds a control character
    key = raw.split(b'"')[1].decode()
    body = orjson.dumps({**_prediction(), key: "@@"}).replace(b'"%s":"@@"' % key.encode(), raw)
    # When
    decoded = _decode_raw(body)
    # Then
    assert decoded.details == [{"index": 0, "field": field, "message": CONTROL}]


@pytest.mark.parametrize(
    "raw",
    [
        b'"error": "1\\n2\\t3\x7f"',
        b'"output": {"label": "a\\u0085b"}',
        b'"attributes": {"note": "x\\ny"}',
        b'"subject": "\\u00e9 \\"q\\" \\\\"',
        b'"subject": "\xc2\xa0nb \xc3\xa9"',
    ],
)
def test_decode__control_character_in_free_text_or_escaped_printable_name__accepted(raw):
    key = raw.split(b'"')[1].decode()
    changes: dict[str, object] = {key: "@@"}
    if key == "error":
        changes["output"] = None
    body = orjson.dumps(_prediction(**changes)).replace(b'"%s":"@@"' % key.encode(), raw)
    assert _decode_raw(body).details == []


def _decode_raw(body: bytes):
    return decode(body, kind="prediction", limits=LIMITS)

"""Hostile and malformed bodies: each answers a 4xx with API.md's error body, never a 500,
and stores nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from apps.experiments.models import Exposure
from apps.ingest.models import Feedback, Prediction
from tests.ingest.factories import churn_experiment, feedback, post, prediction

pytestmark = pytest.mark.django_db

DEEP = 5000


@dataclass(frozen=True)
class Case:
    name: str
    body: Any  # bytes as sent, anything else sent as JSON
    status: int
    code: str
    fields: tuple[str, ...] = ()  # the `field` of each detail, when the case names some
    headers: dict[str, str] = field(default_factory=dict)


def _raw(event: dict[str, Any], key: str, raw_value: bytes) -> bytes:
    """`event` as JSON with `key` set to a raw JSON fragment (for what orjson cannot write)."""
    return orjson.dumps({**event, key: "@@"}).replace(b'"@@"', raw_value)


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


PREDICTION_CASES = [
    Case("malformed JSON", b'{"id": "5f0c', 400, "invalid_json"),
    Case("trailing garbage", orjson.dumps(prediction()) + b" x", 400, "invalid_json"),
    Case("empty body", b"", 400, "invalid_json"),
    Case("whitespace body", b" \n ", 400, "invalid_json"),
    Case("invalid UTF-8", _raw(prediction(), "subject", b'"\xff\xfe"'), 400, "invalid_json"),
    Case("invalid UTF-8 in the id", _raw(prediction(), "id", b'"\xff"'), 400, "validation_error"),
    Case("lone surrogate escape", _raw(prediction(), "subject", b'"\\ud800"'), 400, "invalid_json"),
    Case(
        "wrong content type",
        prediction(),
        415,
        "unsupported_media_type",
        headers={"content_type": "text/plain"},
    ),
    Case(
        "form content type",
        b"id=1",
        415,
        "unsupported_media_type",
        headers={"content_type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "JSON in another charset",
        prediction(),
        415,
        "unsupported_media_type",
        headers={"content_type": "application/json; charset=latin-1"},
    ),
    Case("top-level array", [prediction()], 400, "validation_error"),
    Case("top-level string", "prediction", 400, "validation_error"),
    Case("top-level number", 42, 400, "validation_error"),
    Case("top-level null", None, 400, "validation_error"),
    Case("empty batch", {"events": []}, 400, "validation_error", ("events",)),
    Case("events not a list", {"events": {"id": 1}}, 400, "validation_error", ("events",)),
    Case("batch with extra key", {"events": [prediction()], "app": "x"}, 400, "validation_error"),
    Case("missing id", prediction(id=None), 400, "validation_error", ("id",)),
    Case("missing model", prediction(model=None), 400, "validation_error", ("model",)),
    Case(
        "missing occurred_at",
        prediction(occurred_at=None),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case("extra top-level field", prediction(colour="red"), 400, "validation_error", ("colour",)),
    Case(
        "unknown key inside output",
        prediction(output={"label": "churn", "confidence": 0.9}),
        400,
        "validation_error",
        ("output.confidence",),
    ),
    Case(
        "output without a value",
        prediction(output={}),
        400,
        "validation_error",
        ("output",),
    ),
    Case(
        "neither output nor error",
        prediction(output=None),
        400,
        "validation_error",
        ("output",),
    ),
    Case(
        "both output and error",
        prediction(error="timeout"),
        400,
        "validation_error",
        ("error",),
    ),
    Case(
        "score of the wrong type",
        prediction(output={"score": "high"}),
        400,
        "validation_error",
        ("output.score",),
    ),
    Case("label a number", prediction(output={"label": 1}), 400, "validation_error"),
    Case("latency a string", prediction(latency_ms="fast"), 400, "validation_error"),
    Case("negative latency", prediction(latency_ms=-1), 400, "validation_error", ("latency_ms",)),
    Case("attributes a list", prediction(attributes=["DE"]), 400, "validation_error"),
    Case("model a number", prediction(model=3), 400, "validation_error", ("model",)),
    Case("NaN", _raw(prediction(), "latency_ms", b"NaN"), 400, "invalid_json"),
    Case("Infinity", _raw(prediction(), "latency_ms", b"Infinity"), 400, "invalid_json"),
    Case("-Infinity", _raw(prediction(), "latency_ms", b"-Infinity"), 400, "invalid_json"),
    Case(
        "integer too large for a float",
        _raw(prediction(), "output", b'{"score": 1' + b"0" * 400 + b"}"),
        400,
        "validation_error",
        ("output.score",),
    ),
    Case(
        "float literal too large",
        _raw(prediction(), "latency_ms", b"1e400"),
        400,
        "validation_error",
        ("latency_ms",),
    ),
    Case(
        "feature integer too large for a float",
        _raw(prediction(), "features", b'{"tenure_days": 9' + b"9" * 400 + b"}"),
        400,
        "validation_error",
        ("features.tenure_days",),
    ),
    Case(
        "naive timestamp",
        prediction(occurred_at="2026-11-01T10:00:00"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "unparsable timestamp",
        prediction(occurred_at="yesterday"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "date without time",
        prediction(occurred_at="2026-11-01"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "timestamp as a number",
        prediction(occurred_at=1_790_000_000),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "far-future timestamp",
        prediction(occurred_at="2999-01-01T00:00:00Z"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "timestamp out of range in UTC",
        prediction(occurred_at="0001-01-01T00:00:00+01:00"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case(
        "too many attribute keys",
        prediction(attributes={f"a{n}": "x" for n in range(51)}),
        400,
        "validation_error",
        ("attributes",),
    ),
    Case(
        "too many feature keys",
        prediction(features={f"f{n}": n for n in range(501)}, explanation=None),
        400,
        "validation_error",
        ("features",),
    ),
    Case(
        "nested attribute",
        prediction(attributes={"geo": {"country": "DE"}}),
        400,
        "validation_error",
        ("attributes.geo",),
    ),
    Case(
        "null attribute",
        prediction(attributes={"country": None}),
        400,
        "validation_error",
        ("attributes.country",),
    ),
    Case(
        "nested feature",
        prediction(features={"history": [1, 2, 3]}, explanation=None),
        400,
        "validation_error",
        ("features.history",),
    ),
    Case(
        "nested explanation",
        prediction(explanation={"tenure_days": {"value": 1}}),
        400,
        "validation_error",
        ("explanation.tenure_days",),
    ),
    Case(
        "explanation of an unknown feature",
        prediction(explanation={"age": 0.2}),
        400,
        "validation_error",
        ("explanation",),
    ),
    Case(
        "over-long subject",
        prediction(subject="s" * 1025),
        400,
        "validation_error",
        ("subject",),
    ),
    Case(
        "over-long attribute key",
        prediction(attributes={"k" * 1025: "v"}),
        400,
        "validation_error",
        ("attributes",),
    ),
    Case(
        "over-long feature value",
        prediction(features={"note": "n" * 1025}, explanation=None),
        400,
        "validation_error",
        ("features.note",),
    ),
    Case(
        "over-long error",
        prediction(output=None, error="e" * 1025),
        400,
        "validation_error",
        ("error",),
    ),
    Case("empty subject", prediction(subject=""), 400, "validation_error", ("subject",)),
    Case(
        "NUL in subject", prediction(subject="user\u00001"), 400, "validation_error", ("subject",)
    ),
    Case(
        "NUL in an attribute key",
        prediction(attributes={"coun\u0000try": "DE"}),
        400,
        "validation_error",
        ("attributes",),
    ),
    Case(
        "NUL in a feature value",
        prediction(features={"device": "i\u0000os"}, explanation=None),
        400,
        "validation_error",
        ("features",),
    ),
    Case(
        "NUL in the output label",
        prediction(output={"label": "\u0000"}),
        400,
        "validation_error",
        ("output.label",),
    ),
    Case(
        "control character in subject",
        prediction(subject="user\u0007"),
        400,
        "validation_error",
        ("subject",),
    ),
    Case(
        "C1 control character in model_version",
        prediction(model_version="3\u0085"),
        400,
        "validation_error",
        ("model_version",),
    ),
    Case(
        "control character in an attribute name",
        prediction(attributes={"coun\ntry": "DE"}),
        400,
        "validation_error",
        ("attributes",),
    ),
    Case("array nested 5000 deep", _deep(DEEP), 400, "validation_error"),
    Case("object nested 5000 deep", b'{"a":' * DEEP + b"1" + b"}" * DEEP, 400, "validation_error"),
    Case(
        "feature nested 5000 deep",
        _raw(prediction(), "features", b'{"a": ' + _deep(DEEP) + b"}"),
        400,
        "validation_error",
        ("features.a",),
    ),
    Case(
        "unknown field nested 5000 deep",
        _raw(prediction(), "extra", _deep(DEEP)),
        400,
        "validation_error",
    ),
    Case(
        "unknown field nested 5000 deep, unterminated",
        _raw(prediction(), "extra", b"[" * DEEP),
        400,
        "invalid_json",
    ),
    Case("events nested 5000 deep", b'{"events": ' + _deep(DEEP) + b"}", 400, "validation_error"),
    Case("id not a UUID", prediction(id="not-a-uuid"), 400, "validation_error", ("id",)),
    Case("id a number", prediction(id=1234), 400, "validation_error", ("id",)),
    Case("id empty", prediction(id=""), 400, "validation_error", ("id",)),
    Case(
        "id a UUID with garbage",
        prediction(id="5f0c2f5e-2d0e-4d9b-9a55-2b1f1b7a3c01x"),
        400,
        "validation_error",
        ("id",),
    ),
    Case(
        "unregistered model",
        prediction(model="fraud"),
        400,
        "validation_error",
        ("model_version",),
    ),
    Case(
        "unregistered version",
        prediction(model_version="9"),
        400,
        "validation_error",
        ("model_version",),
    ),
    Case(
        "experiment without variant",
        prediction(experiment="churn-v3-vs-v2"),
        400,
        "validation_error",
        ("variant",),
    ),
    Case(
        "variant without experiment",
        prediction(variant="treatment"),
        400,
        "validation_error",
        ("experiment",),
    ),
    Case(
        "experiment without subject",
        prediction(experiment="churn-v3-vs-v2", variant="treatment", subject=None),
        400,
        "validation_error",
        ("subject",),
    ),
    Case(
        "unknown experiment",
        prediction(experiment="nope", variant="treatment"),
        400,
        "validation_error",
        ("variant",),
    ),
    Case(
        "unknown variant",
        prediction(experiment="churn-v3-vs-v2", variant="other"),
        400,
        "validation_error",
        ("variant",),
    ),
    Case(
        "version other than the variant's",
        prediction(experiment="churn-v3-vs-v2", variant="control"),
        400,
        "validation_error",
        ("model_version",),
    ),
    Case(
        "oversized batch",
        {"events": [prediction() for _ in range(1001)]},
        413,
        "payload_too_large",
    ),
    Case("oversized body", b" " * (5 * 1024 * 1024 + 1), 413, "payload_too_large"),
]

FEEDBACK_CASES = [
    Case("malformed JSON", b"{", 400, "invalid_json"),
    Case("empty batch", {"events": []}, 400, "validation_error", ("events",)),
    Case(
        "value and label",
        feedback(label="churn"),
        400,
        "validation_error",
        ("value",),
    ),
    Case("neither value nor label", feedback(value=None), 400, "validation_error", ("value",)),
    Case("value a string", feedback(value="1"), 400, "validation_error", ("value",)),
    Case("label a number", feedback(value=None, label=1), 400, "validation_error", ("label",)),
    Case(
        "prediction_id not a UUID",
        feedback(prediction_id="p-1"),
        400,
        "validation_error",
        ("prediction_id",),
    ),
    Case("missing metric", feedback(metric=None), 400, "validation_error", ("metric",)),
    Case("empty metric", feedback(metric=""), 400, "validation_error", ("metric",)),
    Case("NUL in metric", feedback(metric="cl\u0000ick"), 400, "validation_error", ("metric",)),
    Case(
        "control character in metric",
        feedback(metric="click\u001b[0m"),
        400,
        "validation_error",
        ("metric",),
    ),
    Case("NaN value", _raw(feedback(), "value", b"NaN"), 400, "invalid_json"),
    Case(
        "value too large for a float",
        _raw(feedback(), "value", b"1" + b"0" * 400),
        400,
        "validation_error",
        ("value",),
    ),
    Case(
        "naive timestamp",
        feedback(occurred_at="2026-11-01 10:00"),
        400,
        "validation_error",
        ("occurred_at",),
    ),
    Case("extra field", feedback(weight=2), 400, "validation_error", ("weight",)),
    Case(
        "wrong content type",
        feedback(),
        415,
        "unsupported_media_type",
        headers={"content_type": "application/xml"},
    ),
    Case(
        "oversized batch",
        {"events": [feedback() for _ in range(1001)]},
        413,
        "payload_too_large",
    ),
]


def _check(response: Any, case: Case) -> None:
    assert response.status_code == case.status, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == case.code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if case.fields:
        assert [detail.get("field") for detail in error["details"]] == list(case.fields)
        assert all("index" not in detail for detail in error["details"])


@pytest.mark.parametrize("case", PREDICTION_CASES, ids=[case.name for case in PREDICTION_CASES])
def test_post_prediction__hostile_body__4xx_and_nothing_stored(ingester, churn, case):
    # Given the churn model and an experiment of it
    churn_experiment(churn)
    # When
    response = post(ingester, "/api/v1/predictions", case.body, **case.headers)
    # Then
    _check(response, case)
    assert Prediction.objects.count() == 0
    assert Exposure.objects.count() == 0


@pytest.mark.parametrize("case", FEEDBACK_CASES, ids=[case.name for case in FEEDBACK_CASES])
def test_post_feedback__hostile_body__4xx_and_nothing_stored(ingester, case):
    response = post(ingester, "/api/v1/feedback", case.body, **case.headers)
    _check(response, case)
    assert Feedback.objects.count() == 0


# The hostile single events (JSON objects answered 400), to put inside batches too.
EVENT_CASES = [
    case
    for case in PREDICTION_CASES
    if isinstance(case.body, dict) and "events" not in case.body and case.status == 400
]


@pytest.mark.parametrize("case", EVENT_CASES, ids=[case.name for case in EVENT_CASES])
def test_post_prediction__hostile_event_inside_batch__400_with_its_index(ingester, churn, case):
    # Given a hostile event between two valid ones
    churn_experiment(churn)
    body = {"events": [prediction(), case.body, prediction()]}
    # When
    response = post(ingester, "/api/v1/predictions", body)
    # Then
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert {detail["index"] for detail in details} == {1}
    if case.fields:
        assert [detail["field"] for detail in details] == list(case.fields)
    assert Prediction.objects.count() == 0


def test_post_prediction__batch_of_hostile_ids__every_bad_index(ingester, churn):
    # Given ids that are not UUIDs, one per event
    ids = ["", "x", "{}", "1" * 1025, "00000000-0000-0000-0000-00000000000g", str(uuid.uuid4())]
    body = {"events": [prediction(id=value) for value in ids]}
    # When
    response = post(ingester, "/api/v1/predictions", body)
    # Then every bad index is listed, the valid last one is not
    assert response.status_code == 400
    assert [detail["index"] for detail in response.json()["error"]["details"]] == [0, 1, 2, 3, 4]
    assert Prediction.objects.count() == 0

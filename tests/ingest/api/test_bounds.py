"""Every numeric field of predictions and feedback, tried at and past its bound (API.md
"Limits"): a 400 naming the field (and the index in a batch) with nothing stored, or the
value stored as sent at the bound."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apps.experiments.models import Exposure
from apps.ingest.models import Feedback, Prediction
from tests.extremes import EXTREMES, VALUE_RANGE, with_number
from tests.ingest.factories import feedback, post, prediction

pytestmark = pytest.mark.django_db

LATENCY_RANGE = "Out of range: must be a number from 0 to 86400000."


def _score(row: Prediction) -> Any:
    return row.output_score


def _value(row: Prediction) -> Any:
    return row.output_value


# (kind, the field's dotted path, how the stored row shows it, API.md's range)
FIELDS = [
    ("prediction", "output.score", _score, VALUE_RANGE),
    ("prediction", "output.value", _value, VALUE_RANGE),
    ("prediction", "features.tenure_days", lambda row: row.features["tenure_days"], VALUE_RANGE),
    ("prediction", "attributes.age", lambda row: row.attributes["age"], VALUE_RANGE),
    (
        "prediction",
        "explanation.tenure_days",
        lambda row: row.explanation["tenure_days"],
        VALUE_RANGE,
    ),
    ("prediction", "latency_ms", lambda row: row.latency_ms, LATENCY_RANGE),
    ("feedback", "value", lambda row: row.value, VALUE_RANGE),
]
# Past each range, beyond the extremes every field is tried with.
PAST = {
    VALUE_RANGE: ("1000000000000001", "-1000000000000001", "1.0000000000000002e15"),
    LATENCY_RANGE: ("86400000.001", "86400001", "-1", "-0.001", "-1e-300"),
}
AT = {
    VALUE_RANGE: ("1e15", "-1e15", "1000000000000000", "-1000000000000000", "0"),
    LATENCY_RANGE: ("0", "86400000", "8.64e7"),
}
REFUSED = [
    pytest.param(kind, path, raw, message, id=f"{path}={raw[:24]}")
    for kind, path, _, message in FIELDS
    for raw in (*EXTREMES, *PAST[message])
]
ACCEPTED = [
    pytest.param(kind, path, stored, raw, id=f"{path}={raw}")
    for kind, path, stored, message in FIELDS
    for raw in AT[message]
]


def _event(kind: str) -> dict[str, Any]:
    return prediction() if kind == "prediction" else feedback()


def _url(kind: str) -> str:
    return "/api/v1/predictions" if kind == "prediction" else "/api/v1/feedback"


def _nothing_stored() -> None:
    assert Prediction.objects.count() == 0
    assert Feedback.objects.count() == 0
    assert Exposure.objects.count() == 0


@pytest.mark.parametrize(("kind", "path", "raw", "message"), REFUSED)
def test_post_event__number_outside_its_range__400_naming_the_field_nothing_stored(
    ingester, churn, kind, path, raw, message
):
    # Given one event carrying the number as written
    body = with_number(_event(kind), path, raw)
    # When
    response = post(ingester, _url(kind), body)
    # Then
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "The event is invalid.",
        "details": [{"field": path, "message": message}],
    }
    _nothing_stored()


@pytest.mark.parametrize(("kind", "path", "raw", "message"), REFUSED)
def test_post_batch__number_outside_its_range__400_naming_index_and_field_nothing_stored(
    ingester, churn, kind, path, raw, message
):
    # Given a batch whose event at index 1 carries the number
    events = [orjson.dumps(_event(kind)), with_number(_event(kind), path, raw)]
    body = b'{"events": [' + b", ".join([*events, orjson.dumps(_event(kind))]) + b"]}"
    # When
    response = post(ingester, _url(kind), body)
    # Then
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"index": 1, "field": path, "message": message}]
    _nothing_stored()


@pytest.mark.parametrize(("kind", "path", "stored", "raw"), ACCEPTED)
def test_post_event__number_at_its_bound__stored_as_sent(
    ingester, reader, churn, kind, path, stored, raw
):
    # Given an event carrying the bound itself
    event = _event(kind)
    # When
    response = post(ingester, _url(kind), with_number(event, path, raw))
    # Then it is stored, and read back, as that number
    assert response.status_code == 201
    model = Prediction if kind == "prediction" else Feedback
    assert stored(model.objects.get()) == float(raw)
    shown = reader.get(f"{_url(kind)}/{event['id']}").json()
    for step in path.split("."):
        shown = shown[step]
    assert shown == float(raw)

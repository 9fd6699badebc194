"""Every number and duration of a rule's body, tried at and past its range (API.md "Limits"):
a 400 naming the field with nothing stored or changed, or accepted at the bound."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apps.monitoring.models import Rule, RuleEvent
from tests.extremes import BEYOND_FLOAT, EXTREMES, HUGE_INTEGER, VALUE_RANGE, with_number
from tests.monitoring.conftest import RULE, make_rule

pytestmark = pytest.mark.django_db

MIN_SAMPLES_RANGE = "Out of range: must be a whole number from 1 to 1000000000."
# (field path, message, values past the range, values at it, the value as the rule shows it)
FIELDS = [
    ("threshold", VALUE_RANGE, ("1000000000000001", "-1.0000000000000002e15"), ("1e15", "-1e15")),
    ("min_samples", MIN_SAMPLES_RANGE, ("0", "-1", "1000000001", "1e9001"), ("1", "1000000000")),
    ("segment.country", VALUE_RANGE, ("1000000000000001", "-1e16"), ("1e15", "-1e15")),
]
REFUSED = [
    pytest.param(
        path,
        raw,
        BEYOND_FLOAT if raw.lstrip("-") in {HUGE_INTEGER, "1e9001"} else message,
        id=f"{path}={raw[:24]}",
    )
    for path, message, past, _ in FIELDS
    for raw in (*EXTREMES, *past)
]
ACCEPTED = [pytest.param(path, raw, id=f"{path}={raw}") for path, _, _, at in FIELDS for raw in at]


def _send(client, method: str, url: str, body: bytes) -> Any:
    return client.generic(method, url, body, content_type="application/json")


def _state() -> tuple[list[Any], int]:
    return list(Rule.objects.order_by("id").values()), RuleEvent.objects.count()


@pytest.mark.parametrize(("path", "raw", "message"), REFUSED)
def test_rules_create__number_outside_its_range__400_naming_the_field_nothing_stored(
    manager, churn, path, raw, message
):
    # When a rule is posted with the number as written
    response = _send(manager, "POST", "/api/v1/rules", with_number(RULE, path, raw))
    # Then
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": path, "message": message}]
    assert _state() == ([], 0)


@pytest.mark.parametrize(("path", "raw", "message"), REFUSED)
def test_rules_update__number_outside_its_range__400_and_rule_unchanged(
    manager, churn, path, raw, message
):
    # Given a rule
    rule, _ = make_rule()
    before = _state()
    # When it is changed to the number as written
    response = _send(manager, "PATCH", f"/api/v1/rules/{rule.pk}", with_number({}, path, raw))
    # Then
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": path, "message": message}]
    assert _state() == before


@pytest.mark.parametrize(("path", "raw"), ACCEPTED)
def test_rules_create__number_at_its_bound__stored(manager, churn, path, raw):
    response = _send(manager, "POST", "/api/v1/rules", with_number(RULE, path, raw))
    assert response.status_code == 201
    shown = response.json()
    for step in path.split("."):
        shown = shown[step]
    expected = str(int(float(raw))) if path.startswith("segment") else float(raw)
    assert shown == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", "30m", "A window is from 1h to 30d."),
        ("window", "31d", "A window is from 1h to 30d."),
        ("window", "721h", "A window is from 1h to 30d."),
        ("window", "99999999999d", "A window is from 1h to 30d."),
        ("window", "9" * 5000 + "h", "A window is from 1h to 30d."),
        ("cooldown", "0m", "A cooldown is from 1m to 365d."),
        ("cooldown", "366d", "A cooldown is from 1m to 365d."),
        ("cooldown", "99999999999d", "A cooldown is from 1m to 365d."),
    ],
)
def test_rules_create__duration_outside_its_range__400_naming_the_range(
    manager, churn, field, value, message
):
    response = _send(manager, "POST", "/api/v1/rules", orjson.dumps({**RULE, field: value}))
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": field, "message": message}]
    assert _state() == ([], 0)


@pytest.mark.parametrize(("field", "value"), [("window", "30d"), ("cooldown", "365d")])
def test_rules_create__duration_at_its_bound__stored(manager, churn, field, value):
    response = _send(manager, "POST", "/api/v1/rules", orjson.dumps({**RULE, field: value}))
    assert response.status_code == 201
    assert response.json()[field] == value

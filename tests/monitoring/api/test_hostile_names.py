"""Control characters in the names a rule body carries, and in its webhook URL: 400 naming
the field, nothing stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apps.monitoring.models import Rule, RuleEvent
from tests.monitoring.conftest import RULE

pytestmark = pytest.mark.django_db


def _send(client: Any, method: str, path: str, body: Any) -> Any:
    return client.generic(method, path, orjson.dumps(body), content_type="application/json")


HOSTILE = [
    ({**RULE, "name": "de-accuracy\x01"}, "name", "U+0001 at position 11"),
    ({**RULE, "name": "de\naccuracy"}, "name", "U+000A at position 2"),
    ({**RULE, "model": "churn\x7f"}, "model", "U+007F at position 5"),
    ({**RULE, "metric": "accuracy\x85"}, "metric", "U+0085 at position 8"),
    ({**RULE, "segment": {"coun\ttry": "DE"}}, "segment", "U+0009 at position 4"),
    (
        {**RULE, "webhook_url": "https://example.com/\x01hook"},
        "webhook_url",
        "U+0001 at position 20",
    ),
]


@pytest.mark.parametrize(("body", "field", "found"), HOSTILE)
def test_create_rule__control_character_in_a_name__400_naming_it_and_nothing_stored(
    churn, manager, body, field, found
):
    # When
    response = _send(manager, "POST", "/api/v1/rules", body)
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"field": field, "message": f"Must not contain control characters (found {found})."}
    ]
    assert (Rule.objects.count(), RuleEvent.objects.count()) == (0, 0)


def test_patch_rule__control_character_in_its_name__400_and_no_event(churn, manager):
    # Given
    created = _send(manager, "POST", "/api/v1/rules", RULE).json()
    events = RuleEvent.objects.count()
    # When
    response = _send(manager, "PATCH", f"/api/v1/rules/{created['id']}", {"name": "x\x1by"})
    # Then
    assert response.status_code == 400
    assert [detail["field"] for detail in response.json()["error"]["details"]] == ["name"]
    assert Rule.objects.get().name == RULE["name"]
    assert RuleEvent.objects.count() == events

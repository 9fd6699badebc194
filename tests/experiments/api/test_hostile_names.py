"""Control characters in the names an experiment or assignment body carries: 400 naming the
field, nothing stored. Free text (a description, a hypothesis) may keep line breaks."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from apps.experiments.models import Experiment, Exposure
from tests.experiments.conftest import PAYLOAD

pytestmark = pytest.mark.django_db


def _post(client: Any, path: str, body: Any) -> Any:
    return client.generic("POST", path, orjson.dumps(body), content_type="application/json")


def _with(path: str, value: Any) -> dict[str, Any]:
    """PAYLOAD with the value at the dotted `path` replaced."""
    body = copy.deepcopy(PAYLOAD)
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with("key", "churn-v3\x01"), "key"),
        (_with("key", "churn-v3\n"), "key"),
        (_with("model", "churn\x7f"), "model"),
        (_with("control", "control\x1b"), "control"),
        (_with("variants.1.key", "treat\x85ment"), "variants.1.key"),
        (_with("variants.0.model_version", "2\t"), "variants.0.model_version"),
        (_with("metrics.0.key", "cl\x00ick"), "metrics.0.key"),
        (_with("primary_metric", "click\x0b"), "primary_metric"),
        (_with("guardrail_metrics", ["rev\x1cenue"]), "guardrail_metrics.0"),
        (_with("breakdown_attributes", ["coun\x9ftry"]), "breakdown_attributes.0"),
        ({**PAYLOAD, "targeting": {"coun\x01try": ["DE"]}}, "targeting.coun\x01try"),
    ],
)
def test_create_experiment__control_character_in_a_name__400_naming_it_and_nothing_stored(
    churn, manager, body, field
):
    # When
    response = _post(manager, "/api/v1/experiments", body)
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert Experiment.objects.count() == 0


def test_create_experiment__line_breaks_in_free_text__kept(churn, manager):
    # When
    body = {**PAYLOAD, "description": "a\nb", "hypothesis": "c\td"}
    response = _post(manager, "/api/v1/experiments", body)
    # Then
    assert response.status_code == 201
    assert Experiment.objects.values_list("description", "hypothesis").get() == ("a\nb", "c\td")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"experiment": "churn-v3-vs-v2\x01", "subject": "u1"}, "experiment"),
        (
            {"experiment": "churn-v3-vs-v2", "subject": "u1", "attributes": {"coun\ttry": "DE"}},
            "attributes.coun\ttry",
        ),
    ],
)
def test_assignment__control_character_in_a_name__400_naming_it_and_no_exposure(
    make_experiment, make_client, body, field
):
    # Given: a running experiment
    make_experiment(start=True)
    # When
    response = _post(make_client("ingest"), "/api/v1/assignments", body)
    # Then
    assert response.status_code == 400
    assert [detail["field"] for detail in response.json()["error"]["details"]] == [field]
    assert Exposure.objects.count() == 0

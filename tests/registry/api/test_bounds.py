"""Every number of the registry's request bodies, tried at and past its range (API.md
"Limits"): a 400 naming the field with nothing stored, or the value stored at the bound."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent
from tests.extremes import BEYOND_FLOAT, EXTREMES, HUGE_INTEGER, VALUE_RANGE, with_number
from tests.registry.api.test_views import MODEL_BODY, VERSION_BODY
from tests.registry.factories import MLModelFactory

pytestmark = pytest.mark.django_db

SHARE_RANGE = "Out of range: must be a number from 0 to 1."
JSON_RANGE = (
    "Out of range: an integer must be from -9223372036854775808 to 9223372036854775807, "
    "any other number from -1e15 to 1e15."
)
BODY = {**VERSION_BODY, "hyperparameters": {"C": 1.0, "layers": [64, 32], "grid": {"depth": 3}}}


def _expected(raw: str, message: str) -> str:
    """The parser answers for numbers no float holds, before any field's range is read."""
    return BEYOND_FLOAT if raw.lstrip("-") == HUGE_INTEGER else message


def _snapshot() -> tuple[list[Any], ...]:
    return (
        list(MLModel.objects.order_by("id").values()),
        list(ModelVersion.objects.order_by("id").values()),
        list(Alias.objects.order_by("id").values()),
        list(RegistryEvent.objects.order_by("seq").values_list("id", flat=True)),
    )


def _send(client, method: str, path: str, body: bytes) -> Any:
    return client.generic(method, path, body, content_type="application/json")


# (request, field path, the range's message, values past it, values at it)
SHARE = (("1.0000000000000002", "-1e-300", "2"), ("0", "1", "0.0", "1.0"))
VALUE = (("1000000000000001", "-1000000000000001", "1.0000000000000002e15"), ("1e15", "-1e15"))
JSON = (
    ("1.0000000000000002e15", "-1.0000000000000002e15"),
    ("1e15", "-1e15", "1000000000000001", "9223372036854775807", "-9223372036854775808"),
)
FIELDS = [
    ("model_create", "decision_threshold", SHARE_RANGE, SHARE),
    ("model_update", "decision_threshold", SHARE_RANGE, SHARE),
    ("version_register", "features.0.importance", VALUE_RANGE, VALUE),
    ("version_register", "metrics.auc", VALUE_RANGE, VALUE),
    ("version_register", "hyperparameters.C", JSON_RANGE, JSON),
    ("version_register", "hyperparameters.layers.1", JSON_RANGE, JSON),
    ("version_register", "hyperparameters.grid.depth", JSON_RANGE, JSON),
    ("version_register", "tags.weight", JSON_RANGE, JSON),
]
REFUSED = [
    pytest.param(request, path, raw, _expected(raw, message), id=f"{request}:{path}={raw[:24]}")
    for request, path, message, (past, _) in FIELDS
    for raw in (*EXTREMES, *past)
]
ACCEPTED = [
    pytest.param(request, path, raw, id=f"{request}:{path}={raw}")
    for request, path, _, (_, at) in FIELDS
    for raw in at
]


def _request(request: str, path: str, raw: str) -> tuple[str, str, bytes]:
    """(method, URL, body) of `request` carrying the number at `path`; its model exists."""
    if request == "model_create":
        return "POST", "/api/v1/models", with_number(MODEL_BODY, path, raw)
    MLModelFactory.create(name="churn", task="binary_classification", positive_label="churn")
    if request == "model_update":
        return "PATCH", "/api/v1/models/churn", with_number({}, path, raw)
    return "POST", "/api/v1/models/churn/versions", with_number(copy.deepcopy(BODY), path, raw)


@pytest.mark.parametrize(("request_name", "path", "raw", "message"), REFUSED)
def test_registry_body__number_outside_its_range__400_naming_the_field_nothing_stored(
    manager, request_name, path, raw, message
):
    # Given the request carrying the number as written
    method, url, body = _request(request_name, path, raw)
    before = _snapshot()
    # When
    response = _send(manager, method, url, body)
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [{"field": path, "message": message}]
    assert _snapshot() == before


def _stored(request: str, path: str) -> Any:
    if request.startswith("model"):
        return MLModel.objects.get(name="churn").decision_threshold
    version = ModelVersion.objects.get(version="3")
    node: Any = {
        "features": version.features,
        "metrics": version.metrics,
        "hyperparameters": version.hyperparameters,
        "tags": version.tags,
    }
    for step in path.split("."):
        node = node[int(step)] if isinstance(node, list) else node[step]
    return node


@pytest.mark.parametrize(("request_name", "path", "raw"), ACCEPTED)
def test_registry_body__number_at_its_bound__stored(manager, request_name, path, raw):
    # Given the request carrying the bound itself
    method, url, body = _request(request_name, path, raw)
    # When
    response = _send(manager, method, url, body)
    # Then
    assert response.status_code in {200, 201}
    expected = int(raw) if raw.lstrip("-").isdigit() else float(raw)
    assert _stored(request_name, path) == expected

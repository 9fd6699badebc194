"""Every number of an experiment's body and of an assignment request, tried at and past its
range (API.md "Limits"): a 400 naming the field with nothing stored, or accepted at the bound."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apps.experiments.models import Experiment, Exposure, RolloutEvent
from tests.experiments.conftest import PAYLOAD
from tests.extremes import BEYOND_FLOAT, EXTREMES, HUGE_INTEGER, VALUE_RANGE, with_number

pytestmark = pytest.mark.django_db

URL = "/api/v1/experiments"
WEIGHT = "A weight is between 0 and 1."
COVERAGE = "Coverage is a share of subjects, between 0 and 1."
ALPHA = "alpha is a significance level, strictly between 0 and 1."
MDE = "mde is a relative lift greater than 0 and at most 100 (0.05 for 5%, 100 for +10,000%)."
SHARE_PAST = ("1.0000000000000002", "-1e-300", "2")
SHARE_AT = ("0", "1")
# (field path, message, values past the range, values at it)
FIELDS = [
    ("variants.0.weight", WEIGHT, SHARE_PAST, SHARE_AT),
    ("coverage", COVERAGE, SHARE_PAST, SHARE_AT),
    ("ramp.0.coverage", COVERAGE, SHARE_PAST, SHARE_AT),
    ("alpha", ALPHA, ("0", "1", "-1e-300"), ("1e-300", "0.9999999999999999")),
    ("mde", MDE, ("0", "-1e-300", "100.00000000000001"), ("1e-300", "100")),
    ("targeting.country.0", VALUE_RANGE, ("1000000000000001", "-1.0000000000000002e15"), ()),
]
REFUSED = [
    pytest.param(
        path,
        raw,
        BEYOND_FLOAT if raw.lstrip("-") == HUGE_INTEGER else message,
        id=f"{path}={raw[:24]}",
    )
    for path, message, past, _ in FIELDS
    for raw in (*EXTREMES, *past)
]
ACCEPTED = [
    pytest.param(path, raw, id=f"{path}={raw}") for path, _, _, at in FIELDS for raw in at
] + [pytest.param("targeting.country.0", raw, id=f"targeting={raw}") for raw in ("1e15", "-1e15")]


def _payload(path: str, raw: str) -> bytes:
    payload: dict[str, Any] = copy.deepcopy(PAYLOAD)
    if path.startswith("ramp."):
        payload["ramp"] = [{"coverage": 0.0}]
    if path.startswith("targeting."):
        payload["targeting"] = {"country": ["DE"]}
    if path == "variants.0.weight" and raw in SHARE_AT:
        payload["variants"][1]["weight"] = 1 - int(raw)  # the weights still sum to 1
    return with_number(payload, path, raw)


def _send(client, body: bytes) -> Any:
    return client.generic("POST", URL, body, content_type="application/json")


@pytest.mark.parametrize(("path", "raw", "message"), REFUSED)
def test_experiments_create__number_outside_its_range__400_naming_the_field_nothing_stored(
    manager, churn, path, raw, message
):
    # When an experiment is posted with the number as written
    response = _send(manager, _payload(path, raw))
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [{"field": path, "message": message}]
    assert Experiment.objects.count() == 0
    assert RolloutEvent.objects.count() == 0


@pytest.mark.parametrize(("path", "raw"), ACCEPTED)
def test_experiments_create__number_at_its_bound__created(manager, churn, path, raw):
    # When an experiment is posted with the bound itself
    response = _send(manager, _payload(path, raw))
    # Then it is created with that value
    assert response.status_code == 201
    shown = response.json()
    for step in path.split("."):
        shown = shown[int(step)] if isinstance(shown, list) else shown[step]
    assert shown == (str(int(float(raw))) if path.startswith("targeting") else float(raw))


@pytest.mark.parametrize(
    ("after", "status", "details"),
    [
        ("365d", 201, None),
        ("525600m", 201, None),
        ("366d", 400, "A step's after is from 0m to 365d."),
        ("8761h", 400, "A step's after is from 0m to 365d."),
        ("99999999999d", 400, "A step's after is from 0m to 365d."),
        ("9" * 5000 + "d", 400, "A step's after is from 0m to 365d."),
        ("-1h", 400, "Write a duration as <number>m, <number>h or <number>d, e.g. 24h."),
    ],
)
def test_experiments_create__ramp_step_after__at_most_365d(manager, churn, after, status, details):
    # Given a ramp whose second step comes `after` the start
    payload = {
        **copy.deepcopy(PAYLOAD),
        "ramp": [{"coverage": 0.1}, {"coverage": 1, "after": after}],
    }
    payload["coverage"] = 0.1
    # When
    response = manager.post(URL, payload, format="json")
    # Then
    assert response.status_code == status
    if details is not None:
        assert response.json()["error"]["details"] == [
            {"field": "ramp.1.after", "message": details}
        ]
        assert Experiment.objects.count() == 0


# --- assignments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [*EXTREMES, "1000000000000001", "-1.0000000000000002e15"], ids=lambda raw: raw[:24]
)
def test_assignments__numeric_attribute_outside_its_range__400_naming_it_no_exposure(
    ingester, make_experiment, raw
):
    # Given a running experiment
    make_experiment(start=True)
    body = {"experiment": PAYLOAD["key"], "subject": "user-1", "attributes": {"plan": "pro"}}
    # When a subject is assigned with the attribute as written
    response = ingester.generic(
        "POST",
        "/api/v1/assignments",
        with_number(body, "attributes.age", raw),
        content_type="application/json",
    )
    # Then
    assert response.status_code == 400
    message = BEYOND_FLOAT if raw.lstrip("-") == HUGE_INTEGER else VALUE_RANGE
    assert response.json()["error"]["details"] == [{"field": "attributes.age", "message": message}]
    assert Exposure.objects.count() == 0


@pytest.mark.parametrize("raw", ["1e15", "-1e15"])
def test_assignments__numeric_attribute_at_its_bound__exposure_with_it(
    ingester, make_experiment, raw
):
    make_experiment(start=True)
    body = {"experiment": PAYLOAD["key"], "subject": "user-1"}
    response = ingester.generic(
        "POST",
        "/api/v1/assignments",
        with_number(body, "attributes.age", raw),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert Exposure.objects.get().attributes == {"age": float(raw)}


def test_experiments_create__every_weight_huge__400_naming_each_not_500(manager, churn):
    # Given weights whose sum overflows a float
    payload = copy.deepcopy(PAYLOAD)
    for variant in payload["variants"]:
        variant["weight"] = 1e308
    # When
    response = manager.post(URL, payload, format="json")
    # Then each weight is named (and the sum is not computed)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"field": "variants.0.weight", "message": WEIGHT},
        {"field": "variants.1.weight", "message": WEIGHT},
    ]
    assert Experiment.objects.count() == 0

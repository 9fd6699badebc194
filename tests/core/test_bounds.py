"""Numeric ranges (apps.core.bounds) and durations (apps.core.durations) shared by every app."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.core.bounds import INT64, LATENCY_MS, SHARE, VALUE, Bound
from apps.core.durations import parse_duration

ALPHA = Bound(0, 1, exclusive_minimum=True, exclusive_maximum=True)


@pytest.mark.parametrize(
    ("bound", "text"),
    [
        (VALUE, "from -1e15 to 1e15"),
        (LATENCY_MS, "from 0 to 86400000"),
        (INT64, "from -9223372036854775808 to 9223372036854775807"),
        (SHARE, "from 0 to 1"),
        (ALPHA, "greater than 0 and less than 1"),
        (Bound(0, 100, exclusive_minimum=True), "greater than 0 and at most 100"),
        (Bound(0.05, 2.5, exclusive_maximum=True), "at least 0.05 and less than 2.5"),
    ],
)
def test_bound_text__each_kind_of_range__as_api_md_writes_it(bound, text):
    assert bound.text == text


@pytest.mark.parametrize(
    ("bound", "value", "problem"),
    [
        (VALUE, 10**15, None),
        (VALUE, -1e15, None),
        (VALUE, 1e15 + 0.125, "Out of range: must be a number from -1e15 to 1e15."),
        (VALUE, 10**400, "Out of range: must be a number from -1e15 to 1e15."),
        (VALUE, float("inf"), "Must be a finite number from -1e15 to 1e15."),
        (VALUE, float("nan"), "Must be a finite number from -1e15 to 1e15."),
        (VALUE, True, "Must be a number from -1e15 to 1e15."),
        (VALUE, "1", "Must be a number from -1e15 to 1e15."),
        (VALUE, None, "Must be a number from -1e15 to 1e15."),
        (INT64, 2**63 - 1, None),
        (INT64, -(2**63), None),
        (INT64, 2**63, f"Out of range: must be a whole number {INT64.text}."),
        (INT64, 1.5, f"Must be a whole number {INT64.text}."),
        (ALPHA, 0, "Out of range: must be a number greater than 0 and less than 1."),
        (ALPHA, 1, "Out of range: must be a number greater than 0 and less than 1."),
        (ALPHA, 5e-324, None),
    ],
)
def test_bound_problem__value__none_inside_else_the_message(bound, value, problem):
    assert bound.problem(value) == problem


@given(
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, 1.0, -0.0, 1e15, -1e15, 86_400_000.0, 5e-324]),
    ),
    bound=st.sampled_from([VALUE, LATENCY_MS, SHARE, ALPHA]),
)
def test_bound_meta__any_float__msgspec_accepts_exactly_what_problem_accepts(value, bound):
    # The ingestion decoder (msgspec) and every other app (problem()) share one range
    decoder = msgspec.json.Decoder(Annotated[float, bound.meta()])
    try:
        decoder.decode(msgspec.json.encode(value))
        accepted = True
    except msgspec.ValidationError:
        accepted = False
    assert accepted == (bound.problem(value) is None)


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        (VALUE, {"minimum": -(10**15), "maximum": 10**15}),
        (ALPHA, {"minimum": 0, "maximum": 1, "exclusiveMinimum": True, "exclusiveMaximum": True}),
    ],
)
def test_bound_openapi__range__minimum_and_maximum(bound, expected):
    assert bound.openapi() == expected


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", timedelta(minutes=30)), (" 2 d ", 2 * DAY), ("0h", timedelta(0)), ("10d", 10 * DAY)],
)
def test_parse_duration__within_the_range__timedelta(text, expected):
    assert parse_duration(text, minimum=timedelta(0), maximum=10 * DAY) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("241h", "It is from 0m to 10d."),
        ("11d", "It is from 0m to 10d."),
        ("99999999999d", "It is from 0m to 10d."),
        ("9" * 100_000 + "m", "It is from 0m to 10d."),
        ("1.5h", "Write a duration as <number>m, <number>h or <number>d, e.g. 6h."),
        ("-1h", "Write a duration as <number>m, <number>h or <number>d, e.g. 6h."),
        ("١h", "Write a duration as <number>m, <number>h or <number>d, e.g. 6h."),
    ],
)
def test_parse_duration__outside_the_range_or_not_a_duration__value_error(text, message):
    with pytest.raises(ValueError) as raised:
        parse_duration(text, minimum=timedelta(0), maximum=10 * DAY, subject="It")
    assert str(raised.value) == message

"""Property: hostile strings in every path and query parameter of every GET route the OpenAPI
schema lists, and unknown parameter names, never get a 5xx.

Each route, its path parameters and its query parameters are read from the schema
(drf-spectacular's SchemaGenerator), so a route added later is covered without touching this
file. Hypothesis draws, for each parameter, either a value naming a real row (so that the
deeper code runs too) or a hostile string: any Unicode, C0/C1 control characters, lone
surrogates (sent as the bytes a client would send: invalid UTF-8), very long strings,
non-ASCII digits, and values that look almost right. Requests go in process through the
Django test client with a key holding every scope. Bounded and derandomized.

Every answer: below 500; an error has API.md's body; a path parameter with a control
character (or longer than 1024) is a 404 naming it; otherwise an unknown parameter is a 400
listing exactly the unknown names; otherwise a control character in any parameter is a 400
naming that parameter.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.http import QueryDict
from django.utils.encoding import repercent_broken_unicode
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.text import control_character
from tests.core.world import World, build_world

pytestmark = pytest.mark.django_db

EXAMPLES_PER_ROUTE = 100

NEAR_MISSES = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "-1",
    "0",
    "1e9",
    "1.5",
    "abc",
    "٣",
    "１０",
    "9" * 400,
    "true",
    "True",
    "hour",
    "day\x00",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00Z",
    "2026-11-26T10:00:00+25:00",
    "2026-11-26T10:00:00",
    "2026-11-26T10:00:00Z",
    "2026-11-26T10:00:00Z\x00",
    "WyJ4IiwxXQ",
    "WyJ4IiwxXQ.AAAA",
    "%",
    "%00",
    "../..",
    "' OR 1=1 --",
]
CONTROL = st.characters(categories=["Cc"])
UNICODE_DIGITS = st.characters(categories=["Nd"])
HOSTILE = st.one_of(
    st.sampled_from(NEAR_MISSES),
    st.text(max_size=30),
    st.text(alphabet=st.one_of(CONTROL, st.characters(codec="ascii")), max_size=20),
    st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=8),
    st.lists(st.sampled_from(["\ud800", "\udbff", "\udc00", "a", "é"]), max_size=6).map("".join),
    st.builds(
        lambda unit, times: unit * times,
        st.sampled_from(["x", "9", "é", "\x00"]),
        st.integers(1000, 6000),
    ),
)
UNKNOWN_NAMES = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(NEAR_MISSES)), max_size=3)


def _get_routes() -> list[tuple[str, list[str], list[str]]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    routes = []
    for path, item in schema["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        parameters = operation.get("parameters", [])
        in_path = [parameter["name"] for parameter in parameters if parameter["in"] == "path"]
        in_query = [parameter["name"] for parameter in parameters if parameter["in"] == "query"]
        routes.append((path, in_path, in_query))
    return routes


ROUTES = _get_routes()


def _encode(text: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate as the invalid bytes a client would send."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _as_server_reads_path(text: str) -> str:
    """A path segment as Django reads it (invalid UTF-8 stays percent-encoded)."""
    return repercent_broken_unicode(text.encode("utf-8", "surrogatepass")).decode()


@st.composite
def _requests(draw: Any, path: str, in_path: list[str], in_query: list[str], world: World) -> Any:
    in_url_order = sorted(in_path, key=lambda name: path.index("{" + name + "}"))
    path_values = {
        name: draw(st.one_of(st.just(world.value(path, name)), HOSTILE)) for name in in_url_order
    }
    query = [(name, draw(HOSTILE)) for name in in_query if draw(st.booleans())]
    query += [(name, draw(HOSTILE)) for name in draw(UNKNOWN_NAMES) if name not in in_query]
    return path_values, query


def _assert_error_body(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) <= {"index", "field", "message"}
        assert isinstance(detail["message"], str)
        assert isinstance(detail.get("field", ""), str)
    return error


@pytest.mark.parametrize(
    ("path", "in_path", "in_query"), ROUTES, ids=[route[0] for route in ROUTES]
)
def test_get_route__hostile_path_and_query_parameters__never_5xx_and_refused_by_name(
    make_client, path, in_path, in_query
):
    world = build_world()
    client = make_client("read")

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=_requests(path, in_path, in_query, world))
    def check(request: tuple[dict[str, str], list[tuple[str, str]]]) -> None:
        path_values, query = request
        url = path
        for name, value in path_values.items():
            url = url.replace("{" + name + "}", _encode(value))
        query_string = "&".join(f"{_encode(name)}={_encode(value)}" for name, value in query)
        # When
        response = client.get(f"{url}?{query_string}" if query_string else url)
        # Then
        assert response.status_code < 500
        if response.status_code >= 400:
            error = _assert_error_body(response)
        else:
            error = None
        _expect_refusal(response.status_code, error, path_values, query_string, in_query)

    check()


def _expect_refusal(
    status: int,
    error: dict[str, Any] | None,
    path_values: dict[str, str],
    query_string: str,
    in_query: list[str],
) -> None:
    """What the rules say must happen, given what the server reads (`path_values` in URL
    order)."""
    read_path = {name: _as_server_reads_path(value) for name, value in path_values.items()}
    if any(value == "" or "/" in value for value in read_path.values()):
        return  # another route, or none: the resolver decides
    unnamable = [
        name
        for name, value in read_path.items()
        if control_character(value) is not None or len(value) > 1024
    ]
    fields = [detail.get("field") for detail in error["details"]] if error else []
    if unnamable:
        assert status == 404
        assert fields == unnamable[:1]
        return
    read_query = QueryDict(query_string)
    unknown = [name for name in read_query if name not in in_query]
    if unknown:
        assert status == 400
        assert error is not None and error["code"] == "validation_error"
        assert fields == [name[:100] for name in unknown[:20]]
        return
    hostile = [
        name
        for name, values in read_query.lists()
        if any(control_character(value) is not None for value in values)
    ]
    if hostile:
        assert status == 400
        assert set(hostile) <= set(fields)

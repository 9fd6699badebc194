"""Every endpoint under /api/v1/, as the URL resolver lists it: no key → 401, a key without
the scope the view declares for the method → 403, a method the view lacks → 405.

The table is built from the resolver and each view's `scopes`, so an endpoint added later
is covered without touching this file.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern
from rest_framework.test import APIClient

from apps.accounts.models import Scope

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")
ALL_SCOPES = frozenset(scope.value for scope in Scope)
SAMPLES = ("placeholder", "1", str(uuid.UUID(int=1)), "json")
ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?:[^()\\]|\\.)*\)")


@dataclass(frozen=True)
class Endpoint:
    path: str
    view: Any  # the view class
    methods: tuple[str, ...]  # the ones the view implements, upper case

    def needed(self, method: str) -> str | None:
        scopes: dict[str, str] = getattr(self.view, "scopes", {})
        return scopes.get("GET" if method == "HEAD" else method)


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found.extend(_walk(entry.url_patterns, prefix + _template(entry.pattern)))
        elif isinstance(entry, URLPattern):
            found.append((prefix + _template(entry.pattern), entry))
    return found


def _template(pattern: Any) -> str:
    text = str(pattern)
    if isinstance(pattern, RegexPattern):
        return text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    assert isinstance(pattern, RoutePattern), type(pattern)
    return text


def _fill(template: str, sample: str) -> str:
    filled = ROUTE_PARAMETER.sub(sample, template)
    filled = REGEX_GROUP.sub(sample, filled)
    return "/" + filled.replace("\\.", ".").replace("\\/", "/")


def _concrete_path(template: str, entry: URLPattern) -> str:
    """The template with placeholders that resolve to this very view, or fail loudly."""
    for sample in SAMPLES:
        candidate = _fill(template, sample)
        try:
            match = resolve(candidate)
        except Resolver404:
            continue
        if match.func is entry.callback:
            return candidate
    pytest.fail(f"no placeholder resolves {template!r}; extend SAMPLES in {__name__}")


def _endpoints() -> list[Endpoint]:
    endpoints = []
    for template, entry in _walk(get_resolver().url_patterns):
        if not template.startswith(API_PREFIX):
            continue
        view = getattr(entry.callback, "cls", None) or getattr(entry.callback, "view_class", None)
        assert view is not None, f"{template}: not a class-based view"
        actions = getattr(entry.callback, "actions", None)  # a ViewSet's method map
        implemented = [
            method
            for method in METHODS
            if (method in actions if actions is not None else hasattr(view, method))
        ]
        if "get" in implemented:
            implemented.append("head")
        methods = tuple(method.upper() for method in implemented)
        endpoints.append(Endpoint(_concrete_path(template, entry), view, methods))
    return endpoints


ENDPOINTS = _endpoints()
IMPLEMENTED = [(endpoint, method) for endpoint in ENDPOINTS for method in endpoint.methods]
MISSING = [
    (endpoint, method.upper())
    for endpoint in ENDPOINTS
    for method in METHODS
    if method.upper() not in endpoint.methods
]


def _id(case: tuple[Endpoint, str]) -> str:
    endpoint, method = case
    return f"{method} {endpoint.path}"


def _send(client: APIClient, method: str, path: str) -> Any:
    if method in {"POST", "PUT", "PATCH"}:
        return client.generic(method, path, "{}", content_type="application/json")
    return client.generic(method, path)


def _error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def test_enumeration__finds_the_documented_endpoints():
    # Then: the table is not silently empty, and covers every app's routes
    paths = {endpoint.path for endpoint in ENDPOINTS}
    assert "/api/v1/events" in paths
    assert len(IMPLEMENTED) >= len(ENDPOINTS)


@pytest.mark.parametrize("case", IMPLEMENTED, ids=[_id(case) for case in IMPLEMENTED])
def test_endpoint__every_implemented_method__declares_a_known_scope(case):
    # Given
    endpoint, method = case
    # Then: a method without a scope would be refused to every key (deny by default)
    assert endpoint.needed(method) in ALL_SCOPES, f"{endpoint.view.__name__}.scopes"


@pytest.mark.django_db
@pytest.mark.parametrize("case", IMPLEMENTED, ids=[_id(case) for case in IMPLEMENTED])
def test_endpoint__no_key__401_with_error_body(anonymous, case):
    # Given
    endpoint, method = case
    # When
    response = _send(anonymous, method, endpoint.path)
    # Then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="kaizen"'
    if method != "HEAD":
        assert _error_code(response) == "unauthenticated"


@pytest.mark.django_db
@pytest.mark.parametrize("case", IMPLEMENTED, ids=[_id(case) for case in IMPLEMENTED])
def test_endpoint__key_with_every_other_scope__403_with_error_body(make_client, case):
    # Given: a key holding every scope except the one this method needs
    endpoint, method = case
    needed = endpoint.needed(method)
    others = sorted(ALL_SCOPES - {needed})
    # When
    response = _send(make_client(*others), method, endpoint.path)
    # Then
    assert response.status_code == 403
    if method != "HEAD":
        assert _error_code(response) == "forbidden"


@pytest.mark.django_db
@pytest.mark.parametrize("case", MISSING, ids=[_id(case) for case in MISSING])
def test_endpoint__method_not_implemented__405_before_any_scope_check(make_client, case):
    # Given: a key with one scope only, likely not what the view needs
    endpoint, method = case
    # When
    response = _send(make_client("ingest"), method, endpoint.path)
    # Then
    assert response.status_code == 405
    assert _error_code(response) == "method_not_allowed"

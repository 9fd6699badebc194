"""Query and path parameters: declared once per view method, checked before the view runs.

`@accepts(Text("model"), Limit(), Cursor())` on a view method is the one declaration of the
query parameters it accepts: it feeds drf-spectacular's `extend_schema(parameters=...)`, so
the OpenAPI schema lists exactly those, and `DeclaredParameters` (a permission every API
view runs after the key and scope checks) refuses, before the view reads anything:

- a parameter the method does not declare (400 listing every unknown name), or one given
  twice;
- a value its kind refuses: control characters or over-long text, a number that is not
  ASCII digits or is out of range, a time without an offset or outside the calendar, an
  unknown choice (400 naming the parameter);
- a path parameter holding a control character, or longer than any name: it names nothing
  (404 naming the parameter).

An empty value (`?model=`) counts as not given. A method without a declaration accepts no
query parameter. Views keep reading `request.query_params`; every value they read has
passed its kind's check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from django.http import HttpRequest, HttpResponseBase, QueryDict
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.core.cursors import MAX_CURSOR_LENGTH
from apps.core.errors import ApplicationError, Detail, NotFound, ValidationFailed, json_error
from apps.core.text import name_problem

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TEXT_LENGTH = 1024
# How many unknown parameters an error lists, and how much of each name it echoes.
_MAX_ECHOED = 20
_ECHO_LENGTH = 100
_NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
_ATTRIBUTE = "query_parameters"

F = TypeVar("F", bound=Callable[..., Any])
View = Callable[..., HttpResponseBase]


class Invalid(Exception):
    """A value its parameter refuses: `message` for the detail, `summary` for the error."""

    def __init__(self, summary: str, message: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.message = message


@dataclass(frozen=True)
class Parameter:
    """A query parameter: its name, what it means, and how its value is read."""

    name: str
    description: str = ""
    openapi_type: ClassVar[dict[str, Any]] = {"type": "string"}

    def schema(self) -> dict[str, Any]:
        return dict(self.openapi_type)

    def openapi(self) -> OpenApiParameter:
        return OpenApiParameter(
            self.name, self.schema(), OpenApiParameter.QUERY, description=self.description
        )

    def parse(self, raw: str) -> Any:
        """The value of a non-empty `raw`; Invalid when the parameter refuses it."""
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Parameter):
    """A name or other short text: no control characters, at most `max_length` characters."""

    max_length: int = MAX_TEXT_LENGTH

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.max_length, "pattern": _NO_CONTROL_CHARACTERS}

    def parse(self, raw: str) -> str:
        problem = name_problem(raw)
        if problem is not None:
            raise Invalid(f"{self.name} holds a control character.", problem)
        if len(raw) > self.max_length:
            raise Invalid(f"{self.name} is too long.", f"At most {self.max_length} characters.")
        return raw


@dataclass(frozen=True)
class Integer(Parameter):
    """A whole number in [minimum, maximum], written in ASCII digits (no sign, space or _)."""

    minimum: int = 0
    maximum: int = 2**63 - 1

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}

    def parse(self, raw: str) -> int:
        if raw.isascii() and raw.isdigit() and len(raw) <= len(str(self.maximum)):
            value = int(raw)
            if self.minimum <= value <= self.maximum:
                return value
        raise Invalid(
            f"{self.name} must be an integer from {self.minimum} to {self.maximum}.",
            f"Between {self.minimum} and {self.maximum}.",
        )


@dataclass(frozen=True)
class Limit(Integer):
    """The size of a page (API.md "Lists")."""

    name: str = "limit"
    description: str = f"1-{MAX_LIMIT}, default {DEFAULT_LIMIT}"
    minimum: int = 1
    maximum: int = MAX_LIMIT


@dataclass(frozen=True)
class Boolean(Parameter):
    openapi_type: ClassVar[dict[str, Any]] = {"type": "boolean"}

    def parse(self, raw: str) -> bool:
        if raw not in {"true", "false"}:
            raise Invalid(f"{self.name} is true or false.", "true or false.")
        return raw == "true"


@dataclass(frozen=True)
class Choice(Parameter):
    """One of a fixed set of words."""

    choices: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}

    def parse(self, raw: str) -> str:
        if raw not in self.choices:
            raise Invalid(f"Unknown {self.name}.", ", ".join(self.choices))
        return raw


@dataclass(frozen=True)
class Time(Parameter):
    """An RFC 3339 time with its offset (Z or ±hh:mm), as an aware datetime in UTC."""

    openapi_type: ClassVar[dict[str, Any]] = {"type": "string", "format": "date-time"}

    def parse(self, raw: str) -> datetime:
        try:
            # Python's fromisoformat reads "…Z\x00" as a time: only printable ASCII is read.
            parsed = parse_datetime(raw) if raw.isascii() and raw.isprintable() else None
        except ValueError:  # a well-formed time that is not in the calendar, or a bad offset
            parsed = None
        if parsed is None:
            raise Invalid(
                f"{self.name} is not an RFC 3339 time.",
                "Use e.g. 2026-11-26T10:00:00Z (URL-encode '+' as %2B).",
            )
        if parsed.utcoffset() is None:
            raise Invalid(f"{self.name} has no timezone.", "Give an offset or Z.")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise Invalid(
                f"{self.name} is out of range.", "The time in UTC is out of range."
            ) from None


@dataclass(frozen=True)
class Cursor(Parameter):
    """A `next_cursor` given out earlier; its reader checks its signature and content."""

    name: str = "cursor"
    description: str = "next_cursor of the previous page"

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": MAX_CURSOR_LENGTH}

    def parse(self, raw: str) -> str:
        if len(raw) > MAX_CURSOR_LENGTH or not raw.isascii() or not raw.isprintable():
            raise Invalid(
                "The cursor is not one this server gave out.",
                "Pass next_cursor from a previous page.",
            )
        return raw


PAGE = (Cursor(), Limit())


def accepts(*parameters: Parameter) -> Callable[[F], F]:
    """Declare the query parameters a view method accepts (the schema's and the check's)."""

    def decorate(method: F) -> F:
        method = extend_schema(parameters=[parameter.openapi() for parameter in parameters])(method)
        setattr(method, _ATTRIBUTE, tuple(parameters))
        return method

    return decorate


def declared(method: Any) -> tuple[Parameter, ...]:
    """The query parameters `method` accepts (none when it declares none)."""
    return tuple(getattr(method, _ATTRIBUTE, ()))


def parse_query(query: QueryDict, parameters: Sequence[Parameter]) -> dict[str, Any]:
    """The given, non-empty parameters' values; one ValidationFailed listing every problem."""
    accepted = {parameter.name: parameter for parameter in parameters}
    unknown = [name for name in query if name not in accepted]
    if unknown:
        raise _unknown(unknown, sorted(accepted))
    values: dict[str, Any] = {}
    problems: list[tuple[str, Detail]] = []
    for name, raws in query.lists():
        if len(raws) > 1:
            problems.append((f"{name} is given more than once.", _detail(name, "Give it once.")))
            continue
        if raws[0] == "":
            continue
        try:
            values[name] = accepted[name].parse(raws[0])
        except Invalid as error:
            problems.append((error.summary, _detail(name, error.message)))
    if problems:
        summary = problems[0][0] if len(problems) == 1 else "Some query parameters are invalid."
        raise ValidationFailed(summary, details=[detail for _, detail in problems])
    return values


def _unknown(names: Sequence[str], accepted: Sequence[str]) -> ValidationFailed:
    listed = ", ".join(accepted) if accepted else "none"
    shown = [name[:_ECHO_LENGTH] for name in names[:_MAX_ECHOED]]
    return ValidationFailed(
        f"Unknown query parameter{'s' if len(names) > 1 else ''}: {', '.join(shown)}.",
        details=[_detail(name, f"Not a parameter here; accepted: {listed}.") for name in shown],
    )


def _detail(field: str, message: str) -> Detail:
    return {"field": field, "message": message}


def check_path(kwargs: Mapping[str, Any]) -> None:
    """404 for a path parameter that cannot name anything (a control character, too long)."""
    for name, value in kwargs.items():
        if not isinstance(value, str):
            continue
        problem = name_problem(value)
        if problem is None and len(value) > MAX_TEXT_LENGTH:
            problem = f"At most {MAX_TEXT_LENGTH} characters."
        if problem is not None:
            raise NotFound(f"No such {name}.", details=[_detail(name, problem)])


def check_request(query: QueryDict, kwargs: Mapping[str, Any], method: Any) -> dict[str, Any]:
    """check_path, then parse_query against what `method` declares."""
    check_path(kwargs)
    return parse_query(query, declared(method))


def checked(view: View, *parameters: Parameter) -> View:
    """A plain Django view that accepts only `parameters`, checked as DeclaredParameters does.

    For the views outside DRF (/healthz, /readyz, /metrics, the schema): the error is API.md's
    body, answered before the view runs.
    """

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            check_path(kwargs)
            parse_query(request.GET, parameters)
        except ApplicationError as error:
            return json_error(error.status, error.code, error.message, error.details)
        return view(request, *args, **kwargs)

    return wrapped


class DeclaredParameters(BasePermission):
    """Runs the parameter checks of this module on every DRF view (after HasScope).

    A permission because it is the one hook DRF runs for every view after authentication
    and before the handler: a client without a valid key still gets 401, not 400. A method
    the view does not implement passes, so that DRF answers 405.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        query = request.query_params
        kwargs = getattr(view, "kwargs", None)
        if not query and not kwargs:  # the ingestion path: nothing to check
            return True
        method = getattr(view, (request.method or "").lower(), None)
        if method is not None:
            check_request(query, kwargs or {}, method)
        return True

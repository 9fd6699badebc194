"""Keyset pagination for every list endpoint: `{"results", "next_cursor"}` (API.md "Lists").

A cursor is the opaque, URL-safe encoding of the ordering key of the last row returned, so
a page never skips or repeats rows that existed when the first page was read, and costs one
indexed range scan however deep the client goes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from django.utils.timezone import is_naive
from rest_framework.request import Request

from apps.core.errors import ValidationFailed

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _forged() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not one this server gave out.",
        details=[{"field": "cursor", "message": "Pass next_cursor from a previous page."}],
    )


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError) as error:
        raise _forged() from error
    if not isinstance(values, list) or len(values) != size:
        raise _forged()
    return values


def parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be an integer from 1 to {MAX_LIMIT}.",
            details=[{"field": "limit", "message": f"Between 1 and {MAX_LIMIT}."}],
        )
    return limit


def _after(keys: Sequence[str], values: Sequence[Any]) -> Q:
    """Rows strictly after `values` in the ascending order of `keys` (a row comparison).

    The leading `keys[0] >= values[0]` is implied by the rest; it is there so that PostgreSQL
    starts the index scan at the cursor instead of filtering every row before it.
    """
    condition = Q()
    for position, key in enumerate(keys):
        step = Q(**{f"{key}__gt": values[position]})
        for earlier, earlier_key in enumerate(keys[:position]):
            step &= Q(**{earlier_key: values[earlier]})
        condition |= step
    return Q(**{f"{keys[0]}__gte": values[0]}) & condition


def _field(model: type[Model], key: str) -> Any:
    """The model field a `a__b` ordering key ends at (the target of a relation), or None."""
    field: Any = None
    current: Any = model
    try:
        for part in key.split("__"):
            field = current._meta.get_field(part)
            current = field.related_model
    except (FieldDoesNotExist, AttributeError):
        return None
    return field.target_field if field.is_relation else field


def _typed(model: type[Model], keys: Sequence[str], values: Sequence[Any]) -> list[Any]:
    """The cursor's values as the key fields' Python values; a forged cursor is a 400.

    A cursor is client input: a value of the wrong type would otherwise fail inside the ORM
    (ValueError, ValidationError, TypeError) and answer 500.
    """
    typed = []
    for key, value in zip(keys, values, strict=True):
        field = _field(model, key)
        if field is None:  # an annotation: the ORM types it, not a field
            typed.append(value)
            continue
        try:
            converted = field.to_python(value) if value is not None else None
        except (DjangoValidationError, TypeError, ValueError, OverflowError) as error:
            raise _forged() from error
        if converted is None or (isinstance(converted, datetime) and is_naive(converted)):
            raise _forged()
        typed.append(converted)
    return typed


def paginate[M: Model](
    request: Request,
    queryset: QuerySet[M],
    *,
    keys: Sequence[str],
    serialize: Callable[[M], dict[str, Any]],
) -> dict[str, Any]:
    """One page of `queryset` in ascending order of `keys` (the last key must be unique)."""
    limit = parse_limit(request)
    cursor = request.query_params.get("cursor")
    if cursor:
        values = _typed(queryset.model, keys, decode_cursor(cursor, len(keys)))
        queryset = queryset.filter(_after(keys, values))
    rows = list(queryset.order_by(*keys)[: limit + 1])
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor([_key_value(last, key) for key in keys])
    return {"results": [serialize(row) for row in page], "next_cursor": next_cursor}


def _key_value(row: Model, key: str) -> Any:
    value: Any = row
    for part in key.split("__"):
        value = getattr(value, part)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

"""Keyset pagination for every list endpoint: `{"results", "next_cursor"}` (API.md "Lists").

A cursor is the ordering key of the last row returned, signed for its list's kind (the rows'
model and the keys; apps.core.cursors), so a page never skips or repeats rows that existed
when the first page was read, costs one indexed range scan however deep the client goes, and
a cursor forged, truncated or taken from another list is a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from django.utils.timezone import is_naive
from rest_framework.request import Request

from apps.core.cursors import cursor_sign, cursor_unsign, forged
from apps.core.errors import ValidationFailed
from apps.core.query import DEFAULT_LIMIT, Invalid, Limit

_LIMIT = Limit()


def list_kind(model: type[Model], keys: Sequence[str]) -> str:
    """The kind of the cursors of a list of `model` rows in `keys` order (the signing salt)."""
    return f"list.{model._meta.label_lower}.{'.'.join(keys)}"


def encode_cursor(kind: str, values: Sequence[Any]) -> str:
    return cursor_sign(kind, list(values))


def decode_cursor(kind: str, cursor: str, size: int) -> list[Any]:
    values = cursor_unsign(kind, cursor, field="cursor")
    if not isinstance(values, list) or len(values) != size:
        raise forged("cursor")
    return values


def parse_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        return _LIMIT.parse(raw)
    except Invalid as error:
        raise ValidationFailed(
            error.summary, details=[{"field": _LIMIT.name, "message": error.message}]
        ) from None


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
            raise forged("cursor") from error
        if converted is None or (isinstance(converted, datetime) and is_naive(converted)):
            raise forged("cursor")
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
    kind = list_kind(queryset.model, keys)
    cursor = request.query_params.get("cursor")
    if cursor:
        values = _typed(queryset.model, keys, decode_cursor(kind, cursor, len(keys)))
        queryset = queryset.filter(_after(keys, values))
    rows = list(queryset.order_by(*keys)[: limit + 1])
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor(kind, [_key_value(last, key) for key in keys])
    return {"results": [serialize(row) for row in page], "next_cursor": next_cursor}


def _key_value(row: Model, key: str) -> Any:
    value: Any = row
    for part in key.split("__"):
        value = getattr(value, part)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

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
from typing import Any

from django.db.models import Model, Q, QuerySet
from rest_framework.request import Request

from apps.core.errors import ValidationFailed

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as error:
        raise ValidationFailed(
            "The cursor is not one this server gave out.",
            details=[{"field": "cursor", "message": "Pass next_cursor from a previous page."}],
        ) from error
    if not isinstance(values, list) or len(values) != size:
        raise ValidationFailed(
            "The cursor is not one this server gave out.",
            details=[{"field": "cursor", "message": "Pass next_cursor from a previous page."}],
        )
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
    """Rows strictly after `values` in the ascending order of `keys` (a row comparison)."""
    condition = Q()
    for position, key in enumerate(keys):
        step = Q(**{f"{key}__gt": values[position]})
        for earlier, earlier_key in enumerate(keys[:position]):
            step &= Q(**{earlier_key: values[earlier]})
        condition |= step
    return condition


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
        queryset = queryset.filter(_after(keys, decode_cursor(cursor, len(keys))))
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

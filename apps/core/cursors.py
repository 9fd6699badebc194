"""Opaque cursors, signed: a forged, truncated or edited cursor, or another list's, is a 400.

A cursor is the URL-safe base64 of a small JSON document (the position a page ended at),
followed by `.` and an HMAC-SHA256 of it (django.core.signing, keyed by SECRET_KEY, with
SECRET_KEY_FALLBACKS honoured). The salt names the kind of cursor (which list, or the event
feed), so a cursor given out by one list is refused by every other. Nothing of a cursor
reaches the database unless its signature holds; its content is still checked by its reader
(a signed cursor from an older release may hold what this one no longer expects).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django.core import signing

from apps.core.errors import ValidationFailed

# A cursor this server gives out is well under this; a longer one is refused before any
# hashing.
MAX_CURSOR_LENGTH = 1024
_SEPARATOR = "."  # never in URL-safe base64, so a cursor needs no escaping in a URL


def _signer(kind: str) -> signing.Signer:
    return signing.Signer(salt=f"kaizen.cursor.{kind}", sep=_SEPARATOR)


def forged(field: str) -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not one this server gave out.",
        details=[{"field": field, "message": "Pass next_cursor from a previous page."}],
    )


def cursor_sign(kind: str, value: Any) -> str:
    """`value` (JSON-serialisable; other values as str) as a signed cursor of `kind`."""
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return _signer(kind).sign(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def cursor_unsign(kind: str, cursor: str, *, field: str) -> Any:
    """The value a cursor of `kind` holds; ValidationFailed naming `field` if it is not one."""
    if len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise forged(field)
    try:
        payload = _signer(kind).unsign(cursor)
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (signing.BadSignature, ValueError, binascii.Error, RecursionError) as error:
        raise forged(field) from error

"""The JSON parser of every endpoint: orjson, strict.

orjson refuses what API.md refuses at the parser already: NaN and Infinity (which Python's
json module accepts), numbers that overflow to infinity (a 400 naming the field: they are
beyond every field's range), lone surrogates, invalid UTF-8, and nesting beyond 1024 levels
(no recursion error). The one thing valid JSON may carry that
PostgreSQL cannot store (text and jsonb both refuse it) is U+0000: it is refused here with a
400 naming where it is, so no endpoint can answer 500 for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from apps.core import bounds
from apps.core.errors import ValidationFailed

_NUL_ESCAPE = b"\\u0000"


def loads(raw: bytes | str) -> Any:
    """Parse a JSON document or raise ParseError with a message a client can act on."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        beyond = bounds.beyond_float_path(raw)
        if beyond is not None:  # a number too large for any field: name where it is
            where: dict[str, Any] = {"field": beyond} if beyond else {}
            raise ValidationFailed(
                "A number is out of range.",
                details=[{**where, "message": bounds.BEYOND_FLOAT}],
            ) from error
        raise ParseError(f"The body is not valid JSON: {error}") from error
    # A raw NUL byte is not valid JSON, so only the escape can bring one in: look for it in
    # the bytes first and walk the document only when it is there.
    escaped = _NUL_ESCAPE in raw if isinstance(raw, bytes) else _NUL_ESCAPE.decode() in raw
    path = _nul_path(document) if escaped else None
    if path is not None:
        detail: dict[str, Any] = {"field": path} if path else {}
        raise ValidationFailed(
            "Strings may not contain U+0000.",
            details=[{**detail, "message": "Contains U+0000."}],
        )
    return document


def _nul_path(document: Any) -> str | None:
    """The dotted path of a string (or key) holding U+0000, or None.

    Iterative: orjson allows 1024 levels of nesting, more than Python's recursion limit.
    """
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return path
        if isinstance(value, dict | list):
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in pairs:
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    return child
                stack.append((child, item))
    return None


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw:
            raise ParseError("The body is empty; send a JSON document.")
        return loads(raw)

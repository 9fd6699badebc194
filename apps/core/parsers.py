"""The JSON parser of every endpoint: orjson, strict.

orjson refuses what API.md refuses at the parser already: NaN and Infinity (which Python's
json module accepts), invalid UTF-8, and nesting beyond 1024 levels (no recursion error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


def loads(raw: bytes | str) -> Any:
    """Parse a JSON document or raise ParseError with a message a client can act on."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ParseError(f"The body is not valid JSON: {error}") from error


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

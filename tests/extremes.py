"""The extreme numbers every bounded field of every request body is tried with (API.md
"Limits"), and bodies carrying one as written (orjson cannot write a 400-digit integer)."""

from __future__ import annotations

import copy
from typing import Any

import orjson

HUGE_INTEGER = "1" + "0" * 399  # 400 digits
# Outside every range API.md allows (integers past int64 included).
EXTREMES = (
    "1e308",
    "-1e308",
    "1e16",
    "-1e16",
    "9223372036854775808",
    "-9223372036854775809",
    HUGE_INTEGER,
    "-" + HUGE_INTEGER,
)
VALUE_RANGE = "Out of range: must be a number from -1e15 to 1e15."
# What the parser answers for a number no float can hold, whatever the field.
BEYOND_FLOAT = (
    "Out of range: beyond what any number here may be "
    "(-9223372036854775808 to 9223372036854775807 at most; API.md, Limits)."
)
_SENTINEL = "@@number@@"


def with_number(body: Any, path: str, raw: str) -> bytes:
    """`body` as JSON with the number `raw`, as written, at the dotted `path`."""
    document = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = document
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node.setdefault(step, {})
    if isinstance(node, list):
        node[int(last)] = _SENTINEL
    else:
        node[last] = _SENTINEL
    return orjson.dumps(document).replace(f'"{_SENTINEL}"'.encode(), raw.encode())

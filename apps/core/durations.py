"""Durations as API.md writes them, `<n>m|h|d` (`30m`, `6h`, `2d`), for every app.

A duration is parsed against the range of its field, so a client's "99999999999d" is a message
naming that range, never an OverflowError from timedelta (whose maximum is 999,999,999 days).
"""

from __future__ import annotations

import re
from datetime import timedelta

DURATION_RE = re.compile(r"^\s*([0-9]+)\s*([mhd])\s*$")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
# More digits than this are beyond every range a field allows (and than timedelta holds).
_MAX_DIGITS = 9
FORMAT_MESSAGE = "Write a duration as <number>m, <number>h or <number>d, e.g. {example}."


def format_duration(value: timedelta) -> str:
    """The shortest `<n>d`, `<n>h` or `<n>m` spelling of a whole number of minutes."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h"):
        size = UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def range_text(minimum: timedelta, maximum: timedelta) -> str:
    return f"from {format_duration(minimum)} to {format_duration(maximum)}"


def parse_duration(
    text: str,
    *,
    minimum: timedelta,
    maximum: timedelta,
    example: str = "6h",
    subject: str = "A duration here",
) -> timedelta:
    """`text` as a timedelta within [minimum, maximum]; ValueError with the message otherwise
    ("<subject> is from <minimum> to <maximum>." when it is out of range)."""
    match = DURATION_RE.match(text)
    if match is None:
        raise ValueError(FORMAT_MESSAGE.format(example=example))
    digits, unit = match.groups()
    in_range = f"{subject} is {range_text(minimum, maximum)}."
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise ValueError(in_range)
    duration = timedelta(seconds=int(digits) * UNIT_SECONDS[unit])
    if not minimum <= duration <= maximum:
        raise ValueError(in_range)
    return duration

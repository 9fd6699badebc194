"""What a name a client sends may hold: printable text, no control characters.

Names (of models, versions, experiments, variants, metrics, rules, attributes, keys of
objects) are shown in the admin, written to logs and compared byte for byte; a control
character in one is never intended and often hostile (U+0000 cannot even be stored by
PostgreSQL). A control character is one of Unicode's category Cc: C0 (U+0000-U+001F), DEL
(U+007F) and C1 (U+0080-U+009F). Free text (descriptions, notes, error reports) may keep
tabs and line breaks; only U+0000 is refused there.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(value: str) -> str | None:
    """The first control character of `value` as `U+XXXX at position N`, or None."""
    match = _CONTROL.search(value)
    if match is None:
        return None
    return f"U+{ord(match.group()):04X} at position {match.start()}"


def name_problem(value: str) -> str | None:
    """A message for a name holding a control character, or None when it holds none."""
    found = control_character(value)
    if found is None:
        return None
    return f"Must not contain control characters (found {found})."

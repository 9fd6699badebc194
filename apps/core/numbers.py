"""Numbers as JSON can carry them."""

from __future__ import annotations

import math


def finite_or_none(number: float | None) -> float | None:
    """`number`, or None for NaN and ±Infinity (not JSON): stored rows written before the
    API bounded every number, or around it, may hold them, and an answer must not fail."""
    return number if number is not None and math.isfinite(number) else None

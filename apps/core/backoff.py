"""Exponential backoff: how long the n-th consecutive failure of something waits to retry."""

from __future__ import annotations


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """base · 2^(attempt − 1), at most `cap`: 1 → base, 2 → 2·base, 3 → 4·base, …"""
    exponent = min(max(0, attempt - 1), 62)
    return float(min(cap, base * 2**exponent))


def worth_logging(attempt: int) -> bool:
    """Whether the `attempt`-th consecutive failure is logged in full: the 1st, 2nd, 4th,
    8th… so a failure that repeats every few seconds fills no log."""
    return attempt >= 1 and attempt & (attempt - 1) == 0

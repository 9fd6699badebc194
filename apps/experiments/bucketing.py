"""Deterministic bucketing, hash version 1 (API.md "Experiments"): pure functions, no ORM.

The scheme is PostHog's feature-flag hash: h(s) = int(first 15 hex digits of SHA-1(s), 16)
/ 0xFFFFFFFFFFFFFFF, a number in [0, 1]. With the experiment's salt in place of the flag
key, a subject is included when h("<salt>.<subject>") < coverage, and gets the first variant,
in the configured order, whose cumulative weight exceeds h("<salt>.<subject>variant"), else
the last variant with a weight above 0. Inclusion and variant use different hashes, so
raising coverage only adds subjects and never moves one to another variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

HASH_VERSION = 1
LONG_SCALE = float(0xFFFFFFFFFFFFFFF)


def hash_unit(text: str) -> float:
    digest = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
    return int(digest[:15], 16) / LONG_SCALE


def is_included(*, salt: str, subject: str, coverage: float) -> bool:
    return hash_unit(f"{salt}.{subject}") < coverage


def variant_index(*, salt: str, subject: str, weights: Sequence[float]) -> int:
    """Index of the subject's variant among `weights` (which sum to 1)."""
    point = hash_unit(f"{salt}.{subject}variant")
    cumulative = 0.0
    last_positive = len(weights) - 1
    for index, weight in enumerate(weights):
        cumulative += weight
        if cumulative > point:
            return index
        if weight > 0:
            last_positive = index
    return last_positive


def attribute_text(value: object) -> str:
    """An attribute value as targeting compares it: strings as they are, JSON spelling else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def matches_targeting(
    targeting: Mapping[str, frozenset[str]], attributes: Mapping[str, object]
) -> bool:
    """True when every targeted attribute is present with one of its allowed values."""
    for attribute, allowed in targeting.items():
        if attribute not in attributes:
            return False
        value = attributes[attribute]
        if value is None or attribute_text(value) not in allowed:
            return False
    return True

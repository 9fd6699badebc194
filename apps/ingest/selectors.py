"""Reads of ingestion: stored events by id, and the per-process cache of model version ids."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.ingest.models import Feedback, Prediction
from apps.registry import selectors as registry_selectors

# (model, version) → ModelVersion id. Versions are immutable and never deleted, so an entry
# never goes stale; only pairs not seen yet reach the database (unknown pairs every time).
_version_ids: dict[tuple[str, str], int] = {}
_version_ids_lock = threading.Lock()


def model_version_ids(*, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of the registered versions among `pairs`; unregistered pairs are left out."""
    wanted = set(pairs)
    found = {pair: _version_ids[pair] for pair in wanted if pair in _version_ids}
    missing = wanted - found.keys()
    if missing:
        fetched = registry_selectors.model_version_ids(pairs=missing)
        with _version_ids_lock:
            _version_ids.update(fetched)
        found.update(fetched)
    return found


def model_version_cache_clear() -> None:
    """Forget the cached ids (tests whose database is rolled back under the process)."""
    with _version_ids_lock:
        _version_ids.clear()


def prediction_rows() -> QuerySet[Prediction]:
    return Prediction.objects.select_related("model_version__model")


def feedback_rows() -> QuerySet[Feedback]:
    return Feedback.objects.all()


def _parse_id(raw: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise NotFound(f"No {kind} with id {raw!r}: ids are UUIDs.") from error


def prediction_get(*, id: str) -> Prediction:
    row = prediction_rows().filter(id=_parse_id(id, "prediction")).first()
    if row is None:
        raise NotFound(f"No prediction with id {id}.")
    return row


def feedback_get(*, id: str) -> Feedback:
    row = feedback_rows().filter(id=_parse_id(id, "feedback")).first()
    if row is None:
        raise NotFound(f"No feedback with id {id}.")
    return row


# API.md's bounds on the numbers that projections add up, as SQL over a stored row. Rows
# stored before these bounds were enforced at the door, or written around the API, may hold
# any float (±1e308, Infinity, NaN): a projection leaves such an event out and counts it.
# NaN fails every comparison and ±Infinity lies outside the range, so both are out.
VALUE_BOUND = 1e15
LATENCY_MAX_MS = 86_400_000


def feedback_in_bounds_sql(alias: str) -> str:
    """SQL: the feedback row `alias` carries no number out of bounds."""
    return (
        f"({alias}.value IS NULL OR {alias}.value BETWEEN -{VALUE_BOUND:.0f} AND {VALUE_BOUND:.0f})"
    )


def prediction_in_bounds_sql(alias: str) -> str:
    """SQL: the prediction row `alias` carries no number out of bounds (latency, score,
    value; features and explanations are not read by any projection)."""
    bound = f"{VALUE_BOUND:.0f}"
    return (
        f"(({alias}.latency_ms IS NULL OR {alias}.latency_ms BETWEEN 0 AND {LATENCY_MAX_MS})"
        f" AND ({alias}.output_score IS NULL OR {alias}.output_score BETWEEN -{bound} AND {bound})"
        f" AND ({alias}.output_value IS NULL OR {alias}.output_value BETWEEN -{bound} AND {bound}))"
    )

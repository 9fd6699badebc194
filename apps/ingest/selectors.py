"""Reads of ingestion: stored events by id, and the per-process cache of model version ids."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.ingest.models import Feedback, Prediction
from apps.ingest.shapes import FEEDBACK, PREDICTION
from apps.registry import selectors as registry_selectors

# Relations other apps may read the ingestion log through, in SQL (projections): views this
# app owns (migration 0002), so the tables' own layout stays this app's business. Each has
# the event's (xid, seq) position and received_at, and the columns listed in the view.
PREDICTION_LOG = "ingest_prediction_log"
FEEDBACK_LOG = "ingest_feedback_log"

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


def prediction_in_bounds_sql(alias: str) -> str:
    """SQL: the prediction row `alias` holds no number out of its declared range (its
    latency, score or value; apps.ingest.shapes); NaN and ±Infinity are out."""
    return PREDICTION.in_bounds_sql(alias)


def feedback_in_bounds_sql(alias: str) -> str:
    """SQL: the feedback row `alias` holds no value out of its declared range."""
    return FEEDBACK.in_bounds_sql(alias)

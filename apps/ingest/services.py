"""Use cases of ingestion: store posted predictions and feedback exactly once.

Each takes the raw body, so that one compiled pass (validation.py) is all the parsing a
valid request costs, checks references against per-process caches, and writes through the
COPY path (staging.py) in one transaction: a batch is stored whole or not at all (a lone
event is one INSERT, atomic by itself).
Nothing is enqueued and Redis is not touched; workers find new rows by watermark.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.core.errors import (
    ApplicationError,
    Conflict,
    Detail,
    PayloadTooLarge,
    ValidationFailed,
)
from apps.core.metrics import EVENTS_DUPLICATE, EVENTS_REJECTED, EVENTS_STORED
from apps.experiments import selectors as experiment_selectors
from apps.experiments import services as experiment_services
from apps.experiments.selectors import TaggedVariant
from apps.ingest import selectors, staging
from apps.ingest.shapes import FEEDBACK as FEEDBACK_SHAPE
from apps.ingest.shapes import PREDICTION
from apps.ingest.staging import Table
from apps.ingest.validation import (
    Decoded,
    FeedbackIn,
    Kind,
    Limits,
    PredictionIn,
    content_hash,
    decode,
)

PREDICTIONS = Table(name=PREDICTION.table, columns=PREDICTION.columns)
FEEDBACK = Table(name=FEEDBACK_SHAPE.table, columns=FEEDBACK_SHAPE.columns)


Variants = Mapping[tuple[str, str], TaggedVariant]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def predictions_ingest(*, body: bytes, actor: str) -> IngestResult:
    """Store the predictions of a body (one event or {"events": [...]}) not stored yet.

    Raises ValidationFailed (every bad index), PayloadTooLarge, or Conflict (an id stored
    with other content); nothing is stored then. Validation reads only immutable or
    versioned references, so it runs before the transaction opens, keeping it short.
    """
    decoded = _decode(body, "prediction")
    events: list[PredictionIn | None] = decoded.events
    details = list(decoded.details)
    version_ids = selectors.model_version_ids(
        pairs={(event.model, event.model_version) for event in events if event is not None}
    )
    problems, variants = _experiment_problems(events)
    details += problems
    details += [
        {
            "index": index,
            "field": "model_version",
            "message": f"Model {event.model!r} has no registered version {event.model_version!r}.",
        }
        for index, event in enumerate(events)
        if event is not None and (event.model, event.model_version) not in version_ids
    ]
    _reject_if_any("prediction", details, batch=decoded.batch)
    valid: list[PredictionIn] = events  # type: ignore[assignment]  # no None left: checked above
    staging.prepare(PREDICTIONS)
    with _transaction_unless_one_statement(single=len(valid) == 1 and not variants):
        return _predictions_store(
            valid, version_ids=version_ids, variants=variants, actor=actor, batch=decoded.batch
        )


def _transaction_unless_one_statement(*, single: bool) -> AbstractContextManager[Any]:
    """A transaction, except around one event with nothing else to write.

    One event is one INSERT, atomic on its own (a conflict found afterwards leaves nothing
    to undo: the row was not inserted), so BEGIN and COMMIT would be two round trips for
    nothing; a single event's latency is what API.md's clients wait on.
    """
    return nullcontext() if single else transaction.atomic()


def _predictions_store(
    events: Sequence[PredictionIn],
    *,
    version_ids: dict[tuple[str, str], int],
    variants: Variants,
    actor: str,
    batch: bool,
) -> IngestResult:
    row = PREDICTION.row
    inserted, duplicates = _store(
        "prediction",
        PREDICTIONS,
        events,
        lambda event, digest: row(
            event, (version_ids[(event.model, event.model_version)],), actor, digest
        ),
        batch=batch,
    )
    _record_exposures(events, inserted, variants)
    return IngestResult(accepted=len(inserted), duplicates=duplicates)


def feedback_ingest(*, body: bytes, actor: str) -> IngestResult:
    """Store the feedback events of a body not stored yet; the prediction may come later."""
    decoded = _decode(body, "feedback")
    _reject_if_any("feedback", decoded.details, batch=decoded.batch)
    staging.prepare(FEEDBACK)
    with _transaction_unless_one_statement(single=len(decoded.events) == 1):
        return _feedback_store(decoded.events, actor=actor, batch=decoded.batch)


def _feedback_store(events: Sequence[FeedbackIn], *, actor: str, batch: bool) -> IngestResult:
    row = FEEDBACK_SHAPE.row
    inserted, duplicates = _store(
        "feedback",
        FEEDBACK,
        events,
        lambda event, digest: row(event, (), actor, digest),
        batch=batch,
    )
    return IngestResult(accepted=len(inserted), duplicates=duplicates)


def _decode(body: bytes, kind: Kind) -> Decoded:
    """The body's events; a body refused as a whole counts as one rejected event."""
    try:
        return decode(body, kind=kind, limits=Limits.current())
    except PayloadTooLarge:
        EVENTS_REJECTED.labels(kind, "too_large").inc()
        raise
    except ApplicationError:
        EVENTS_REJECTED.labels(kind, "malformed").inc()
        raise


def _store[E: (PredictionIn, FeedbackIn)](
    kind: Kind,
    table: Table,
    events: Sequence[E],
    row_of: Callable[[E, bytes], tuple[Any, ...]],
    *,
    batch: bool,
) -> tuple[set[int], int]:
    """Write the events; the ids inserted (as integers) and the number of duplicates.

    Raises Conflict when an id comes twice with other content, in the batch or stored.
    (Ids are keyed by `UUID.int`: hashing a UUID runs Python code, an int does not.)
    """
    first_seen: dict[int, tuple[int, bytes]] = {}
    rows: list[tuple[Any, ...]] = []
    conflicts: list[Detail] = []
    for index, event in enumerate(events):
        digest = content_hash(event)
        seen = first_seen.get(event.id.int)
        if seen is None:
            first_seen[event.id.int] = (index, digest)
            rows.append(row_of(event, digest))
        elif seen[1] != digest:
            conflicts.append(_conflict(index, event.id, f"index {seen[0]} of this batch"))
    if conflicts:
        _reject_conflicts(kind, conflicts, batch=batch)
    stored = staging.store(table, rows)
    if stored.conflicting:
        _reject_conflicts(
            kind,
            [_conflict(first_seen[id.int][0], id, "an event stored") for id in stored.conflicting],
            batch=batch,
        )
    inserted = {id.int for id in stored.inserted}
    duplicates = len(events) - len(inserted)
    transaction.on_commit(lambda: _count(kind, len(inserted), duplicates))
    return inserted, duplicates


def _count(kind: Kind, stored: int, duplicates: int) -> None:
    EVENTS_STORED.labels(kind).inc(stored)
    EVENTS_DUPLICATE.labels(kind).inc(duplicates)


def _conflict(index: int, id: uuid.UUID, other: str) -> Detail:
    return {
        "index": index,
        "field": "id",
        "message": f"Event {id} has other content than {other}; ids are never reused.",
    }


def _reject_conflicts(kind: Kind, details: list[Detail], *, batch: bool) -> None:
    EVENTS_REJECTED.labels(kind, "conflict").inc(len(details))
    details.sort(key=lambda detail: int(detail["index"]))
    raise Conflict(
        "An id is already used by an event with other content; nothing was stored."
        if batch
        else "This id is already used by an event with other content.",
        details=details if batch else [_without_index(detail) for detail in details],
    )


def _reject_if_any(kind: Kind, details: list[Detail], *, batch: bool) -> None:
    if not details:
        return
    EVENTS_REJECTED.labels(kind, "invalid").inc(len({detail.get("index") for detail in details}))
    if batch:
        details.sort(key=lambda detail: int(detail.get("index", -1)))
        raise ValidationFailed(
            "Some events are invalid (see details); nothing was stored.", details=details
        )
    raise ValidationFailed(
        "The event is invalid.", details=[_without_index(detail) for detail in details]
    )


def _without_index(detail: Detail) -> Detail:
    return {key: value for key, value in detail.items() if key != "index"}


def _experiment_problems(events: Sequence[PredictionIn | None]) -> tuple[list[Detail], Variants]:
    """Tags must name a variant of an experiment of the event's model, serving its version."""
    tagged = [
        (index, event)
        for index, event in enumerate(events)
        if event is not None and event.experiment is not None
    ]
    if not tagged:
        return [], {}
    variants = experiment_selectors.tagged_variant_index()
    problems = _tag_problems(tagged, variants)
    if problems:
        # Before refusing, make sure of the configuration: an experiment committed a moment
        # ago in another process may not have reached this one's watcher yet.
        variants = experiment_selectors.tagged_variant_index(read_number=True)
        problems = _tag_problems(tagged, variants)
    return problems, variants


def _tag_problems(tagged: Sequence[tuple[int, PredictionIn]], variants: Variants) -> list[Detail]:
    problems: list[Detail] = []
    for index, event in tagged:
        found = variants.get((event.experiment or "", event.variant or ""))
        if found is None or found.model != event.model:
            message = (
                f"No experiment {event.experiment!r} of model {event.model!r} "
                f"with a variant {event.variant!r}."
            )
            problems.append({"index": index, "field": "variant", "message": message})
        elif found.model_version != event.model_version:
            message = (
                f"Variant {event.variant!r} of {event.experiment!r} serves version "
                f"{found.model_version!r}, not {event.model_version!r}."
            )
            problems.append({"index": index, "field": "model_version", "message": message})
    return problems


def _record_exposures(
    events: Sequence[PredictionIn], inserted: set[int], variants: Variants
) -> None:
    """Each new tagged prediction exposes its subject to its variant, in batch order.

    The experiments app keeps the first exposure of a subject to a variant.
    """
    exposures = []
    recorded: set[int] = set()
    for event in events:
        if event.experiment is None or event.id.int not in inserted or event.id.int in recorded:
            continue
        recorded.add(event.id.int)
        variant = variants[(event.experiment or "", event.variant or "")]
        exposures.append(
            experiment_services.PredictionExposure(
                experiment_id=variant.experiment_id,
                subject=event.subject or "",
                variant_key=variant.variant_key,
                model_version=event.model_version,
                attributes=dict(event.attributes or {}),
                occurred_at=event.occurred_at,
                prediction_id=event.id,
            )
        )
    if exposures:
        experiment_services.exposures_record_from_predictions(exposures=exposures)

"""Exposures recorded from tagged predictions (ingestion's entry point) and the config number."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from apps.experiments import watcher
from apps.experiments.models import ExposureSource


@dataclass(frozen=True)
class PredictionExposure:
    """A prediction tagged with (experiment, variant): the subject met that variant."""

    experiment_id: int
    subject: str
    variant_key: str
    model_version: str
    attributes: dict[str, Any]
    occurred_at: datetime
    prediction_id: uuid.UUID


# Rows take their sequence numbers in arrival order (volatile functions of a select list are
# evaluated after its ORDER BY), then go in in the order of their unique key: two batches
# that share subjects wait for each other's keys in one order and cannot deadlock, while the
# first exposure by arrival still has the lowest seq.
_INSERT_FROM_PREDICTIONS = """
WITH arrived AS MATERIALIZED (
    SELECT t.*, nextval('kaizen_event_seq') AS seq
    FROM unnest(%s::timestamptz[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::uuid[])
         WITH ORDINALITY AS t(occurred_at, experiment_id, subject, variant, model_version,
                              attributes, prediction_id, position)
    ORDER BY t.position
)
INSERT INTO experiments_exposure
    (id, seq, occurred_at, experiment_id, subject, variant, model_version, attributes, source,
     hash_version, prediction_id)
SELECT gen_random_uuid(), a.seq, a.occurred_at, a.experiment_id, a.subject, a.variant,
       a.model_version, a.attributes::jsonb, %s, NULL, a.prediction_id
FROM arrived a
ORDER BY a.experiment_id, a.subject, a.variant
ON CONFLICT (experiment_id, subject, variant) DO NOTHING
"""


def config_changed() -> None:
    """Give the configuration a new number in the caller's transaction: every process reloads.

    The number comes from a sequence, so it is never reused even when a transaction that
    took one rolls back (see migration 0002). An upsert, so a flushed table heals itself.
    Its commit notifies every process's watcher; this process reads the row until its own
    notification is back (watcher.distrust).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO experiments_configversion (id, version)"
            " VALUES (1, nextval('experiments_config_seq'))"
            " ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version"
            " RETURNING version"
        )
        row = cursor.fetchone()
    watcher.distrust(int(row[0]) if row else 0)


def exposures_record_from_predictions(*, exposures: Sequence[PredictionExposure]) -> int:
    """Store the exposures these predictions are, in one statement; the number newly stored.

    Runs inside the caller's transaction (ingestion's), so the exposures commit with the
    predictions. A (experiment, subject, variant) already stored is skipped; a subject's
    exposure to another variant is kept as a second row. Rows take the log's sequence in
    the order given, so the first in `exposures` is the first by arrival; they are written
    in key order, so concurrent batches never deadlock.
    """
    if not exposures:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_FROM_PREDICTIONS,
            [
                [item.occurred_at for item in exposures],
                [item.experiment_id for item in exposures],
                [item.subject for item in exposures],
                [item.variant_key for item in exposures],
                [item.model_version for item in exposures],
                [orjson.dumps(item.attributes).decode() for item in exposures],
                [item.prediction_id for item in exposures],
                ExposureSource.PREDICTION.value,
            ],
        )
        return max(int(cursor.rowcount), 0)

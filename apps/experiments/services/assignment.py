"""Assignment: which variant (and so which model version) a subject gets, API.md hash v1.

The hot path costs one statement and no ORM instance: the experiment comes from the
per-process configuration snapshot, the hashes are computed in Python, and one SQL statement
reads the subject's first exposure, inserts the new exposure when there is none, and returns
the configuration number, so a snapshot made stale by a change committed elsewhere is caught
in the same round trip (the insert is guarded by the number) and the request is redone with
the fresh configuration. Runs in autocommit: the statement is its own transaction, so a new
exposure costs one durable commit and a repeat subject none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection

from apps.core.errors import NotFound, Unavailable
from apps.experiments import selectors
from apps.experiments.bucketing import HASH_VERSION, is_included, matches_targeting, variant_index
from apps.experiments.models import ExposureSource, Status
from apps.experiments.selectors import ExperimentConfig
from apps.registry import selectors as registry_selectors

PRODUCTION_ALIAS = "production"
# A configuration that changes under three requests in a row is being edited in a loop.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Assignment:
    experiment: str
    subject: str
    variant: str | None
    model_version: str | None
    in_experiment: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "subject": self.subject,
            "variant": self.variant,
            "model_version": self.model_version,
            "in_experiment": self.in_experiment,
        }


# One round trip: the first exposure (lowest seq) wins; else insert the hashed variant when
# the subject is included and the caller's configuration number is still current.
_ASSIGN = """
WITH config AS (
    SELECT COALESCE((SELECT version FROM experiments_configversion WHERE id = 1), 0) AS number
), first AS (
    SELECT variant, model_version FROM experiments_exposure
    WHERE experiment_id = %(experiment)s AND subject = %(subject)s
    ORDER BY seq LIMIT 1
), inserted AS (
    INSERT INTO experiments_exposure
        (id, occurred_at, experiment_id, subject, variant, model_version, attributes, source,
         hash_version)
    SELECT gen_random_uuid(), now(), %(experiment)s, %(subject)s, %(variant)s,
           %(model_version)s, %(attributes)s::jsonb, %(source)s, %(hash_version)s
    WHERE %(included)s
      AND NOT EXISTS (SELECT 1 FROM first)
      AND (SELECT number FROM config) = %(number)s
    ON CONFLICT (experiment_id, subject, variant) DO NOTHING
    RETURNING variant, model_version
)
SELECT (SELECT number FROM config),
       (SELECT variant FROM first), (SELECT model_version FROM first),
       (SELECT variant FROM inserted), (SELECT model_version FROM inserted)
"""


def assignment_create(
    *, experiment: str, subject: str, attributes: Mapping[str, Any]
) -> Assignment:
    """The subject's variant; the first in-experiment assignment records the exposure.

    Running and the subject already exposed → that first exposure, whatever the hash says.
    Running, inside targeting and coverage → the hashed variant, recorded. Otherwise, or
    draft/paused → the control, not in the experiment. Stopped → the production version.
    """
    snapshot = selectors.config_snapshot_cached()
    config = snapshot.experiments.get(experiment)
    for _ in range(MAX_ATTEMPTS):
        if config is None or config.status != Status.RUNNING:
            # Only the number is read: the answer comes from a snapshot known to be current.
            snapshot = selectors.config_snapshot()
            config = snapshot.experiments.get(experiment)
            if config is None:
                raise NotFound(f"No experiment with key {experiment!r}.")
            if config.status != Status.RUNNING:
                return _outside(config, subject)
        answer = _assign_running(config, snapshot.version, subject, attributes)
        if answer is not None:
            return answer
        snapshot = selectors.config_snapshot()
        config = snapshot.experiments.get(experiment)
    raise Unavailable("The experiment's configuration is changing; retry in a moment.")


def _outside(config: ExperimentConfig, subject: str) -> Assignment:
    if config.status == Status.STOPPED:
        try:
            production: str | None = registry_selectors.alias_get(
                model=config.model, alias=PRODUCTION_ALIAS
            ).version.version
        except NotFound:
            production = None
        return Assignment(config.key, subject, None, production, False)
    return Assignment(config.key, subject, config.control, config.control_version, False)


def _assign_running(
    config: ExperimentConfig, number: int, subject: str, attributes: Mapping[str, Any]
) -> Assignment | None:
    """The answer, or None when the snapshot turned out stale (nothing was written then)."""
    included = matches_targeting(config.targeting, attributes) and is_included(
        salt=config.salt, subject=subject, coverage=config.coverage
    )
    variant = config.variants[
        variant_index(
            salt=config.salt, subject=subject, weights=[v.weight for v in config.variants]
        )
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _ASSIGN,
            {
                "experiment": config.id,
                "subject": subject,
                "variant": variant.key,
                "model_version": variant.model_version,
                "attributes": orjson.dumps(attributes).decode(),
                "included": included,
                "number": number,
                "source": ExposureSource.ASSIGNMENT.value,
                "hash_version": HASH_VERSION,
            },
        )
        row = cursor.fetchone()
    assert row is not None  # noqa: S101 - a SELECT of scalar subqueries returns one row
    current, first_variant, first_version, new_variant, new_version = row
    if current != number:
        return None
    if first_variant is not None:
        return Assignment(config.key, subject, first_variant, first_version, True)
    if new_variant is not None:
        return Assignment(config.key, subject, new_variant, new_version, True)
    if included:
        # A concurrent request stored this very exposure first (the unique constraint).
        return Assignment(config.key, subject, variant.key, variant.model_version, True)
    return Assignment(config.key, subject, config.control, config.control_version, False)

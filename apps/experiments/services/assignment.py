"""Assignment: which variant (and so which model version) a subject gets, API.md hash v1.

The hot path costs at most one database call and no ORM instance: the experiment comes from
the per-process configuration snapshot and the hashes are computed in Python.

- A subject this process already met in a running experiment, while the watcher vouches
  for the snapshot (watcher.py): answered from memory, no database call. Its first exposure
  never changes, so memory is as good as the table.
- Else one call of the experiments_assign() function reads the subject's first exposure,
  inserts the new exposure when there is none, and returns the configuration number, so a
  snapshot made stale by a change committed elsewhere is caught in the same round trip (the
  insert is guarded by the number) and the request is redone with the configuration read
  afresh. Runs in autocommit: the call is its own transaction, so a new exposure costs one
  durable commit and a stored one none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from apps.core.db import fetchone_prepared
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


# One round trip to experiments_assign() (migration 0005), prepared once per connection
# (apps/core/db.py), whose inner plans PostgreSQL keeps for the connection's life too: the
# subject's first exposure wins; else the hashed variant is recorded when the subject is
# included and the caller's configuration number is current.
_ASSIGN = (
    "SELECT number, variant, model_version FROM experiments_assign("
    "%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s::smallint)"
)


def assignment_create(
    *, experiment: str, subject: str, attributes: Mapping[str, Any]
) -> Assignment:
    """The subject's variant; the first in-experiment assignment records the exposure.

    Running and the subject already exposed → that first exposure, whatever the hash says.
    Running, inside targeting and coverage → the hashed variant, recorded. Otherwise, or
    draft/paused → the control, not in the experiment. Stopped → the production version.
    """
    watched = selectors.config_snapshot_watched()
    if watched is not None:
        # The watcher vouches for the snapshot: no query unless the subject is new here.
        # An unknown key is checked against the row below before the 404: the experiment may
        # have been created a moment ago, its notification not yet here.
        config = watched.experiments.get(experiment)
        if config is not None:
            if config.status != Status.RUNNING:
                return _outside(config, subject)
            known = selectors.exposure_cached(experiment_id=config.id, subject=subject)
            if known is not None:
                return Assignment(config.key, subject, known[0], known[1], True)
        snapshot = watched
    else:
        # experiments_assign() checks the snapshot's number in the same round trip.
        snapshot = selectors.config_snapshot_cached()
    config = snapshot.experiments.get(experiment)
    for _ in range(MAX_ATTEMPTS):
        if config is None or config.status != Status.RUNNING:
            # The answer must come from a snapshot known to be current: read the number.
            snapshot = selectors.config_snapshot(read_number=True)
            config = snapshot.experiments.get(experiment)
            if config is None:
                raise NotFound(f"No experiment with key {experiment!r}.")
            if config.status != Status.RUNNING:
                return _outside(config, subject)
        answer = _assign_running(config, snapshot.version, subject, attributes)
        if answer is not None:
            return answer
        snapshot = selectors.config_snapshot(read_number=True)
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
        variant_index(salt=config.salt, subject=subject, weights=config.weights)
    ]
    parameters = [
        config.id,
        subject,
        number,
        included,
        variant.key,
        variant.model_version,
        orjson.dumps(attributes).decode(),
        ExposureSource.ASSIGNMENT.value,
        HASH_VERSION,
    ]
    row = fetchone_prepared(_ASSIGN, parameters)
    assert row is not None  # noqa: S101 - the function returns one row
    current, answer_variant, answer_version = row
    if current != number:
        return None
    if answer_variant is None:
        return Assignment(config.key, subject, config.control, config.control_version, False)
    selectors.exposure_remember(
        experiment_id=config.id, subject=subject, variant=answer_variant, version=answer_version
    )
    return Assignment(config.key, subject, answer_variant, answer_version, True)

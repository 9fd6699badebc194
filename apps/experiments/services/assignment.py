"""Assignment: which variant (and so which model version) a subject gets, API.md hash v1.

No ORM instance on the way: the experiment comes from the per-process configuration snapshot,
the hashes are computed in Python, and a new subject or one met before costs at most one
database call (a subject exposed earlier and first met by this process costs two).

- A subject this process already met in a running experiment, while the watcher vouches
  for the snapshot (watcher.py): answered from memory, no database call. Its first exposure
  never changes, so memory is as good as the table.
- A subject included by the hashes: one INSERT of the hashed variant, guarded by the
  snapshot's configuration number and by the subject having no exposure in the experiment.
  A row back means the subject is new and this is its first exposure: the common case, one
  statement and one durable commit.
- Otherwise (nothing inserted: a stored exposure, a concurrent first request, a stale
  snapshot; or a subject the hashes leave out, whose tagged prediction may have exposed it)
  one call of the experiments_assign() function reads the configuration number and the
  subject's first exposure, and inserts the hashed variant when there is none and the number
  is current. A snapshot made stale by a change committed elsewhere is caught there and the
  request is redone with the configuration read afresh.

Runs in autocommit: each statement is its own transaction.
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


# A new subject's exposure in one statement, prepared once per connection (apps/core/db.py):
# inserted only while the caller's configuration number is current and the subject has no
# exposure in the experiment, so a row back is the subject's first exposure. No row: the
# experiments_assign() call below tells why. Measured with pgbench (2 clients, new subjects,
# both prepared), this statement costs about 40 µs less than the function: PL/pgSQL's call,
# its separate lookup and its RETURN NEXT result set.
_FIRST_EXPOSURE = (
    "INSERT INTO experiments_exposure"  # noqa: S608 - constants; values are parameters
    " (id, occurred_at, experiment_id, subject, variant, model_version, attributes, source,"
    " hash_version)"
    " SELECT gen_random_uuid(), now(), %(experiment)s::bigint, %(subject)s::text,"
    " %(variant)s::text, %(model_version)s::text, %(attributes)s::jsonb,"
    f" '{ExposureSource.ASSIGNMENT.value}', {HASH_VERSION}"
    " WHERE (SELECT c.version FROM experiments_configversion c WHERE c.id = 1)"
    " = %(number)s::bigint"
    " AND NOT EXISTS (SELECT FROM experiments_exposure e"
    " WHERE e.experiment_id = %(experiment)s::bigint AND e.subject = %(subject)s::text)"
    " ON CONFLICT (experiment_id, subject, variant) DO NOTHING"
    " RETURNING 1"
)

# One round trip to experiments_assign() (migration 0005), also prepared once per connection,
# whose inner plans PostgreSQL keeps for the connection's life as well: the subject's first
# exposure wins; else the hashed variant is recorded when the subject is included and the
# caller's configuration number is current.
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
    encoded = orjson.dumps(attributes).decode()
    if included:
        first = {
            "experiment": config.id,
            "subject": subject,
            "variant": variant.key,
            "model_version": variant.model_version,
            "attributes": encoded,
            "number": number,
        }
        if fetchone_prepared(_FIRST_EXPOSURE, first) is not None:
            return _exposed(config, subject, variant.key, variant.model_version)
    parameters = [
        config.id,
        subject,
        number,
        included,
        variant.key,
        variant.model_version,
        encoded,
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
    return _exposed(config, subject, answer_variant, answer_version)


def _exposed(config: ExperimentConfig, subject: str, variant: str, version: str) -> Assignment:
    """The subject's first exposure, remembered by this process (it never changes)."""
    selectors.exposure_remember(
        experiment_id=config.id, subject=subject, variant=variant, version=version
    )
    return Assignment(config.key, subject, variant, version, True)

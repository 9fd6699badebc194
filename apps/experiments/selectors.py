"""Reads of experiments: the per-process configuration cache, lists, history and exposures.

Assignment and ingestion read the experiment configuration on every request, so each process
keeps it in memory with the ConfigVersion number it was read at. Every change to an
experiment raises that number in its own transaction. A request compares the cached number
with the one the process's watcher was last notified of (watcher.py: no query), or, when
the watcher cannot be trusted, with the row (one primary-key read), and reloads when they
differ.

Assignment also keeps the subjects' first exposures it has met (they never change), so a
subject already exposed is answered from memory while the watcher vouches for the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from django.db import connection
from django.db.models import Prefetch, QuerySet

from apps.core.errors import NotFound
from apps.experiments import watcher
from apps.experiments.models import (
    Experiment,
    ExperimentMetric,
    Exposure,
    RampStep,
    RolloutEvent,
    TargetingRule,
    Variant,
)

# Relations other apps may read exposures and experiment facts through, in SQL
# (projections): views this app owns (migration 0008). The exposure log has each row's
# (xid, seq) position and received_at; the facts are current rows.
EXPOSURE_LOG = "experiments_exposure_log"
EXPERIMENT_FACTS = "experiments_experiment_facts"  # id, key, breakdown_attributes
METRIC_FACTS = "experiments_metric_facts"  # experiment_id, key, type


@dataclass(frozen=True)
class TaggedVariant:
    """What ingestion needs to check a prediction tagged with (experiment, variant)."""

    experiment_id: int
    experiment_key: str
    variant_key: str
    model: str
    model_version: str


@dataclass(frozen=True)
class VariantConfig:
    key: str
    model_version: str
    weight: float


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment as assignment sees it: plain values, no ORM instance per request."""

    id: int
    key: str
    model: str
    status: str
    control: str
    control_version: str
    coverage: float
    salt: str
    variants: tuple[VariantConfig, ...]
    weights: tuple[float, ...]
    # attribute -> the allowed values, as normalised strings (see services.attribute_text).
    targeting: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigSnapshot:
    version: int
    experiments: Mapping[str, ExperimentConfig]
    tagged: Mapping[tuple[str, str], TaggedVariant]


_EMPTY = ConfigSnapshot(version=-1, experiments=MappingProxyType({}), tagged=MappingProxyType({}))
_snapshot: ConfigSnapshot = _EMPTY


def config_version() -> int:
    """The current configuration number (0 when the row is missing, e.g. after a flush)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM experiments_configversion WHERE id = 1")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def config_snapshot(*, read_number: bool = False) -> ConfigSnapshot:
    """The experiment configuration, reloaded only when its number changed since last time.

    The number is the watcher's when it is trusted, else (or with `read_number`) the row's.
    """
    global _snapshot
    known = None if read_number else watcher.trusted_version()
    cached = _snapshot
    if known is not None and known == cached.version:
        return cached
    version = config_version() if known is None else known
    if cached.version == version:
        return cached
    # The number is read before the rows, so rows are never older than the number they carry.
    fresh = _load_snapshot(version)
    _snapshot = fresh
    return fresh


def config_snapshot_cached() -> ConfigSnapshot:
    """The snapshot last loaded by this process, whatever its number (callers check it)."""
    return _snapshot


def config_snapshot_watched() -> ConfigSnapshot | None:
    """The snapshot of the number the watcher was last notified of (no query unless that
    number is new here), or None when the watcher cannot be trusted."""
    if watcher.trusted_version() is None:
        return None
    return config_snapshot()


def config_cache_clear() -> None:
    global _snapshot
    _snapshot = _EMPTY
    _exposures.clear()
    _exposures_old.clear()


# (experiment id, subject) -> (variant, model version) of the subject's first exposure, in
# two generations: when the young one is full it becomes the old one and the oldest entries
# go. Bounded at EXPOSURE_CACHE_MAX_ENTRIES, O(1) per call (evicting from the front of one
# dict instead leaves it scanning ever more deleted slots).
EXPOSURE_CACHE_MAX_ENTRIES = 200_000
_exposures: dict[tuple[int, str], tuple[str, str]] = {}
_exposures_old: dict[tuple[int, str], tuple[str, str]] = {}


def exposure_cached(*, experiment_id: int, subject: str) -> tuple[str, str] | None:
    """The subject's first exposure as this process has already met it, else None."""
    key = (experiment_id, subject)
    found = _exposures.get(key)
    if found is None:
        found = _exposures_old.get(key)
    return found


def exposure_remember(*, experiment_id: int, subject: str, variant: str, version: str) -> None:
    global _exposures, _exposures_old
    if len(_exposures) >= EXPOSURE_CACHE_MAX_ENTRIES // 2:
        _exposures_old, _exposures = _exposures, {}
    _exposures[(experiment_id, subject)] = (variant, version)


def _load_snapshot(version: int) -> ConfigSnapshot:
    variant_rows = Variant.objects.order_by("experiment_id", "position", "id").values_list(
        "experiment_id", "key", "model_version__version", "weight"
    )
    variants: dict[int, list[VariantConfig]] = {}
    for experiment_id, key, model_version, weight in variant_rows:
        variants.setdefault(experiment_id, []).append(VariantConfig(key, model_version, weight))
    targeting: dict[int, dict[str, frozenset[str]]] = {}
    for experiment_id, attribute, values in TargetingRule.objects.values_list(
        "experiment_id", "attribute", "values"
    ):
        targeting.setdefault(experiment_id, {})[attribute] = frozenset(values)
    experiments: dict[str, ExperimentConfig] = {}
    tagged: dict[tuple[str, str], TaggedVariant] = {}
    rows = Experiment.objects.values_list(
        "id", "key", "model__name", "status", "control", "coverage", "salt"
    )
    for experiment_id, key, model, status, control, coverage, salt in rows:
        own = tuple(variants.get(experiment_id, ()))
        control_version = next((v.model_version for v in own if v.key == control), "")
        experiments[key] = ExperimentConfig(
            id=experiment_id,
            key=key,
            model=model,
            status=status,
            control=control,
            control_version=control_version,
            coverage=coverage,
            salt=salt,
            variants=own,
            weights=tuple(variant.weight for variant in own),
            targeting=MappingProxyType(targeting.get(experiment_id, {})),
        )
        for variant in own:
            tagged[(key, variant.key)] = TaggedVariant(
                experiment_id=experiment_id,
                experiment_key=key,
                variant_key=variant.key,
                model=model,
                model_version=variant.model_version,
            )
    return ConfigSnapshot(
        version=version,
        experiments=MappingProxyType(experiments),
        tagged=MappingProxyType(tagged),
    )


def tagged_variant_index(*, read_number: bool = False) -> Mapping[tuple[str, str], TaggedVariant]:
    """(experiment key, variant key) → the variant, for every experiment whatever its status.

    Cached per process; a change committed anywhere is seen once the watcher is notified, or
    on the next call with `read_number` (see module doc).
    """
    return config_snapshot(read_number=read_number).tagged


def experiment_list() -> QuerySet[Experiment]:
    return Experiment.objects.select_related("model").prefetch_related(
        Prefetch("variants", queryset=Variant.objects.select_related("model_version")),
        "targeting",
        Prefetch("metrics", queryset=ExperimentMetric.objects.all()),
        Prefetch("ramp", queryset=RampStep.objects.all()),
    )


def experiment_get(*, key: str) -> Experiment:
    experiment = experiment_list().filter(key=key).first()
    if experiment is None:
        raise NotFound(f"No experiment with key {key!r}.")
    return experiment


def experiment_history(*, experiment_id: int) -> QuerySet[RolloutEvent]:
    """The experiment's changes, oldest first."""
    return RolloutEvent.objects.filter(experiment_id=experiment_id).order_by("seq")


def rollout_event_list() -> QuerySet[RolloutEvent]:
    return RolloutEvent.objects.select_related("experiment")


def exposure_first(*, experiment_id: int, subject: str) -> Exposure | None:
    """The subject's first exposure by arrival (lowest seq), the one assignment returns."""
    return (
        Exposure.objects.filter(experiment_id=experiment_id, subject=subject)
        .order_by("seq")
        .first()
    )

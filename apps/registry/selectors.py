"""Reads of the model registry (other apps reach the registry only through here and services)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Prefetch, Q, QuerySet, Window
from django.db.models.fields.json import KT
from django.db.models.functions import RowNumber

from apps.core.errors import NotFound
from apps.registry.models import Alias, MLModel, ModelVersion, RegistryEvent, RegistryEventType
from apps.registry.validation import is_name

# Relations other apps may read model facts through, in SQL (projections): views this app
# owns (migration 0002). Version facts: a version's id with its model's id, task,
# positive_label, decision_threshold and segment_attributes. The model change log: the
# `model_updated` events (model_id) with their (xid, seq) position and received_at.
VERSION_FACTS = "registry_version_facts"
MODEL_CHANGE_LOG = "registry_model_change_log"

# The moves of each alias that a model's page shows (newest first); older ones stay in the log.
ALIAS_HISTORY_LIMIT = 100


def model_get(*, name: str) -> MLModel:
    model = MLModel.objects.filter(name=name).first() if is_name(name) else None
    if model is None:
        raise NotFound(f"No model named {name!r}.")
    return model


def _aliases_with_versions() -> Prefetch[Any]:
    return Prefetch(
        "aliases",
        queryset=Alias.objects.select_related("version", "previous_version").order_by("name"),
    )


def model_name(*, model_id: int) -> str:
    """The name of the model with this id ('#id' when there is none)."""
    name = MLModel.objects.filter(pk=model_id).values_list("name", flat=True).first()
    return name if name is not None else f"#{model_id}"


def model_list() -> QuerySet[MLModel]:
    """Every model with its aliases (and the versions they point to) prefetched."""
    return MLModel.objects.prefetch_related(_aliases_with_versions())


def model_detail_get(*, name: str) -> MLModel:
    """One model with its aliases prefetched; NotFound when there is none."""
    model = model_list().filter(name=name).first() if is_name(name) else None
    if model is None:
        raise NotFound(f"No model named {name!r}.")
    return model


def model_version_get(*, model: str, version: str) -> ModelVersion:
    found = (
        ModelVersion.objects.select_related("model")
        .prefetch_related("aliases")
        .filter(model__name=model, version=version)
    )
    row = found.first() if is_name(model) and is_name(version) else None
    if row is None:
        raise NotFound(f"Model {model!r} has no version {version!r}.")
    return row


def model_version_list(*, model: str, with_aliases: bool = False) -> QuerySet[ModelVersion]:
    """The versions of a model (unordered: callers order), optionally with their aliases."""
    rows = ModelVersion.objects.select_related("model").filter(model__name=model)
    return rows.prefetch_related("aliases") if with_aliases else rows


def model_version_ids(*, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of the registered versions among (model name, version) pairs; absent pairs are left out.

    Versions are immutable and never deleted, so callers may cache the answer for good.
    """
    wanted = {(model, version) for model, version in pairs if is_name(model) and is_name(version)}
    if not wanted:
        return {}
    condition = Q()
    for model, version in wanted:
        condition |= Q(model__name=model, version=version)
    rows = ModelVersion.objects.filter(condition).values_list("model__name", "version", "id")
    return {(model, version): pk for model, version, pk in rows}


def alias_get(*, model: str, alias: str) -> Alias:
    """The alias `alias` of `model` and the version it points to; NotFound when unset."""
    rows = Alias.objects.select_related("model", "version", "previous_version")
    found = is_name(model) and is_name(alias)
    row = rows.filter(model__name=model, name=alias).first() if found else None
    if row is None:
        raise NotFound(f"Model {model!r} has no alias {alias!r}.")
    return row


def alias_list(*, model: str) -> QuerySet[Alias]:
    return (
        Alias.objects.select_related("model", "version", "previous_version")
        .filter(model__name=model)
        .order_by("name")
    )


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, as recorded by its alias_moved event."""

    version: str
    previous_version: str | None
    actor: str
    at: datetime
    rollback: bool


def alias_history(
    *, model: MLModel, aliases: Iterable[str] | None = None, limit: int = ALIAS_HISTORY_LIMIT
) -> dict[str, list[AliasMove]]:
    """The latest `limit` moves of each alias of `model`, newest first, in one query."""
    alias_name = KT("state__alias")
    rows = RegistryEvent.objects.filter(model=model, type=RegistryEventType.ALIAS_MOVED)
    if aliases is not None:
        rows = rows.filter(state__alias__in=list(aliases))
    ranked = (
        rows.annotate(
            alias_name=alias_name,
            position=Window(RowNumber(), partition_by=[alias_name], order_by=F("seq").desc()),
        )
        .filter(position__lte=limit)
        .order_by("alias_name", "-seq")
        .values_list("alias_name", "state", "actor", "occurred_at")
    )
    history: dict[str, list[AliasMove]] = defaultdict(list)
    for name, state, actor, occurred_at in ranked:
        history[name].append(
            AliasMove(
                version=state["version"],
                previous_version=state.get("previous_version"),
                actor=actor,
                at=occurred_at,
                rollback=bool(state.get("rollback", False)),
            )
        )
    return dict(history)


def registry_event_rows() -> QuerySet[RegistryEvent]:
    return RegistryEvent.objects.select_related("model")


def registry_event_serialize(event: RegistryEvent) -> dict[str, Any]:
    """A RegistryEvent as the event feed shows it."""
    return {
        "id": str(event.id),
        "type": event.type,
        "model": event.model.name,
        "actor": event.actor,
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "state": event.state,
    }

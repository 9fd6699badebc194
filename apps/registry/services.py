"""Use cases of the model registry: each change and its RegistryEvent commit together.

Every function is keyword-only, runs in one transaction, validates (raising ValidationFailed
with dotted fields), writes, and appends a RegistryEvent carrying the actor and the full state
after the change. Idempotent registration goes through the unique constraints (insert in a
savepoint, on conflict compare with the stored row), never check-then-insert.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, ValidationFailed
from apps.registry.models import (
    Alias,
    MLModel,
    ModelVersion,
    RegistryEvent,
    RegistryEventType,
)
from apps.registry.validation import (
    ModelFields,
    Problems,
    check_name,
    clean_model_fields,
    clean_version_content,
    content_hash,
    is_name,
)

logger = logging.getLogger(__name__)


# --- state snapshots recorded on events -----------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def model_state(model: MLModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "task": model.task,
        "description": model.description,
        "positive_label": model.positive_label,
        "decision_threshold": model.decision_threshold,
        "segment_attributes": list(model.segment_attributes),
        "created_at": _time(model.created_at),
        "updated_at": _time(model.updated_at),
    }


def model_version_state(version: ModelVersion) -> dict[str, Any]:
    return {
        "model": version.model.name,
        "version": version.version,
        "hyperparameters": version.hyperparameters,
        "metrics": version.metrics,
        "features": version.features,
        "dataset_versions": version.dataset_versions,
        "artifact_uri": version.artifact_uri,
        "artifact_sha256": version.artifact_sha256,
        "code_version": version.code_version,
        "tags": version.tags,
        "content_hash": version.content_hash,
        "created_by": version.created_by,
        "created_at": _time(version.created_at),
    }


def alias_state(alias: Alias, *, rollback: bool = False) -> dict[str, Any]:
    previous = alias.previous_version
    return {
        "model": alias.model.name,
        "alias": alias.name,
        "version": alias.version.version,
        "previous_version": previous.version if previous is not None else None,
        "rollback": rollback,
        "updated_at": _time(alias.updated_at),
        "updated_by": alias.updated_by,
    }


def _record(
    *,
    model: MLModel,
    kind: RegistryEventType,
    actor: str,
    state: dict[str, Any],
    at: datetime,
) -> RegistryEvent:
    return RegistryEvent.objects.create(
        model=model, type=kind, actor=actor, state=state, occurred_at=at
    )


def _model_row(name: str, *, lock: bool = False) -> MLModel:
    """The model named `name` (locked FOR UPDATE when asked); NotFound if there is none."""
    rows = MLModel.objects.select_for_update() if lock else MLModel.objects.all()
    model = rows.filter(name=name).first() if is_name(name) else None
    if model is None:
        raise NotFound(f"No model named {name!r}.")
    return model


# --- models ---------------------------------------------------------------------------------


@transaction.atomic
def model_create(
    *,
    name: str,
    task: str,
    description: str | None = None,
    positive_label: str | None = None,
    decision_threshold: float | None = None,
    segment_attributes: Sequence[str] | None = None,
    actor: str,
) -> tuple[MLModel, bool]:
    """Register a model; (model, created). The same fields again → (stored model, False).

    A different definition under an existing name is a Conflict (nothing changes).
    """
    problems = Problems()
    check_name(problems, name, "name")
    fields = clean_model_fields(
        task=task,
        description=description,
        positive_label=positive_label,
        decision_threshold=decision_threshold,
        segment_attributes=segment_attributes,
        problems=problems,
    )
    problems.raise_if_any("The model is invalid.")
    now = timezone.now()
    try:
        with transaction.atomic():
            model = MLModel.objects.create(
                name=name, created_at=now, updated_at=now, **fields.as_dict()
            )
    except IntegrityError:
        existing = MLModel.objects.filter(name=name).first()
        if existing is None:
            raise
        differing = _differing_fields(_model_fields(existing).as_dict(), fields.as_dict())
        if differing:
            raise Conflict(
                f"A model named {name!r} is already registered with other fields.",
                details=[
                    {"field": key, "message": "Differs from the registered model."}
                    for key in differing
                ],
            ) from None
        return existing, False
    _record(
        model=model,
        kind=RegistryEventType.MODEL_REGISTERED,
        actor=actor,
        state=model_state(model),
        at=now,
    )
    logger.info("model.registered", extra={"model": name, "actor": actor})
    return model, True


def _model_fields(model: MLModel) -> ModelFields:
    return ModelFields(
        task=model.task,
        description=model.description,
        positive_label=model.positive_label,
        decision_threshold=model.decision_threshold,
        segment_attributes=list(model.segment_attributes),
    )


def _differing_fields(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    return [key for key in stored if stored[key] != given.get(key)]


@transaction.atomic
def model_update(
    *,
    name: str,
    actor: str,
    description: str | None = None,
    positive_label: str | None = None,
    decision_threshold: float | None = None,
    segment_attributes: Sequence[str] | None = None,
    task: str | None = None,
) -> MLModel:
    """Change a model's editable fields (None = unchanged); the task never changes.

    `task` is accepted only when it equals the stored task (a client sending back what it
    read). A change that changes nothing records no event.
    """
    model = _model_row(name, lock=True)
    problems = Problems()
    if task is not None and task != model.task:
        problems.add("task", "The task of a registered model cannot change.")
    current = _model_fields(model)
    fields = clean_model_fields(
        task=model.task,
        description=current.description if description is None else description,
        positive_label=current.positive_label if positive_label is None else positive_label,
        decision_threshold=(
            current.decision_threshold if decision_threshold is None else decision_threshold
        ),
        segment_attributes=(
            current.segment_attributes if segment_attributes is None else segment_attributes
        ),
        problems=problems,
    )
    problems.raise_if_any("The change is invalid.")
    changed = _differing_fields(current.as_dict(), fields.as_dict())
    if not changed:
        return model
    now = timezone.now()
    for key in changed:
        setattr(model, key, getattr(fields, key))
    model.updated_at = now
    model.save(update_fields=[*changed, "updated_at"])
    _record(
        model=model,
        kind=RegistryEventType.MODEL_UPDATED,
        actor=actor,
        state=model_state(model),
        at=now,
    )
    logger.info("model.updated", extra={"model": name, "fields": changed, "actor": actor})
    return model


# --- versions -------------------------------------------------------------------------------


@transaction.atomic
def model_version_register(
    *,
    model: str,
    version: str,
    actor: str,
    hyperparameters: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    features: Sequence[Mapping[str, Any]] | None = None,
    dataset_versions: Sequence[Mapping[str, str]] | None = None,
    artifact_uri: str | None = None,
    artifact_sha256: str | None = None,
    code_version: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> tuple[ModelVersion, bool]:
    """Register an immutable version; (version, created).

    The identical content again → (stored version, False); other content under the same
    version → Conflict. Two concurrent registrations meet at the unique constraint: one
    inserts, the other waits for it, then compares.
    """
    owner = _model_row(model)
    problems = Problems()
    check_name(problems, version, "version")
    content = clean_version_content(
        hyperparameters=hyperparameters,
        metrics=metrics,
        features=features,
        dataset_versions=dataset_versions,
        artifact_uri=artifact_uri,
        artifact_sha256=artifact_sha256,
        code_version=code_version,
        tags=tags,
        problems=problems,
    )
    problems.raise_if_any("The model version is invalid.")
    digest = content.content_hash()
    now = timezone.now()
    try:
        with transaction.atomic():
            row = ModelVersion.objects.create(
                model=owner,
                version=version,
                content_hash=digest,
                created_by=actor,
                created_at=now,
                **content.as_dict(),
            )
    except IntegrityError:
        existing = ModelVersion.objects.filter(model=owner, version=version).first()
        if existing is None:
            raise
        if existing.content_hash != digest:
            raise Conflict(
                f"Version {version!r} of model {model!r} is registered with other content; "
                "a registered version never changes, register a new version instead.",
                details=_version_differences(existing, content.as_dict()),
            ) from None
        existing.model = owner
        return existing, False
    _record(
        model=owner,
        kind=RegistryEventType.VERSION_REGISTERED,
        actor=actor,
        state=model_version_state(row),
        at=now,
    )
    logger.info("model_version.registered", extra={"model": model, "version": version})
    return row, True


def _version_differences(existing: ModelVersion, given: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {"field": key, "message": "Differs from the registered version."}
        for key, value in given.items()
        if content_hash({key: getattr(existing, key)}) != content_hash({key: value})
    ]


# --- aliases --------------------------------------------------------------------------------


def _locked_alias(
    *, model: MLModel, alias: str, target: ModelVersion, actor: str, at: datetime
) -> tuple[Alias, bool]:
    """The alias row locked FOR UPDATE, and whether this call created it (pointing at target)."""
    query = Alias.objects.select_for_update(of=("self",)).select_related(
        "version", "previous_version"
    )
    row = query.filter(model=model, name=alias).first()
    if row is not None:
        return row, False
    try:
        with transaction.atomic():
            row = Alias.objects.create(
                model=model, name=alias, version=target, updated_at=at, updated_by=actor
            )
        return row, True
    except IntegrityError:
        # Another transaction created it first; its row is committed now, so lock that.
        return query.get(model=model, name=alias), False


def _move(*, row: Alias, target: ModelVersion, actor: str, at: datetime) -> Alias:
    row.previous_version = row.version
    row.version = target
    row.updated_at = at
    row.updated_by = actor
    row.save(update_fields=["previous_version", "version", "updated_at", "updated_by"])
    return row


@transaction.atomic
def alias_move(*, model: str, alias: str, version: str, actor: str) -> Alias:
    """Point `alias` of `model` at `version` (creating the alias), recording the move.

    Moves of one alias are serialised by a row lock on it. Moving an alias to the version it
    already points to changes nothing and records nothing.
    """
    owner = _model_row(model)
    problems = Problems()
    check_name(problems, alias, "alias")
    check_name(problems, version, "version")
    problems.raise_if_any("The alias move is invalid.")
    target = ModelVersion.objects.filter(model=owner, version=version).first()
    if target is None:
        raise ValidationFailed(
            f"Model {model!r} has no version {version!r}.",
            details=[{"field": "version", "message": "Register the version first."}],
        )
    now = timezone.now()
    row, created = _locked_alias(model=owner, alias=alias, target=target, actor=actor, at=now)
    row.model = owner
    if not created:
        if row.version_id == target.pk:
            return row
        _move(row=row, target=target, actor=actor, at=now)
    _record(
        model=owner,
        kind=RegistryEventType.ALIAS_MOVED,
        actor=actor,
        state=alias_state(row),
        at=now,
    )
    logger.info("alias.moved", extra={"model": model, "alias": alias, "version": version})
    return row


@transaction.atomic
def alias_rollback(*, model: str, alias: str, actor: str) -> Alias:
    """Move `alias` back to where it pointed before its last move (a move like any other).

    Rolling back twice therefore returns to where it started. Conflict when the alias has
    never moved from its first version.
    """
    owner = _model_row(model)
    row = (
        Alias.objects.select_for_update(of=("self",))
        .select_related("version", "previous_version")
        .filter(model=owner, name=alias)
        .first()
        if is_name(alias)
        else None
    )
    if row is None:
        raise NotFound(f"Model {model!r} has no alias {alias!r}.")
    if row.previous_version is None:
        raise Conflict(
            f"Alias {alias!r} of model {model!r} has no previous version to roll back to."
        )
    now = timezone.now()
    row.model = owner
    _move(row=row, target=row.previous_version, actor=actor, at=now)
    _record(
        model=owner,
        kind=RegistryEventType.ALIAS_MOVED,
        actor=actor,
        state=alias_state(row, rollback=True),
        at=now,
    )
    logger.info(
        "alias.rolled_back",
        extra={"model": model, "alias": alias, "version": row.version.version},
    )
    return row

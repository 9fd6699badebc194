"""Reads of the model registry (other apps reach the registry only through here and services)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from apps.core.errors import NotFound
from apps.registry.models import MLModel, ModelVersion


def model_get(*, name: str) -> MLModel:
    model = MLModel.objects.filter(name=name).first()
    if model is None:
        raise NotFound(f"No model named {name!r}.")
    return model


def model_version_get(*, model: str, version: str) -> ModelVersion:
    found = ModelVersion.objects.select_related("model").filter(model__name=model, version=version)
    row = found.first()
    if row is None:
        raise NotFound(f"Model {model!r} has no version {version!r}.")
    return row


def model_version_list(*, model: str) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("model").filter(model__name=model)


def model_version_ids(*, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of the registered versions among (model name, version) pairs; absent pairs are left out.

    Versions are immutable and never deleted, so callers may cache the answer for good.
    """
    wanted = set(pairs)
    if not wanted:
        return {}
    condition = Q()
    for model, version in wanted:
        condition |= Q(model__name=model, version=version)
    rows = ModelVersion.objects.filter(condition).values_list("model__name", "version", "id")
    return {(model, version): pk for model, version, pk in rows}

"""factory_boy factories of registry rows, written through the ORM for test set-up only.

Tests of behaviour go through the services; these build the world a test starts from.
Call `.create(...)` (typed) rather than the class itself.
"""

from __future__ import annotations

from factory.declarations import LazyAttribute, LazyFunction, Sequence, SubFactory
from factory.django import DjangoModelFactory

from apps.registry.models import MLModel, ModelVersion, Task
from apps.registry.validation import content_hash


class MLModelFactory(DjangoModelFactory[MLModel]):
    class Meta:
        model = MLModel
        django_get_or_create = ("name",)

    name = Sequence(lambda n: f"model-{n}")
    task = Task.BINARY_CLASSIFICATION
    description = ""
    positive_label = "churn"
    decision_threshold = 0.5
    segment_attributes = LazyFunction(lambda: ["country", "plan"])


class ModelVersionFactory(DjangoModelFactory[ModelVersion]):
    class Meta:
        model = ModelVersion

    model = SubFactory(MLModelFactory)
    version = Sequence(lambda n: str(n + 1))
    hyperparameters = LazyFunction(lambda: {"C": 1.0})
    metrics = LazyFunction(lambda: {"auc": 0.8})
    features = LazyFunction(lambda: [{"name": "tenure_days", "importance": 0.4}])
    dataset_versions = LazyFunction(list)
    artifact_uri = ""
    artifact_sha256 = ""
    code_version = ""
    tags = LazyFunction(dict)
    created_by = "tests"
    content_hash = LazyAttribute(
        lambda row: content_hash(
            {
                "hyperparameters": row.hyperparameters,
                "metrics": row.metrics,
                "features": row.features,
                "dataset_versions": row.dataset_versions,
                "artifact_uri": row.artifact_uri,
                "artifact_sha256": row.artifact_sha256,
                "code_version": row.code_version,
                "tags": row.tags,
            }
        )
    )

"""Factories of experiments and the registry rows they point at."""

from __future__ import annotations

import secrets

from factory.declarations import LazyAttribute, LazyFunction, Sequence, SubFactory
from factory.django import DjangoModelFactory

from apps.experiments.models import Experiment, Variant
from apps.registry.models import MLModel, ModelVersion


class MLModelFactory(DjangoModelFactory):
    class Meta:
        model = MLModel
        django_get_or_create = ("name",)

    name = Sequence(lambda n: f"model-{n}")
    task = "binary_classification"
    segment_attributes = LazyFunction(lambda: ["country", "plan"])


class ModelVersionFactory(DjangoModelFactory):
    class Meta:
        model = ModelVersion
        django_get_or_create = ("model", "version")

    model = SubFactory(MLModelFactory)
    version = Sequence(lambda n: str(n + 1))
    content_hash = LazyFunction(lambda: secrets.token_hex(32))


class ExperimentFactory(DjangoModelFactory):
    """A bare experiment row; tests of services use experiment_create instead."""

    class Meta:
        model = Experiment

    key = Sequence(lambda n: f"experiment-{n}")
    model = SubFactory(MLModelFactory)
    control = "control"
    salt = LazyFunction(lambda: secrets.token_hex(16))


class VariantFactory(DjangoModelFactory):
    class Meta:
        model = Variant

    experiment = SubFactory(ExperimentFactory)
    key = "control"
    model_version = LazyAttribute(
        lambda variant: ModelVersionFactory(model=variant.experiment.model)
    )
    weight = 0.5

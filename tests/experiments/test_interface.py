"""The interface ingestion relies on: the tagged-variant index and exposures from predictions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection, transaction

from apps.experiments import selectors, services
from apps.experiments.models import Exposure
from apps.experiments.selectors import TaggedVariant
from apps.experiments.services import PredictionExposure
from tests.experiments.factories import (
    ExperimentFactory,
    ModelVersionFactory,
    VariantFactory,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache():
    selectors.config_cache_clear()
    yield
    selectors.config_cache_clear()


def _experiment(key: str = "churn-v3-vs-v2"):
    experiment = ExperimentFactory(key=key, model__name="churn")
    VariantFactory(
        experiment=experiment,
        key="control",
        model_version=ModelVersionFactory(model=experiment.model, version="2"),
        weight=0.5,
        position=0,
    )
    VariantFactory(
        experiment=experiment,
        key="treatment",
        model_version=ModelVersionFactory(model=experiment.model, version="3"),
        weight=0.5,
        position=1,
    )
    services.config_changed()
    return experiment


def _exposure(experiment_id: int, subject: str, variant: str, version: str = "2"):
    return PredictionExposure(
        experiment_id=experiment_id,
        subject=subject,
        variant_key=variant,
        model_version=version,
        attributes={"country": "DE"},
        occurred_at=NOW,
        prediction_id=uuid.uuid4(),
    )


@pytest.mark.django_db
def test_tagged_variant_index__experiment_with_two_variants__keys_both():
    # Given
    experiment = _experiment()
    # When
    index = selectors.tagged_variant_index()
    # Then
    assert dict(index) == {
        ("churn-v3-vs-v2", "control"): TaggedVariant(
            experiment_id=experiment.id,
            experiment_key="churn-v3-vs-v2",
            variant_key="control",
            model="churn",
            model_version="2",
        ),
        ("churn-v3-vs-v2", "treatment"): TaggedVariant(
            experiment_id=experiment.id,
            experiment_key="churn-v3-vs-v2",
            variant_key="treatment",
            model="churn",
            model_version="3",
        ),
    }


@pytest.mark.django_db
def test_tagged_variant_index__change_committed_elsewhere__next_call_sees_it(
    django_assert_num_queries,
):
    # Given a process that has the index cached
    _experiment()
    assert len(selectors.tagged_variant_index()) == 2
    with django_assert_num_queries(1):
        selectors.tagged_variant_index()
    # When another experiment is created and the configuration number raised
    _experiment(key="second")
    # Then the next call reloads
    assert {key for key, _ in selectors.tagged_variant_index()} == {"churn-v3-vs-v2", "second"}


@pytest.mark.django_db
def test_tagged_variant_index__version_row_flushed__reads_zero_and_heals():
    # Given the configuration row is gone (a flushed test database)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM experiments_configversion")
    # When
    assert selectors.config_version() == 0
    services.config_changed()
    # Then
    assert selectors.config_version() > 0


@pytest.mark.django_db
def test_exposures_record_from_predictions__new_subjects__stored_in_order():
    # Given
    experiment = _experiment()
    items = [
        _exposure(experiment.id, "u1", "control"),
        _exposure(experiment.id, "u2", "treatment", "3"),
    ]
    # When
    stored = services.exposures_record_from_predictions(exposures=items)
    # Then
    assert stored == 2
    rows = list(Exposure.objects.order_by("seq"))
    assert [(row.subject, row.variant, row.model_version) for row in rows] == [
        ("u1", "control", "2"),
        ("u2", "treatment", "3"),
    ]
    assert rows[0].attributes == {"country": "DE"}
    assert rows[0].source == "prediction"
    assert rows[0].hash_version is None
    assert rows[0].prediction_id == items[0].prediction_id
    assert rows[0].occurred_at == NOW


@pytest.mark.django_db
def test_exposures_record_from_predictions__same_variant_again__skipped():
    # Given
    experiment = _experiment()
    services.exposures_record_from_predictions(
        exposures=[_exposure(experiment.id, "u1", "control")]
    )
    # When the same subject and variant come again, twice in one batch
    stored = services.exposures_record_from_predictions(
        exposures=[
            _exposure(experiment.id, "u1", "control"),
            _exposure(experiment.id, "u3", "control"),
            _exposure(experiment.id, "u3", "control"),
        ]
    )
    # Then only u3 is new, once
    assert stored == 1
    assert sorted(Exposure.objects.values_list("subject", flat=True)) == ["u1", "u3"]


@pytest.mark.django_db
def test_exposures_record_from_predictions__other_variant__kept_and_first_wins():
    # Given u1 first exposed to control
    experiment = _experiment()
    services.exposures_record_from_predictions(
        exposures=[_exposure(experiment.id, "u1", "control")]
    )
    # When a prediction tags u1 with treatment
    stored = services.exposures_record_from_predictions(
        exposures=[_exposure(experiment.id, "u1", "treatment", "3")]
    )
    # Then both are kept, and the first by arrival is control
    assert stored == 1
    assert Exposure.objects.filter(subject="u1").count() == 2
    first = selectors.exposure_first(experiment_id=experiment.id, subject="u1")
    assert first is not None
    assert first.variant == "control"


@pytest.mark.django_db
def test_exposures_record_from_predictions__empty__stores_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.exposures_record_from_predictions(exposures=[]) == 0


@pytest.mark.django_db
def test_exposures_record_from_predictions__caller_rolls_back__nothing_stored():
    # Given
    experiment = _experiment()
    # When the caller's transaction fails after recording
    with pytest.raises(RuntimeError), transaction.atomic():
        services.exposures_record_from_predictions(
            exposures=[_exposure(experiment.id, "u1", "control")]
        )
        raise RuntimeError("ingestion failed later")
    # Then
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
def test_exposure__update_in_sql__refused_by_trigger():
    # Given
    experiment = _experiment()
    services.exposures_record_from_predictions(
        exposures=[_exposure(experiment.id, "u1", "control")]
    )
    # When / Then
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE experiments_exposure SET variant = 'treatment'")
    assert list(Exposure.objects.values_list("variant", flat=True)) == ["control"]


@pytest.mark.django_db
def test_config_changed__change_rolled_back__number_never_reused():
    # Given a change whose transaction rolls back
    before = selectors.config_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.config_changed()
        taken = selectors.config_version()
        raise RuntimeError("the change failed")
    assert selectors.config_version() == before
    # When the next change commits
    services.config_changed()
    # Then its number is neither the old one nor the rolled-back one
    assert selectors.config_version() not in {before, taken}

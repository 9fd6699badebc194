"""Assignment through the service: exposure recording, stickiness, statuses, invalidation,
concurrency and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection

from apps.core.errors import NotFound
from apps.experiments import selectors, services
from apps.experiments.bucketing import is_included, variant_index
from apps.experiments.models import Experiment, Exposure
from apps.experiments.services import PredictionExposure
from tests.experiments.conftest import ACTOR

KEY = "churn-v3-vs-v2"
ROOT = Path(__file__).resolve().parents[2]


def _assign(subject: str, **attributes):
    return services.assignment_create(experiment=KEY, subject=subject, attributes=attributes)


def _expected_variant(experiment: Experiment, subject: str) -> str:
    keys = ["control", "treatment"]
    return keys[variant_index(salt=experiment.salt, subject=subject, weights=[0.5, 0.5])]


@pytest.mark.django_db
def test_assignment__running_new_subject__hashed_variant_and_one_exposure(make_experiment):
    # Given
    experiment = make_experiment(start=True)
    # When
    first = _assign("user-1", country="DE", premium=True)
    again = _assign("user-1", country="FR")
    # Then
    expected = _expected_variant(experiment, "user-1")
    assert first.as_dict() == {
        "experiment": KEY,
        "subject": "user-1",
        "variant": expected,
        "model_version": {"control": "2", "treatment": "3"}[expected],
        "in_experiment": True,
    }
    assert again == first
    exposure = Exposure.objects.get()
    assert (exposure.subject, exposure.variant, exposure.source, exposure.hash_version) == (
        "user-1",
        expected,
        "assignment",
        1,
    )
    assert exposure.attributes == {"country": "DE", "premium": True}


@pytest.mark.django_db
def test_assignment__stored_exposure_from_prediction__wins_over_hash(make_experiment):
    # Given a subject first exposed (through a tagged prediction) to the variant the hash
    # would not give
    experiment = make_experiment(start=True)
    other = "control" if _expected_variant(experiment, "user-7") == "treatment" else "treatment"
    services.exposures_record_from_predictions(
        exposures=[
            PredictionExposure(
                experiment_id=experiment.id,
                subject="user-7",
                variant_key=other,
                model_version={"control": "2", "treatment": "3"}[other],
                attributes={},
                occurred_at=datetime.now(UTC),
                prediction_id=uuid.uuid4(),
            )
        ]
    )
    # When
    answer = _assign("user-7")
    # Then
    assert (answer.variant, answer.in_experiment) == (other, True)
    assert Exposure.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["draft", "paused"])
def test_assignment__draft_or_paused__control_not_in_experiment_no_exposure(
    make_experiment, status
):
    make_experiment(start=status == "paused")
    if status == "paused":
        services.experiment_pause(key=KEY, actor=ACTOR)
    answer = _assign("user-1")
    assert answer.as_dict() == {
        "experiment": KEY,
        "subject": "user-1",
        "variant": "control",
        "model_version": "2",
        "in_experiment": False,
    }
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
def test_assignment__stopped_without_production__variant_null_version_null(make_experiment):
    make_experiment(start=True)
    services.experiment_stop(key=KEY, actor=ACTOR)
    answer = _assign("user-1")
    assert (answer.variant, answer.model_version, answer.in_experiment) == (None, None, False)


@pytest.mark.django_db
def test_assignment__shipped__production_version(make_experiment):
    make_experiment(start=True)
    services.experiment_ship(key=KEY, variant="treatment", actor=ACTOR)
    answer = _assign("user-1")
    assert (answer.variant, answer.model_version, answer.in_experiment) == (None, "3", False)


@pytest.mark.django_db
def test_assignment__unknown_experiment__not_found(churn):
    with pytest.raises(NotFound):
        services.assignment_create(experiment="nope", subject="u", attributes={})


@pytest.mark.django_db
def test_assignment__targeting__only_matching_subjects_exposed(make_experiment):
    # Given
    make_experiment(start=True, targeting={"country": ["DE", "FR"], "plan": ["pro"]})
    # When
    inside = _assign("user-1", country="FR", plan="pro")
    wrong_country = _assign("user-2", country="US", plan="pro")
    missing_plan = _assign("user-3", country="DE")
    # Then
    assert inside.in_experiment is True
    assert (wrong_country.variant, wrong_country.in_experiment) == ("control", False)
    assert (missing_plan.variant, missing_plan.in_experiment) == ("control", False)
    assert list(Exposure.objects.values_list("subject", flat=True)) == ["user-1"]


@pytest.mark.django_db
def test_assignment__coverage_ramp_10_to_50__included_keep_variant_about_half_in(
    make_experiment,
):
    # Given a ramp opening at 10%
    experiment = make_experiment(
        start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.5, "after": "1d"}]
    )
    subjects = [f"user-{i}" for i in range(2000)]
    before = {s: _assign(s) for s in subjects}
    included = {s: a.variant for s, a in before.items() if a.in_experiment}
    # When the ramp advances to 50%
    services.experiment_ramp_advance(key=KEY, actor=ACTOR)
    after = {s: _assign(s) for s in subjects}
    # Then
    assert all(
        after[s].variant == variant and after[s].in_experiment for s, variant in included.items()
    )
    share = sum(a.in_experiment for a in after.values()) / len(subjects)
    assert 0.45 < share < 0.55
    assert 0.07 < len(included) / len(subjects) < 0.13
    assert Exposure.objects.filter(experiment=experiment).count() == sum(
        a.in_experiment for a in after.values()
    )
    assert all(
        is_included(salt=experiment.salt, subject=s, coverage=0.5) == a.in_experiment
        for s, a in after.items()
    )


@pytest.mark.django_db
def test_assignment__config_changed_after_caching__next_request_sees_it(
    make_experiment, django_assert_num_queries
):
    # Given a process that cached the running configuration
    make_experiment(start=True, coverage=1.0)
    _assign("warm-up")
    with django_assert_num_queries(1):
        assert _assign("user-1").in_experiment is True
    # When the experiment is paused (a change committed by anyone)
    services.experiment_pause(key=KEY, actor=ACTOR)
    # Then the very next request answers as paused
    assert _assign("user-2").in_experiment is False
    assert not Exposure.objects.filter(subject="user-2").exists()


@pytest.mark.django_db(transaction=True)
def test_assignment__concurrent_first_requests__one_exposure(make_experiment):
    # Given
    make_experiment(start=True)
    answers: list[str | None] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        try:
            barrier.wait()
            answers.append(_assign("same-subject").variant)
        finally:
            connection.close()

    # When eight requests for one new subject race
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one exposure is stored and every answer agrees
    assert len(answers) == 8
    assert len(set(answers)) == 1
    assert Exposure.objects.filter(subject="same-subject").count() == 1


def _run_in_other_process(code: str) -> str:
    """Run `code` in a fresh Python process (own cache, own hash seed) on the test database."""
    settings = connection.settings_dict
    url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url,
        "PYTHONHASHSEED": "12345",
    }
    prelude = "import django, json\ndjango.setup()\nfrom apps.experiments import services\n"
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", prelude + code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_assignment__two_processes__same_variants_and_changes_seen(make_experiment):
    # Given subjects assigned in this process
    make_experiment(start=True)
    subjects = [f"user-{i}" for i in range(200)]
    here = {s: _assign(s).variant for s in subjects}
    fresh = [f"fresh-{i}" for i in range(200)]
    # When another process assigns them, and subjects never seen before
    code = (
        f"subjects = {json.dumps(subjects + fresh)}\n"
        f"print(json.dumps({{s: services.assignment_create(experiment={KEY!r}, subject=s,"
        " attributes={}).variant for s in subjects}))"
    )
    there = json.loads(_run_in_other_process(code))
    # Then the answers agree: stored exposures and the hash are the same everywhere
    assert {s: there[s] for s in subjects} == here
    assert {s: there[s] for s in fresh} == {s: _assign(s).variant for s in fresh}
    # When another process pauses the experiment after this one cached it running
    _run_in_other_process(f"services.experiment_pause(key={KEY!r}, actor='user:bob'); print('ok')")
    # Then this process sees the pause on its next request
    assert _assign("user-0").in_experiment is False
    assert selectors.config_snapshot_cached().experiments[KEY].status == "paused"

"""The configuration watcher (apps/experiments/watcher.py): subjects met before answered from
memory, and every committed change still seen: one made here at once, one made elsewhere
as soon as PostgreSQL delivers its notification, and none lost while the listener is down.

These tests commit (transaction=True): notifications are only sent on commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from apps.experiments import selectors, services, watcher
from apps.experiments.models import Experiment, Exposure
from tests.experiments.conftest import ACTOR
from tests.experiments.test_assignment import KEY, _assign, _run_in_other_process

WAIT_SECONDS = 10.0


@pytest.fixture
def watching() -> Iterator[watcher.ConfigWatcher]:
    """This process's watcher, on and connected; stopped afterwards (its connection closed)."""
    with override_settings(KAIZEN_CONFIG_WATCH=True):
        current = watcher.watcher()
        assert current is not None
        assert current.wait_connected(WAIT_SECONDS)
        try:
            yield current
        finally:
            watcher.watcher_stop()


def _eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.django_db(transaction=True)
def test_watcher__subject_met_before__answered_without_a_query(
    make_experiment, watching, django_assert_num_queries
):
    # Given a running experiment and a subject this process assigned once
    make_experiment(start=True, coverage=1.0)
    assert _eventually(lambda: watcher.trusted_version() is not None)
    first = _assign("user-1")
    # When it asks again
    with django_assert_num_queries(0):
        again = _assign("user-1")
    # Then the answer is the stored exposure's, from memory
    assert again == first
    exposure = Exposure.objects.get(subject="user-1")
    assert (again.variant, again.model_version) == (exposure.variant, exposure.model_version)


@pytest.mark.django_db(transaction=True)
def test_watcher__own_change__seen_on_the_very_next_request(make_experiment, watching):
    # Given a subject answered from memory
    make_experiment(start=True, coverage=1.0)
    assert _eventually(lambda: watcher.trusted_version() is not None)
    _assign("user-1")
    assert _assign("user-1").in_experiment is True
    # When this process pauses the experiment
    services.experiment_pause(key=KEY, actor=ACTOR)
    # Then its next request answers as paused, without waiting for the notification
    assert _assign("user-1").in_experiment is False


@pytest.mark.django_db(transaction=True)
def test_watcher__change_committed_in_another_process__seen_once_notified(
    make_experiment, watching
):
    # Given a subject answered from memory
    make_experiment(start=True, coverage=1.0)
    assert _eventually(lambda: watcher.trusted_version() is not None)
    _assign("user-1")
    before = watcher.trusted_version()
    # When another process pauses the experiment
    _run_in_other_process(f"services.experiment_pause(key={KEY!r}, actor='user:bob'); print(1)")
    # Then the watcher is notified of the new number, and the next request answers as paused
    assert _eventually(lambda: watcher.trusted_version() not in (None, before))
    assert watcher.trusted_version() == selectors.config_version()
    assert _assign("user-1").in_experiment is False


@pytest.mark.django_db(transaction=True)
def test_watcher__listener_connection_killed__falls_back_then_reconnects(make_experiment, watching):
    # Given a watcher vouching for the configuration
    make_experiment(start=True, coverage=1.0)
    assert _eventually(lambda: watcher.trusted_version() is not None)
    _assign("user-1")
    # When its database connection is killed, and a change is committed while it is down
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [watcher.APPLICATION_NAME],
        )
        assert cursor.fetchone() == (True,)
    assert _eventually(lambda: watcher.trusted_version() is None)
    _run_in_other_process(f"services.experiment_pause(key={KEY!r}, actor='user:bob'); print(1)")
    # Then requests read the number meanwhile, so none misses the change
    assert _assign("user-1").in_experiment is False
    # And the watcher reconnects on its own, with the number the change left
    assert _eventually(lambda: watcher.trusted_version() == selectors.config_version())
    assert _assign("user-2").in_experiment is False


@pytest.mark.django_db(transaction=True)
def test_watcher__off__starts_no_thread_and_reads_the_number():
    # Given the setting off (as in these tests' settings)
    # Then there is no watcher and no number is trusted
    assert watcher.watcher() is None
    assert watcher.trusted_version() is None


@pytest.mark.django_db(transaction=True)
def test_experiment__with_exposures__cannot_be_deleted_even_in_sql(make_experiment):
    # Given an experiment with an exposure (exposures keep no foreign key constraint)
    experiment = make_experiment(start=True, coverage=1.0)
    _assign("user-1")
    # When its row is deleted behind the ORM's back
    # Then the database refuses: its immutable rollout events still reference it
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM experiments_experiment WHERE id = %s", [experiment.id])
    assert Experiment.objects.filter(pk=experiment.pk).exists()
    assert Exposure.objects.filter(experiment_id=experiment.pk).count() == 1


def test_exposure_memory__bounded__keeps_the_most_recent(monkeypatch):
    # Given a memory of at most 4 subjects
    monkeypatch.setattr(selectors, "EXPOSURE_CACHE_MAX_ENTRIES", 4)
    # When 10 subjects are remembered
    for number in range(10):
        selectors.exposure_remember(
            experiment_id=1, subject=f"s{number}", variant="control", version="2"
        )
    # Then at most 4 are held: the latest are found, the oldest were forgotten
    held = [
        number
        for number in range(10)
        if selectors.exposure_cached(experiment_id=1, subject=f"s{number}") is not None
    ]
    assert len(held) <= 4
    assert held[-2:] == [8, 9]
    assert 0 not in held
    assert selectors.exposure_cached(experiment_id=1, subject="s9") == ("control", "2")


@pytest.mark.django_db
def test_watcher__lagging_behind_a_new_experiment__no_404(make_experiment, monkeypatch):
    # Given a watcher that still vouches for the number from before the experiment existed
    before = selectors.config_version()
    selectors.config_snapshot(read_number=True)
    monkeypatch.setattr(watcher, "trusted_version", lambda: before)
    make_experiment(start=True, coverage=1.0)
    assert KEY not in selectors.config_snapshot().experiments
    # When a subject is assigned in it
    answer = _assign("user-1")
    # Then the row is read before answering 404, and the subject is assigned
    assert answer.in_experiment is True
    assert Exposure.objects.filter(subject="user-1").count() == 1

"""Exposures recorded from tagged predictions: arrival order kept, concurrent batches safe."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import orjson
import pytest
from django.db import connection, connections

from apps.experiments.models import Exposure
from apps.ingest import services as ingest_services
from tests.ingest.factories import OCCURRED_AT, churn_experiment, register_churn

pytestmark = pytest.mark.django_db(transaction=True)

SUBJECTS = 300
ROUNDS = 10


def tagged(subject: str, variant: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "model": "churn",
        "model_version": "2" if variant == "control" else "3",
        "subject": subject,
        "experiment": "churn-v3-vs-v2",
        "variant": variant,
        "output": {"score": 0.5},
        "occurred_at": OCCURRED_AT,
    }


def post(events: list[dict[str, Any]]) -> None:
    ingest_services.predictions_ingest(body=orjson.dumps({"events": events}), actor="tests")


def test_exposures__two_batches_share_subjects_in_opposite_orders__both_stored_no_deadlock():
    # Given an experiment, and two clients posting batches exposing the same subjects to
    # the same variants, one in ascending order, the other descending, at the same time
    churn_experiment(register_churn())
    subjects = [f"s{number:04d}" for number in range(SUBJECTS)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def variant(subject: str) -> str:
        return "control" if int(subject[1:5]) % 2 else "treatment"

    def client(descending: bool) -> None:
        try:
            for round_ in range(ROUNDS):
                fresh = [f"{subject}-{round_}" for subject in subjects]
                order = fresh[::-1] if descending else fresh
                start.wait()
                post([tagged(subject, variant(subject)) for subject in order])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            start.abort()
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=client, args=(False,)),
        threading.Thread(target=client, args=(True,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then neither failed (a deadlock would have aborted one), and every subject was exposed
    # once, to its variant
    assert errors == []
    assert Exposure.objects.count() == ROUNDS * SUBJECTS


def test_exposures__subject_tagged_twice_in_one_batch__first_by_arrival_has_the_lower_seq():
    # Given one batch tagging a subject with treatment first, then control
    churn_experiment(register_churn())
    post([tagged("zed", "treatment"), tagged("amy", "control"), tagged("zed", "control")])
    # Then its first exposure by arrival is the treatment, though the rows went in by key
    rows = list(Exposure.objects.filter(subject="zed").order_by("seq").values_list("variant"))
    assert rows == [("treatment",), ("control",)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT subject FROM experiments_exposure ORDER BY seq")
        assert [row[0] for row in cursor.fetchall()] == ["zed", "amy", "zed"]

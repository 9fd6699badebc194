"""Exactly once: duplicates, conflicts, atomic batches, races, late predictions, exposures."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from django.db import connection, transaction
from prometheus_client import REGISTRY

from apps.experiments import selectors as experiment_selectors
from apps.experiments import watcher
from apps.experiments.models import Exposure
from apps.ingest import services
from apps.ingest.models import Feedback, Prediction
from tests.ingest.factories import churn_experiment, feedback, post, prediction, register_churn

WAIT_SECONDS = 30

KINDS: dict[str, tuple[Any, Any, dict[str, str]]] = {
    "predictions": (prediction, Prediction, {"subject": "someone-else"}),
    "feedback": (feedback, Feedback, {"metric": "conversion"}),
}


def _rows(model: Any) -> list[dict[str, Any]]:
    return list(model.objects.order_by("seq").values())


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_post__same_event_again__201_duplicate_and_row_unchanged(ingester, churn, kind):
    # Given a stored event
    make, model, _ = KINDS[kind]
    body = make()
    post(ingester, f"/api/v1/{kind}", body)
    before = _rows(model)
    # When it is posted again
    response = post(ingester, f"/api/v1/{kind}", body)
    # Then
    assert response.status_code == 201
    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert _rows(model) == before


@pytest.mark.django_db
def test_post_prediction__equal_content_written_differently__duplicate(ingester, churn):
    # Given a stored prediction
    body = prediction(occurred_at="2026-11-01T10:00:00Z", features={"a": 1, "b": "x"})
    body["explanation"] = {"a": 0.5}
    post(ingester, "/api/v1/predictions", body)
    # When the same content comes with other key order, offset, number spelling and id case
    raw = (
        b'{"occurred_at": "2026-11-01T11:00:00+01:00", "features": {"b": "x", "a": 1.0}, '
        b'"explanation": {"a": 5e-1}, '
        + orjson.dumps(
            {
                k: v
                for k, v in body.items()
                if k not in {"occurred_at", "features", "explanation", "id"}
            }
        )[1:-1]
        + b', "id": "'
        + body["id"].upper().encode()
        + b'"}'
    )
    response = post(ingester, "/api/v1/predictions", raw)
    # Then
    assert response.status_code == 201
    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert Prediction.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_post__same_id_other_content__409_and_row_unchanged(ingester, churn, kind):
    # Given a stored event
    make, model, change = KINDS[kind]
    body = make()
    post(ingester, f"/api/v1/{kind}", body)
    before = _rows(model)
    # When its id comes with other content
    response = post(ingester, f"/api/v1/{kind}", {**body, **change})
    # Then
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert [(detail.get("index"), detail["field"]) for detail in error["details"]] == [(None, "id")]
    assert _rows(model) == before


# Batch sizes on each side of staging.SMALL_BATCH: the multi-row INSERT and the COPY path.
SIZES = [4, 20]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_post_batch__one_conflict_with_stored__409_with_index_and_nothing_stored(
    ingester, churn, kind, size
):
    # Given a stored event
    make, model, change = KINDS[kind]
    stored = make()
    post(ingester, f"/api/v1/{kind}", stored)
    before = _rows(model)
    # When a batch of new events carries its id with other content at index 2
    batch = [make() for _ in range(size)]
    batch[2] = {**stored, **change}
    response = post(ingester, f"/api/v1/{kind}", {"events": batch})
    # Then the whole batch is refused
    assert response.status_code == 409
    assert [(d["index"], d["field"]) for d in response.json()["error"]["details"]] == [(2, "id")]
    assert _rows(model) == before


@pytest.mark.django_db
@pytest.mark.parametrize("size", SIZES)
def test_post_batch__several_conflicts__409_every_conflicting_index(ingester, churn, size):
    stored = [prediction() for _ in range(3)]
    post(ingester, "/api/v1/predictions", {"events": stored})
    batch = [prediction() for _ in range(size)]
    batch[0], batch[1], batch[-1] = (
        {**stored[2], "subject": "a"},
        stored[1],
        {**stored[0], "subject": "b"},
    )
    response = post(ingester, "/api/v1/predictions", {"events": batch})
    assert response.status_code == 409
    assert [d["index"] for d in response.json()["error"]["details"]] == [0, size - 1]
    assert Prediction.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_post_batch__same_event_twice_in_batch__stored_once_one_duplicate(
    ingester, churn, kind, size
):
    make, model, _ = KINDS[kind]
    event = make()
    batch = [event, *[make() for _ in range(size - 2)], event]
    response = post(ingester, f"/api/v1/{kind}", {"events": batch})
    assert response.status_code == 201
    assert response.json() == {"accepted": size - 1, "duplicates": 1}
    assert model.objects.count() == size - 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_post_batch__same_id_other_content_in_batch__409_second_index_nothing_stored(
    ingester, churn, kind
):
    make, model, change = KINDS[kind]
    event = make()
    response = post(ingester, f"/api/v1/{kind}", {"events": [make(), event, {**event, **change}]})
    assert response.status_code == 409
    assert [(d["index"], d["field"]) for d in response.json()["error"]["details"]] == [(2, "id")]
    assert model.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_post_batch__all_duplicates__201_zero_accepted(ingester, churn, kind, size):
    make, model, _ = KINDS[kind]
    batch = {"events": [make() for _ in range(size)]}
    post(ingester, f"/api/v1/{kind}", batch)
    response = post(ingester, f"/api/v1/{kind}", batch)
    assert response.status_code == 201
    assert response.json() == {"accepted": 0, "duplicates": size}
    assert model.objects.count() == size


@pytest.mark.django_db
def test_post_batch__new_and_stored_events__counts_each(ingester, churn):
    stored = [prediction(), prediction()]
    post(ingester, "/api/v1/predictions", {"events": stored})
    response = post(
        ingester, "/api/v1/predictions", {"events": [stored[1], prediction(), stored[0]]}
    )
    assert response.json() == {"accepted": 1, "duplicates": 2}
    assert Prediction.objects.count() == 3


def _bad(kind: str) -> dict[str, Any]:
    """A bad prediction of each kind the server finds: shape, rule, reference."""
    return {
        "shape": prediction(output={"score": "high"}),
        "rule": prediction(output={}),
        "reference": prediction(model_version="9"),
    }[kind]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [
        {0: "shape"},
        {4: "reference"},
        {2: "rule"},
        {1: "shape", 3: "rule", 4: "reference"},
        {0: "reference", 1: "reference", 2: "shape", 3: "rule", 4: "shape"},
    ],
)
def test_post_batch__bad_events__400_every_bad_index_nothing_stored(ingester, churn, bad):
    # Given a batch of 5 with bad events at the given indexes
    events = [_bad(bad[index]) if index in bad else prediction() for index in range(5)]
    # When
    response = post(ingester, "/api/v1/predictions", {"events": events})
    # Then
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert sorted({detail["index"] for detail in details}) == sorted(bad)
    assert Prediction.objects.count() == 0


@pytest.mark.django_db
def test_post_feedback__before_its_prediction__both_stored_and_joinable(ingester, churn):
    # Given feedback on a prediction not posted yet
    predicted = prediction()
    label = feedback(prediction_id=predicted["id"], value=None, label="churn")
    assert post(ingester, "/api/v1/feedback", label).status_code == 201
    # When the prediction arrives
    response = post(ingester, "/api/v1/predictions", predicted)
    # Then both are stored and the feedback joins the prediction
    assert response.status_code == 201
    joined = Feedback.objects.filter(prediction_id__in=Prediction.objects.values("id"))
    assert list(joined.values_list("id", "label")) == [(Feedback.objects.get().id, "churn")]


@pytest.mark.django_db
def test_post_prediction__tagged_with_experiment__stored_with_exposure(ingester, churn):
    # Given a running experiment whose treatment serves version 3
    experiment = churn_experiment(churn)
    body = prediction(experiment=experiment.key, variant="treatment")
    # When
    response = post(ingester, "/api/v1/predictions", body)
    # Then
    assert response.status_code == 201
    stored = Prediction.objects.get()
    assert (stored.experiment, stored.variant) == (experiment.key, "treatment")
    exposure = Exposure.objects.get()
    assert (
        exposure.experiment_id,
        exposure.subject,
        exposure.variant,
        exposure.model_version,
        str(exposure.prediction_id),
        exposure.attributes,
        exposure.occurred_at.isoformat(),
    ) == (
        experiment.id,
        "user-1842",
        "treatment",
        "3",
        body["id"],
        {"country": "DE", "plan": "pro"},
        "2026-11-01T10:00:00+00:00",
    )


@pytest.mark.django_db
def test_post_prediction__subject_tagged_again__first_exposure_kept(ingester, churn):
    experiment = churn_experiment(churn)
    first = prediction(experiment=experiment.key, variant="treatment")
    post(ingester, "/api/v1/predictions", first)
    post(ingester, "/api/v1/predictions", first)
    later = prediction(experiment=experiment.key, variant="treatment")
    response = post(ingester, "/api/v1/predictions", later)
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert Prediction.objects.count() == 2
    assert [str(value) for value in Exposure.objects.values_list("prediction_id", flat=True)] == [
        first["id"]
    ]


@pytest.mark.django_db
def test_post_prediction__experiment_of_other_model__400(ingester, churn):
    from tests.registry.factories import MLModelFactory, ModelVersionFactory

    other = MLModelFactory.create(name="fraud")
    versions = {v: ModelVersionFactory.create(model=other, version=v) for v in ("2", "3")}
    experiment = churn_experiment(versions, key="fraud-test")
    response = post(
        ingester,
        "/api/v1/predictions",
        prediction(experiment=experiment.key, variant="treatment"),
    )
    assert response.status_code == 400
    assert [d["field"] for d in response.json()["error"]["details"]] == ["variant"]
    assert Prediction.objects.count() == 0
    assert Exposure.objects.count() == 0


@pytest.mark.django_db
def test_post_prediction__conflict_in_tagged_batch__no_exposure_left(ingester, churn):
    experiment = churn_experiment(churn)
    stored = prediction()
    post(ingester, "/api/v1/predictions", stored)
    batch = [prediction(experiment=experiment.key, variant="treatment"), {**stored, "subject": "x"}]
    response = post(ingester, "/api/v1/predictions", {"events": batch})
    assert response.status_code == 409
    assert Exposure.objects.count() == 0
    assert Prediction.objects.count() == 1


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_post__stored_duplicate_rejected__counted_in_metrics(
    ingester, churn, django_capture_on_commit_callbacks
):
    # Given the counters now
    stored = _sample("kaizen_events_stored_total", type="prediction")
    duplicate = _sample("kaizen_events_duplicate_total", type="prediction")
    rejected = _sample("kaizen_events_rejected_total", type="prediction", reason="invalid")
    conflict = _sample("kaizen_events_rejected_total", type="prediction", reason="conflict")
    first = prediction()
    # When 2 are stored, 1 comes again, 1 batch has 2 bad events, 1 conflicts
    with django_capture_on_commit_callbacks(execute=True):
        post(ingester, "/api/v1/predictions", {"events": [first, prediction()]})
    with django_capture_on_commit_callbacks(execute=True):
        post(ingester, "/api/v1/predictions", first)
    post(ingester, "/api/v1/predictions", {"events": [prediction(id="x"), prediction(id="y")]})
    post(ingester, "/api/v1/predictions", {**first, "subject": "other"})
    # Then
    assert _sample("kaizen_events_stored_total", type="prediction") - stored == 2
    assert _sample("kaizen_events_duplicate_total", type="prediction") - duplicate == 1
    assert (
        _sample("kaizen_events_rejected_total", type="prediction", reason="invalid") - rejected == 2
    )
    assert (
        _sample("kaizen_events_rejected_total", type="prediction", reason="conflict") - conflict
        == 1
    )


# --- concurrency (committed transactions, real connections per thread) ----------------------


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _in_thread(target: Any) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("same_content", "expected"), [(True, "duplicate"), (False, "conflict")])
@pytest.mark.parametrize("others", [0, 12])
def test_two_clients_race_on_one_id__second_waits_then_duplicate_or_409(
    make_client, same_content, expected, others
):
    # Given client A's transaction has inserted an event and not committed yet; client B
    # sends the same id alone or in a batch of other new events
    register_churn()
    first = prediction()
    racing = first if same_content else {**first, "subject": "someone-else"}
    second: dict[str, Any] = (
        {"events": [prediction() for _ in range(others)] + [racing]} if others else racing
    )
    inserted, release = threading.Event(), threading.Event()
    answers: dict[str, Any] = {}

    def client_a() -> None:
        with transaction.atomic():
            answers["a"] = services.predictions_ingest(body=orjson.dumps(first), actor="a")
            inserted.set()
            release.wait(WAIT_SECONDS)

    ingester = make_client("ingest")
    holder = _in_thread(client_a)
    assert inserted.wait(WAIT_SECONDS)
    # When client B posts the same id, it waits on A's row
    racer = _in_thread(
        lambda: answers.setdefault("b", post(ingester, "/api/v1/predictions", second))
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while _lock_waiters() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lock_waiters() == 1
    release.set()
    holder.join(WAIT_SECONDS)
    racer.join(WAIT_SECONDS)
    # Then A stored it and B got a duplicate or a conflict
    assert answers["a"] == services.IngestResult(accepted=1, duplicates=0)
    if expected == "duplicate":
        assert answers["b"].status_code == 201
        assert answers["b"].json() == {"accepted": others, "duplicates": 1}
        assert Prediction.objects.count() == 1 + others
    else:
        assert answers["b"].status_code == 409
        assert Prediction.objects.count() == 1
    assert Prediction.objects.get(id=first["id"]).subject == "user-1842"


@pytest.mark.django_db(transaction=True)
def test_batches_racing_on_same_ids_in_opposite_orders__no_deadlock_each_stored_once(make_client):
    # Given 100 events and two clients sending them in opposite orders, 10 times each
    register_churn()
    events = [prediction() for _ in range(100)]
    clients = [make_client("ingest"), make_client("ingest")]
    orders = [events, events[::-1]]
    statuses: list[int] = []

    def send(index: int) -> None:
        for _ in range(10):
            statuses.append(
                post(clients[index], "/api/v1/predictions", {"events": orders[index]}).status_code
            )

    # When
    threads = [_in_thread(lambda index=index: send(index)) for index in range(2)]
    for thread in threads:
        thread.join(WAIT_SECONDS * 4)
    # Then
    assert statuses == [201] * 20
    assert Prediction.objects.count() == 100


@pytest.mark.django_db
def test_predictions_ingest__inside_callers_transaction_twice__staging_emptied_between(churn):
    # Given two COPY-sized ingestions inside one enclosing transaction (the staging table
    # is not emptied by a commit in between)
    first = {"events": [prediction() for _ in range(20)]}
    second = {"events": [prediction() for _ in range(20)]}
    with transaction.atomic():
        one = services.predictions_ingest(body=orjson.dumps(first), actor="t")
        # When
        two = services.predictions_ingest(body=orjson.dumps(second), actor="t")
    # Then the second stores only its own events
    assert (one.accepted, two.accepted, two.duplicates) == (20, 20, 0)
    assert Prediction.objects.count() == 40


@pytest.mark.django_db
def test_post_prediction__tag_newer_than_the_watchers_number__checked_then_accepted(
    ingester, churn, monkeypatch
):
    # Given a process whose configuration watcher still vouches for the number from before
    # the experiment existed (its notification has not arrived yet)
    before = experiment_selectors.config_version()
    experiment_selectors.tagged_variant_index(read_number=True)
    monkeypatch.setattr(watcher, "trusted_version", lambda: before)
    experiment = churn_experiment(churn)
    assert experiment_selectors.tagged_variant_index() == {}
    # When a prediction tagged with the new experiment arrives
    response = post(
        ingester, "/api/v1/predictions", prediction(experiment=experiment.key, variant="treatment")
    )
    # Then the row is read before refusing, and the prediction is accepted with its exposure
    assert response.status_code == 201, response.json()
    assert Exposure.objects.get().variant == "treatment"

"""The experiment endpoints: create, read, change, transitions, ship; keys, scopes, bad input."""

from __future__ import annotations

import pytest

from apps.experiments.models import Experiment, RolloutEvent

URL = "/api/v1/experiments"
KEY = "churn-v3-vs-v2"


def _post(client, url, body=None):
    return client.post(url, body if body is not None else {}, format="json")


@pytest.mark.django_db
def test_experiments_create__valid__201_with_defaults_and_history(manager, churn, payload):
    # When
    response = _post(manager, URL, payload)
    # Then
    assert response.status_code == 201
    body = response.json()
    assert body["key"] == KEY
    assert body["status"] == "draft"
    assert body["coverage"] == 1.0
    assert body["alpha"] == 0.05
    assert body["mde"] == 0.05
    assert body["targeting"] == {}
    assert body["ramp"] == []
    assert body["hash_version"] == 1
    assert body["primary_metric"] == "click"
    assert body["guardrail_metrics"] == ["revenue"]
    assert [entry["type"] for entry in body["history"]] == ["experiment_created"]
    assert body["history"][0]["actor"].startswith("api_key:tests/")


@pytest.mark.django_db
def test_experiments_create__invalid__400_every_problem_and_nothing_stored(manager, churn, payload):
    # Given
    payload["variants"][1]["weight"] = 0.7
    payload["control"] = "nope"
    # When
    response = _post(manager, URL, payload)
    # Then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["variants", "control"]
    assert Experiment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {"key": KEY},
        {"key": 5, "model": ["churn"], "variants": {}, "control": None},
        {"key": KEY, "model": "churn", "variants": [1, "a"], "control": "control"},
        {"key": KEY, "model": "churn", "variants": [], "control": "c", "ramp": [{"after": 3}]},
        {"key": KEY, "model": "churn", "variants": [], "control": "c", "targeting": {"a": "DE"}},
        {"key": KEY, "model": "churn", "variants": [], "control": "c", "surprise": True},
        {"key": "x" * 5000, "model": "churn\x00", "variants": [], "control": "c"},
    ],
)
def test_experiments_create__hostile_body__400_nothing_stored(manager, churn, body):
    response = _post(manager, URL, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Experiment.objects.count() == 0


@pytest.mark.django_db
def test_experiments_create__invalid_json__400(manager, churn):
    response = manager.post(URL, b'{"key": NaN}', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
def test_experiments_create__key_taken__409(manager, churn, payload):
    _post(manager, URL, payload)
    response = _post(manager, URL, payload)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Experiment.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}/{KEY}"),
        ("patch", f"{URL}/{KEY}"),
        ("post", f"{URL}/{KEY}/start"),
        ("post", f"{URL}/{KEY}/pause"),
        ("post", f"{URL}/{KEY}/stop"),
        ("post", f"{URL}/{KEY}/ship"),
        ("post", f"{URL}/{KEY}/ramp/advance"),
    ],
)
def test_experiment_endpoints__no_key__401(anonymous, method, url):
    response = getattr(anonymous, method)(url, {}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", URL),
        ("patch", f"{URL}/{KEY}"),
        ("post", f"{URL}/{KEY}/start"),
        ("post", f"{URL}/{KEY}/pause"),
        ("post", f"{URL}/{KEY}/stop"),
        ("post", f"{URL}/{KEY}/ship"),
        ("post", f"{URL}/{KEY}/ramp/advance"),
    ],
)
def test_experiment_writes__read_key__403_and_nothing_changes(reader, make_experiment, method, url):
    make_experiment()
    response = getattr(reader, method)(url, {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert RolloutEvent.objects.count() == 1


@pytest.mark.django_db
def test_experiments_list__ingest_key__403(make_client):
    response = make_client("ingest").get(URL)
    assert response.status_code == 403


@pytest.mark.django_db
def test_experiment_get__with_history__200(reader, make_experiment):
    # Given
    make_experiment(start=True)
    # When
    response = reader.get(f"{URL}/{KEY}")
    # Then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "running"
    assert [entry["type"] for entry in body["history"]] == [
        "experiment_created",
        "experiment_started",
    ]
    assert body["history"][1]["diff"]["status"] == {"from": "draft", "to": "running"}


@pytest.mark.django_db
def test_experiment_get__unknown__404(reader):
    response = reader.get(f"{URL}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_experiments_list__several__paginated_filtered_without_n_plus_one(
    reader, make_experiment, django_assert_max_num_queries
):
    # Given
    for index in range(5):
        make_experiment(key=f"exp-{index}", start=index % 2 == 0)
    # When
    with django_assert_max_num_queries(10):
        first = reader.get(URL, {"limit": 3})
    second = reader.get(URL, {"limit": 3, "cursor": first.json()["next_cursor"]})
    running = reader.get(URL, {"status": "running"})
    # Then
    assert [row["key"] for row in first.json()["results"]] == ["exp-0", "exp-1", "exp-2"]
    assert [row["key"] for row in second.json()["results"]] == ["exp-3", "exp-4"]
    assert second.json()["next_cursor"] is None
    assert [row["key"] for row in running.json()["results"]] == ["exp-0", "exp-2", "exp-4"]
    assert reader.get(URL, {"status": "bogus"}).status_code == 400
    assert reader.get(URL, {"cursor": "!!"}).status_code == 400


@pytest.mark.django_db
def test_experiment_patch__draft__changes_and_records(manager, make_experiment):
    make_experiment()
    response = manager.patch(
        f"{URL}/{KEY}", {"targeting": {"country": ["DE"]}, "coverage": 0.5}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["targeting"] == {"country": ["DE"]}
    assert body["coverage"] == 0.5
    assert body["history"][-1]["type"] == "experiment_updated"
    assert set(body["history"][-1]["diff"]) == {"targeting", "coverage"}


@pytest.mark.django_db
def test_experiment_patch__key_changed__400(manager, make_experiment):
    make_experiment()
    response = manager.patch(f"{URL}/{KEY}", {"key": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"field": "key", "message": "The key of an experiment never changes."}
    ]


@pytest.mark.django_db
def test_experiment_patch__running_targeting__409_unchanged(manager, make_experiment):
    make_experiment(start=True)
    response = manager.patch(f"{URL}/{KEY}", {"targeting": {"country": ["DE"]}}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == [
        {"field": "targeting", "message": "Fixed once the experiment has started."}
    ]
    assert Experiment.objects.get().targeting.count() == 0


@pytest.mark.django_db
def test_experiment_transitions__start_pause_stop__200_then_409(manager, make_experiment):
    make_experiment()
    assert _post(manager, f"{URL}/{KEY}/start").json()["status"] == "running"
    assert _post(manager, f"{URL}/{KEY}/pause").json()["status"] == "paused"
    assert _post(manager, f"{URL}/{KEY}/stop").json()["status"] == "stopped"
    response = _post(manager, f"{URL}/{KEY}/start")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == (
        "'churn-v3-vs-v2' is stopped; a stopped experiment is never restarted."
    )


@pytest.mark.django_db
def test_experiment_ship__variant__200_stopped_and_production_moved(
    manager, reader, make_experiment
):
    make_experiment(start=True)
    response = _post(manager, f"{URL}/{KEY}/ship", {"variant": "treatment"})
    assert response.status_code == 200
    assert response.json()["status"] == "stopped"
    assert response.json()["shipped_variant"] == "treatment"
    model = reader.get("/api/v1/models/churn").json()
    assert {alias["name"]: alias["version"] for alias in model["aliases"]} == {"production": "3"}


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"variant": 3}, {"variant": ""}, ["treatment"]])
def test_experiment_ship__bad_body__400_nothing_changes(manager, make_experiment, body):
    make_experiment(start=True)
    response = _post(manager, f"{URL}/{KEY}/ship", body)
    assert response.status_code == 400
    assert Experiment.objects.get().status == "running"


@pytest.mark.django_db
def test_experiment_ramp_advance__endpoint__applies_next_step(manager, make_experiment):
    make_experiment(start=True, ramp=[{"coverage": 0.1}, {"coverage": 0.3, "after": "2d"}])
    response = _post(manager, f"{URL}/{KEY}/ramp/advance")
    assert response.status_code == 200
    body = response.json()
    assert body["coverage"] == 0.3
    assert [step["after"] for step in body["ramp"]] == ["0m", "2d"]
    assert all(step["applied_at"] for step in body["ramp"])


@pytest.mark.django_db
def test_schema__experiment_paths__documented(anonymous):
    paths = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/experiments" in paths
    assert "/api/v1/experiments/{key}/ship" in paths
    assert "/api/v1/assignments" in paths


@pytest.mark.django_db(transaction=True)
def test_event_feed__rollout_events_and_exposures__listed_in_log_order(
    make_client, make_experiment
):
    # Given a created and started experiment and one assignment (committed rows: the feed
    # only hands out rows below the oldest running transaction)
    make_experiment(start=True)
    ingester, reader = make_client("ingest"), make_client("read")
    assigned = ingester.post(
        "/api/v1/assignments", {"experiment": KEY, "subject": "user-1"}, format="json"
    ).json()
    # When
    response = reader.get("/api/v1/events", {"limit": 1000})
    # Then
    mine = [
        item
        for item in response.json()["results"]
        if item["type"].startswith("experiment_") or item["type"] == "exposure"
    ]
    assert [item["type"] for item in mine] == [
        "experiment_created",
        "experiment_started",
        "exposure",
    ]
    assert mine[1]["event"]["state"]["status"] == "running"
    exposure = mine[2]["event"]
    assert (exposure["experiment"], exposure["subject"], exposure["variant"]) == (
        KEY,
        "user-1",
        assigned["variant"],
    )
    assert (exposure["source"], exposure["hash_version"]) == ("assignment", 1)

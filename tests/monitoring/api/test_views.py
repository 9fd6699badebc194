"""REST of rules, alerts and retraining jobs: shapes, events, auth, hostile input, paging."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.monitoring.models import (
    AlertAcknowledgement,
    JobStatus,
    RetrainingJob,
    Rule,
    RuleEvent,
)
from apps.registry.models import ModelVersion
from tests.monitoring.conftest import NOW, RULE, make_rule
from tests.monitoring.test_notifications import raise_alert
from tests.monitoring.test_retraining import queued_job

pytestmark = pytest.mark.django_db

MISSING = "5f0c2f5e-2d0e-4d9b-9a55-2b1f1b7a3c99"  # fixed: xdist workers must collect the same ids


def post(client: Any, path: str, body: Any = None) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body if body is not None else {})
    return client.generic("POST", path, data, content_type="application/json")


def patch(client: Any, path: str, body: Any) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("PATCH", path, data, content_type="application/json")


@pytest.fixture
def world(churn) -> dict[str, Any]:
    """A rule, an alert of it and a queued job: ids to put in paths."""
    rule, _ = make_rule()
    alert = raise_alert(rule)
    job = queued_job(rule, alert=alert)
    return {"rule": rule.pk, "alert": str(alert.pk), "job": str(job.pk)}


ENDPOINTS = [
    ("GET", "/api/v1/rules", "read"),
    ("POST", "/api/v1/rules", "manage"),
    ("GET", "/api/v1/rules/{rule}", "read"),
    ("PATCH", "/api/v1/rules/{rule}", "manage"),
    ("GET", "/api/v1/alerts", "read"),
    ("POST", "/api/v1/alerts/{alert}/acknowledge", "manage"),
    ("GET", "/api/v1/retraining-jobs", "read"),
    ("GET", "/api/v1/retraining-jobs/{job}", "read"),
    ("POST", "/api/v1/retraining-jobs/{job}/claim", "manage"),
    ("POST", "/api/v1/retraining-jobs/{job}/complete", "manage"),
    ("POST", "/api/v1/retraining-jobs/{job}/fail", "manage"),
]


def call(client: Any, method: str, path: str, body: Any = None) -> Any:
    if method == "GET":
        return client.get(path)
    data = orjson.dumps(body if body is not None else {})
    return client.generic(method, path, data, content_type="application/json")


# --- auth ---


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_endpoint__no_key__401_and_nothing_changes(world, anonymous, method, path, scope):
    # When
    response = call(anonymous, method, path.format(**world))
    # Then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert RuleEvent.objects.count() == 1
    assert RetrainingJob.objects.get().status == JobStatus.QUEUED


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_endpoint__key_without_the_scope__403_and_nothing_changes(
    world, make_client, method, path, scope
):
    # Given: a key with every scope but the one needed
    client = make_client(*[s for s in ("ingest", "read", "manage") if s != scope])
    # When
    response = call(client, method, path.format(**world))
    # Then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert RuleEvent.objects.count() == 1
    assert AlertAcknowledgement.objects.count() == 0
    assert RetrainingJob.objects.get().status == JobStatus.QUEUED


# --- rules ---


def test_create_rule__valid_with_webhook__201_secret_once_and_a_created_event(churn, manager):
    # Given
    body = {**RULE, "webhook_url": "https://hooks.example.com/kaizen", "open_canary": True}
    # When
    response = post(manager, "/api/v1/rules", body)
    # Then
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["webhook_secret"].startswith("whsec_") and len(data["webhook_secret"]) > 40
    assert {key: data[key] for key in RULE} == RULE
    assert (data["webhook_secret_set"], data["enabled"], data["open_canary"]) == (True, True, True)
    assert [entry["type"] for entry in data["history"]] == ["rule_created"]
    # and the secret is never shown again, nor recorded
    again = manager.get(f"/api/v1/rules/{data['id']}").json()
    assert "webhook_secret" not in again
    event = RuleEvent.objects.get()
    assert data["webhook_secret"] not in orjson.dumps(event.state).decode()
    assert event.state["threshold"] == 0.8 and event.actor.startswith("api_key:")


def test_create_rule__defaults__1h_window_1h_cooldown_100_samples_alert(churn, manager):
    # When
    response = post(
        manager,
        "/api/v1/rules",
        {
            "name": "r",
            "model": "churn",
            "metric": "error_rate",
            "comparator": "gt",
            "threshold": 0.1,
        },
    )
    # Then
    data = response.json()
    assert response.status_code == 201
    assert (data["window"], data["cooldown"], data["min_samples"], data["action"]) == (
        "1h",
        "1h",
        100,
        "alert",
    )
    assert (data["segment"], data["webhook_url"], data["webhook_secret_set"]) == (None, None, False)
    assert "webhook_secret" not in data


def test_create_rule__same_name_for_the_model__409_and_one_rule(world, manager):
    # When
    response = post(manager, "/api/v1/rules", RULE)
    # Then
    assert response.status_code == 409
    assert response.json()["error"]["details"] == [
        {"field": "name", "message": "Choose another name."}
    ]
    assert Rule.objects.count() == 1


def test_patch_rule__name_of_another_rule__409_and_no_event(world, manager):
    # Given
    other, _ = make_rule(name="other")
    # When
    response = patch(manager, f"/api/v1/rules/{other.pk}", {"name": RULE["name"]})
    # Then
    assert response.status_code == 409
    assert Rule.objects.get(pk=other.pk).name == "other"
    assert RuleEvent.objects.count() == 2


HOSTILE_RULES: list[tuple[Any, str]] = [
    ([RULE], ""),
    ("rule", ""),
    ({**RULE, "extra": 1}, "extra"),
    ({key: value for key, value in RULE.items() if key != "metric"}, "metric"),
    ({**RULE, "model": "nope"}, "model"),
    ({**RULE, "model": 5}, "model"),
    ({**RULE, "metric": "auc"}, "metric"),
    ({**RULE, "metric": "mae"}, "metric"),
    ({**RULE, "segment": {"country": "DE", "plan": "pro"}}, "segment"),
    ({**RULE, "segment": {"device": "ios"}}, "segment.device"),
    ({**RULE, "segment": {"country": {"nested": 1}}}, "segment.country"),
    ({**RULE, "segment": ["country"]}, "segment"),
    ({**RULE, "window": "30m"}, "window"),
    ({**RULE, "window": "0h"}, "window"),
    ({**RULE, "window": "90m"}, "window"),
    ({**RULE, "window": "999999d"}, "window"),
    ({**RULE, "window": 3600}, "window"),
    ({**RULE, "window": None}, "window"),
    ({**RULE, "cooldown": "0m"}, "cooldown"),
    ({**RULE, "cooldown": "6 hours"}, "cooldown"),
    ({**RULE, "comparator": "eq"}, "comparator"),
    ({**RULE, "threshold": "0.8"}, "threshold"),
    ({**RULE, "threshold": None}, "threshold"),
    ({**RULE, "threshold": True}, "threshold"),
    ({**RULE, "threshold": 1e400}, ""),
    ({**RULE, "min_samples": 0}, "min_samples"),
    ({**RULE, "min_samples": 1.5}, "min_samples"),
    ({**RULE, "min_samples": True}, "min_samples"),
    ({**RULE, "min_samples": 10**12}, "min_samples"),
    ({**RULE, "action": "page"}, "action"),
    ({**RULE, "enabled": "yes"}, "enabled"),
    ({**RULE, "action": "alert", "open_canary": True}, "open_canary"),
    ({**RULE, "webhook_url": "ftp://example.com/x"}, "webhook_url"),
    ({**RULE, "webhook_url": "https://user:pw@example.com/x"}, "webhook_url"),
    ({**RULE, "webhook_url": "http://10.0.0.1/hook"}, "webhook_url"),
    ({**RULE, "webhook_url": "http://[::1]:8000/hook"}, "webhook_url"),
    ({**RULE, "webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ({**RULE, "webhook_url": "http://localhost/hook"}, "webhook_url"),
    ({**RULE, "webhook_url": "http://example.com:99999/"}, "webhook_url"),
    ({**RULE, "webhook_url": "https://example.com/" + "a" * 3000}, "webhook_url"),
    ({**RULE, "name": ""}, "name"),
    ({**RULE, "name": "a\x00b"}, "name"),
    ({**RULE, "name": "n" * 201}, "name"),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE_RULES)
def test_create_rule__hostile_body__400_naming_the_field_and_nothing_stored(
    churn, manager, body, field
):
    # When
    response = post(manager, "/api/v1/rules", body)
    # Then
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] in {"validation_error", "invalid_json"}
    if field:
        assert field in [detail.get("field") for detail in error["details"]]
    assert (Rule.objects.count(), RuleEvent.objects.count()) == (0, 0)


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"name": NaN}', b"[" * 10_000 + b"]" * 10_000, b"\xff\xfe", b'{"a":1}{"b":2}'],
)
def test_create_rule__malformed_json__400(churn, manager, raw):
    # When
    response = post(manager, "/api/v1/rules", raw)
    # Then
    assert response.status_code == 400
    assert Rule.objects.count() == 0


def test_create_rule__not_json__415(churn, manager):
    # When
    response = manager.generic("POST", "/api/v1/rules", b"name=x", content_type="text/plain")
    # Then
    assert response.status_code == 415


def test_patch_rule__threshold_then_disable__two_events_with_diffs(world, manager):
    # When
    first = patch(manager, f"/api/v1/rules/{world['rule']}", {"threshold": 0.7})
    second = patch(manager, f"/api/v1/rules/{world['rule']}", {"enabled": False})
    same = patch(manager, f"/api/v1/rules/{world['rule']}", {"enabled": False})
    # Then
    assert [r.status_code for r in (first, second, same)] == [200, 200, 200]
    data = same.json()
    assert (data["threshold"], data["enabled"]) == (0.7, False)
    assert [(e["type"], e["diff"]) for e in data["history"]][1:] == [
        ("rule_updated", {"threshold": {"from": 0.8, "to": 0.7}}),
        ("rule_disabled", {"enabled": {"from": True, "to": False}}),
    ]
    states = list(RuleEvent.objects.order_by("seq").values_list("state", flat=True))
    assert [(s["threshold"], s["enabled"]) for s in states] == [
        (0.8, True),
        (0.7, True),
        (0.7, False),
    ]


def test_patch_rule__webhook_set_then_rotated__each_answers_a_new_secret_once(world, manager):
    # When
    added = patch(manager, f"/api/v1/rules/{world['rule']}", {"webhook_url": "https://a.example/h"})
    rotated = patch(manager, f"/api/v1/rules/{world['rule']}", {"rotate_webhook_secret": True})
    plain = patch(manager, f"/api/v1/rules/{world['rule']}", {"threshold": 0.5})
    # Then
    first, second = added.json()["webhook_secret"], rotated.json()["webhook_secret"]
    assert first != second
    assert "webhook_secret" not in plain.json()
    assert Rule.objects.get().webhook_secret == second
    diffs = [entry["diff"] for entry in plain.json()["history"]][1:3]
    assert diffs[0]["webhook_secret"] == "generated"
    assert diffs[1] == {"webhook_secret": "rotated"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "other"}, "model"),
        ({"rotate_webhook_secret": True}, "rotate_webhook_secret"),
        ({"rotate_webhook_secret": "yes"}, "rotate_webhook_secret"),
        ({"enabled": None}, "enabled"),
        ({"segment": {"plan": 1, "country": 2}}, "segment"),
        ({"id": 5}, "id"),
    ],
)
def test_patch_rule__hostile_body__400_and_no_event(world, manager, body, field):
    # When
    response = patch(manager, f"/api/v1/rules/{world['rule']}", body)
    # Then
    assert response.status_code == 400
    assert field in [d.get("field") for d in response.json()["error"]["details"]]
    assert RuleEvent.objects.count() == 1


@pytest.mark.parametrize("rule_id", ["0", "abc", "1e3", "9" * 40, "-1", "%00"])
def test_rule__unknown_or_malformed_id__404(world, manager, rule_id):
    # When
    got = manager.get(f"/api/v1/rules/{rule_id}")
    changed = patch(manager, f"/api/v1/rules/{rule_id}", {"threshold": 0.1})
    # Then
    assert (got.status_code, changed.status_code) == (404, 404)


def test_list_rules__paged__every_rule_once_and_constant_queries(churn, manager):
    # Given: 5 rules
    for number in range(5):
        make_rule(name=f"rule-{number}")
    # When: pages of 2
    seen: list[str] = []
    cursor = None
    counts = []
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        with CaptureQueriesContext(connection) as queries:
            page = manager.get(f"/api/v1/rules?limit=2{suffix}").json()
        counts.append(len(queries))
        seen.extend(rule["name"] for rule in page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then
    assert seen == [f"rule-{number}" for number in range(5)]
    assert len(set(counts)) == 1


@pytest.mark.parametrize(
    "query", ["enabled=maybe", "limit=0", "limit=abc", "cursor=%%%", "cursor=WzFd"]
)
def test_list_rules__bad_parameters__400(churn, manager, query):
    assert manager.get(f"/api/v1/rules?{query}").status_code == 400


# --- alerts ---


def test_alerts__list_acknowledge_and_filter__acknowledgement_recorded_once(world, manager):
    # When
    listed = manager.get("/api/v1/alerts").json()
    first = post(manager, f"/api/v1/alerts/{world['alert']}/acknowledge", {"note": "on it"})
    second = post(manager, f"/api/v1/alerts/{world['alert']}/acknowledge")
    # Then
    assert [alert["id"] for alert in listed["results"]] == [world["alert"]]
    assert listed["results"][0]["acknowledged"] is False
    assert listed["results"][0]["retraining_job"] == world["job"]
    assert (first.status_code, second.status_code) == (200, 200)
    body = second.json()
    assert (body["acknowledged"], body["acknowledgement_note"]) == (True, "on it")
    assert body["acknowledged_by"].startswith("api_key:")
    assert AlertAcknowledgement.objects.count() == 1
    unacknowledged = manager.get("/api/v1/alerts?acknowledged=false").json()["results"]
    acknowledged = manager.get("/api/v1/alerts?acknowledged=true").json()["results"]
    assert (len(unacknowledged), len(acknowledged)) == (0, 1)
    other_rule = manager.get(f"/api/v1/alerts?rule={world['rule'] + 1}").json()["results"]
    assert other_rule == []


def test_alerts__list__constant_queries_whatever_the_number(world, manager):
    # Given
    rule = Rule.objects.get()
    with CaptureQueriesContext(connection) as one:
        manager.get("/api/v1/alerts")
    for _ in range(5):
        raise_alert(rule)
    post(manager, f"/api/v1/alerts/{world['alert']}/acknowledge")
    # When
    with CaptureQueriesContext(connection) as six:
        response = manager.get("/api/v1/alerts")
    # Then
    assert len(response.json()["results"]) == 6
    assert len(six) == len(one)


@pytest.mark.parametrize(
    "query", ["rule=abc", "rule=-1", "acknowledged=1", "limit=1001", "cursor=eyJ4IjoxfQ"]
)
def test_alerts__bad_parameters__400(world, manager, query):
    assert manager.get(f"/api/v1/alerts?{query}").status_code == 400


@pytest.mark.parametrize(
    "body", [[1], "note", {"note": 5}, {"note": "x" * 1025}, {"other": 1}, {"note": "a\x00"}]
)
def test_acknowledge__hostile_body__400_and_not_acknowledged(world, manager, body):
    # When
    response = post(manager, f"/api/v1/alerts/{world['alert']}/acknowledge", body)
    # Then
    assert response.status_code == 400
    assert AlertAcknowledgement.objects.count() == 0


@pytest.mark.parametrize("alert_id", [MISSING, "not-a-uuid", "1" * 500])
def test_acknowledge__unknown_alert__404(world, manager, alert_id):
    assert post(manager, f"/api/v1/alerts/{alert_id}/acknowledge").status_code == 404


# --- retraining jobs ---


def test_jobs__list_and_filters__job_with_what_fired_it(world, reader):
    # When
    everything = reader.get("/api/v1/retraining-jobs").json()["results"]
    queued = reader.get("/api/v1/retraining-jobs?status=queued&model=churn").json()["results"]
    running = reader.get("/api/v1/retraining-jobs?status=running").json()["results"]
    other = reader.get("/api/v1/retraining-jobs?model=other").json()["results"]
    # Then
    assert [job["id"] for job in everything] == [world["job"]]
    job = everything[0]
    assert (job["model"], job["rule"], job["status"], job["observed_value"]) == (
        "churn",
        world["rule"],
        "queued",
        0.5,
    )
    assert (job["threshold"], job["window"], job["segment"], job["alert"]) == (
        0.8,
        "2h",
        {"country": "DE"},
        world["alert"],
    )
    assert (len(queued), len(running), len(other)) == (1, 0, 0)


def test_jobs__list__constant_queries_whatever_the_number(world, reader):
    # Given
    with CaptureQueriesContext(connection) as one:
        reader.get("/api/v1/retraining-jobs")
    rule = Rule.objects.get()
    for days in range(1, 5):
        created = NOW + timedelta(days=days)
        queued_job(rule, created_at=created, blocks_until=created + timedelta(hours=6))
    # When
    with CaptureQueriesContext(connection) as five:
        response = reader.get("/api/v1/retraining-jobs")
    # Then
    assert len(response.json()["results"]) == 5
    assert len(five) == len(one)


@pytest.mark.parametrize("query", ["status=done", "status=", "limit=-5", "cursor=Zm9v"])
def test_jobs__bad_parameters__400_or_ignored(world, reader, query):
    response = reader.get(f"/api/v1/retraining-jobs?{query}")
    assert response.status_code == (200 if query == "status=" else 400)


def test_external_trainer__claim_complete__job_succeeded_and_version_registered(world, manager):
    # When
    claimed = post(manager, f"/api/v1/retraining-jobs/{world['job']}/claim")
    again = post(manager, f"/api/v1/retraining-jobs/{world['job']}/claim")
    done = post(
        manager,
        f"/api/v1/retraining-jobs/{world['job']}/complete",
        {"version": "5", "metrics": {"auc": 0.91}, "features": [{"name": "tenure_days"}]},
    )
    # Then
    assert claimed.status_code == 200
    assert (claimed.json()["status"], claimed.json()["attempts"]) == ("running", 1)
    assert claimed.json()["lease_expires_at"] is not None
    assert again.status_code == 409
    assert done.status_code == 200, done.json()
    body = done.json()
    assert (body["status"], body["result_version"]) == ("succeeded", "5")
    assert [entry["type"] for entry in body["history"]] == [
        "retraining_job_started",
        "retraining_job_succeeded",
    ]
    version = ModelVersion.objects.get(model__name="churn", version="5")
    assert version.metrics == {"auc": 0.91}


def test_external_trainer__claim_fail__job_failed_with_the_error(world, manager):
    # Given
    post(manager, f"/api/v1/retraining-jobs/{world['job']}/claim")
    # When
    response = post(
        manager, f"/api/v1/retraining-jobs/{world['job']}/fail", {"error": "OOM on the GPU"}
    )
    # Then
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]) == ("failed", "OOM on the GPU")


def test_external_trainer__complete_without_claim__409_and_nothing_registered(world, manager):
    # When
    response = post(manager, f"/api/v1/retraining-jobs/{world['job']}/complete", {"version": "5"})
    # Then
    assert response.status_code == 409
    assert not ModelVersion.objects.filter(version="5").exists()


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"version": "bad version!"},
        {"version": "5", "metrics": {"auc": "high"}},
        {"version": "5", "metrics": [1]},
        {"version": "5", "artifact_sha256": "xyz"},
        {"version": "5", "unknown": 1},
        {"version": 5},
    ],
)
def test_external_trainer__complete_hostile_body__400_and_job_still_running(world, manager, body):
    # Given
    post(manager, f"/api/v1/retraining-jobs/{world['job']}/claim")
    # When
    response = post(manager, f"/api/v1/retraining-jobs/{world['job']}/complete", body)
    # Then
    assert response.status_code == 400, response.json()
    assert RetrainingJob.objects.get().status == JobStatus.RUNNING
    assert ModelVersion.objects.count() == 2


@pytest.mark.parametrize(
    "body",
    [[], {}, {"error": ""}, {"error": 5}, {"error": "x", "retry": "yes"}, {"error": "x", "y": 1}],
)
def test_external_trainer__fail_hostile_body__400_and_job_still_running(world, manager, body):
    # Given
    post(manager, f"/api/v1/retraining-jobs/{world['job']}/claim")
    # When
    response = post(manager, f"/api/v1/retraining-jobs/{world['job']}/fail", body)
    # Then
    assert response.status_code == 400
    assert RetrainingJob.objects.get().status == JobStatus.RUNNING


@pytest.mark.parametrize("action", ["", "/claim", "/complete", "/fail"])
@pytest.mark.parametrize("job_id", [MISSING, "nope", "0" * 300])
def test_job__unknown_id__404(world, manager, action, job_id):
    # When
    method = "GET" if action == "" else "POST"
    body = {"version": "5"} if action == "/complete" else {"error": "x"}
    response = call(manager, method, f"/api/v1/retraining-jobs/{job_id}{action}", body)
    # Then
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/rules/{rule}"),
        ("PUT", "/api/v1/rules/{rule}"),
        ("DELETE", "/api/v1/retraining-jobs/{job}"),
        ("PATCH", "/api/v1/retraining-jobs/{job}"),
        ("GET", "/api/v1/alerts/{alert}/acknowledge"),
    ],
)
def test_endpoint__method_not_offered__405(world, manager, method, path):
    assert call(manager, method, path.format(**world)).status_code == 405

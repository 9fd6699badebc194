"""Rules through the services and the admin: validation, events, secrets, the event feed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from apps.core.errors import ValidationFailed
from apps.events.models import ImmutableEventError
from apps.monitoring import services
from apps.monitoring.models import Alert, AlertAcknowledgement, Rule, RuleEvent
from apps.monitoring.validation import (
    RuleSpec,
    format_duration,
    parse_duration,
    parse_rule,
)
from tests.monitoring.conftest import ACTOR, RULE, make_churn, make_rule
from tests.monitoring.test_notifications import raise_alert

# --- pure parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("6h", 21600), ("2d", 172800), (" 3h ", 10800), ("1 h", 3600), ("0m", 0)],
)
def test_parse_duration__api_spelling__seconds(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "1", "1s", "1.5h", "-1h", "1hh", "1h1", "٣h"])
def test_parse_duration__anything_else__value_error(text):
    with pytest.raises(ValueError, match="Write a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["366d", "9999999d", "99999999999d", "9" * 5000 + "m"])
def test_parse_duration__beyond_the_longest_cooldown__value_error_with_the_range(text):
    with pytest.raises(ValueError, match=r"^A duration here is from 0m to 365d\.$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(3600, "1h"), (86400, "1d"), (5400, "90m"), (90000, "25h")]
)
def test_format_duration__any__shortest_exact_unit(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


def test_parse_rule__segment_value_number_or_boolean__kept_as_its_json_text():
    # When
    numeric, _ = parse_rule({**RULE, "segment": {"plan": 3.0}}, allow_private=False)
    boolean, _ = parse_rule({**RULE, "segment": {"plan": True}}, allow_private=False)
    # Then
    assert (numeric.segment, boolean.segment) == (("plan", "3"), ("plan", "true"))


def test_parse_rule__patch_over_a_spec__only_given_fields_change():
    # Given
    base, _ = parse_rule(RULE, allow_private=False)
    # When
    changed, rotate = parse_rule(
        {"threshold": 0.5, "segment": None}, base=base, allow_private=False
    )
    # Then
    assert changed == RuleSpec(**{**base.__dict__, "threshold": 0.5, "segment": None})
    assert rotate is False


# --- services ------------------------------------------------------------------------------------


def test_rule_create__valid__rule_and_one_created_event_with_full_state(churn):
    # When
    rule, secret = make_rule()
    # Then
    assert secret is None
    stored = Rule.objects.get()
    assert (stored.segment_attribute, stored.segment_value, stored.window) == (
        "country",
        "DE",
        timedelta(hours=2),
    )
    event = RuleEvent.objects.get()
    assert (event.type, event.actor, event.rule_id) == ("rule_created", ACTOR, rule.pk)
    assert event.state["segment"] == {"country": "DE"}
    assert event.state["cooldown"] == "6h"
    assert set(event.diff) >= {"threshold", "metric", "segment"}


def test_rule_create__invalid__validation_failed_and_nothing_stored(churn):
    # Given
    spec, _ = parse_rule({**RULE, "segment": {"device": "ios"}}, allow_private=False)
    # When / Then
    with pytest.raises(ValidationFailed) as raised:
        services.rule_create(spec=spec, actor=ACTOR)
    assert raised.value.details == [
        {
            "field": "segment.device",
            "message": "'device' is not a segment attribute of model 'churn' "
            "(its segment attributes: country, plan).",
        }
    ]
    assert (Rule.objects.count(), RuleEvent.objects.count()) == (0, 0)


def test_rule_update__nothing_changes__no_event(churn):
    # Given
    rule, _ = make_rule()
    spec, _ = parse_rule(RULE, allow_private=False)
    # When
    services.rule_update(rule_id=rule.pk, spec=spec, actor=ACTOR)
    # Then
    assert RuleEvent.objects.count() == 1


def test_rule_set_enabled__disable_then_enable__two_events_typed_as_such(churn):
    # Given
    rule, _ = make_rule()
    # When
    services.rule_set_enabled(rule_id=rule.pk, enabled=False, actor=ACTOR)
    services.rule_set_enabled(rule_id=rule.pk, enabled=False, actor=ACTOR)
    services.rule_set_enabled(rule_id=rule.pk, enabled=True, actor="user:bob")
    # Then
    events = list(RuleEvent.objects.order_by("seq").values_list("type", "actor"))
    assert events == [
        ("rule_created", ACTOR),
        ("rule_disabled", ACTOR),
        ("rule_enabled", "user:bob"),
    ]


def test_rule_update__webhook_removed__secret_dropped(churn):
    # Given
    rule, secret = make_rule(webhook_url="https://example.com/hook")
    assert secret is not None
    spec, _ = parse_rule(RULE, allow_private=False)
    # When
    services.rule_update(rule_id=rule.pk, spec=spec, actor=ACTOR)
    # Then
    rule.refresh_from_db()
    assert (rule.webhook_url, rule.webhook_secret) == ("", "")


def test_events__rule_event_and_alert__immutable(churn):
    # Given
    rule, _ = make_rule()
    alert = raise_alert(rule)
    event = RuleEvent.objects.get()
    # When / Then
    for row in (event, alert):
        with pytest.raises(ImmutableEventError):
            row.save()
        with pytest.raises(ImmutableEventError):
            row.delete()


# Committed rows: the feed's horizon (a snapshot's xmax) can exclude the rows of a still
# open transaction, such as a non-transactional test's own.
@pytest.mark.django_db(transaction=True)
def test_feed__rule_alert_and_acknowledgement__each_in_the_event_feed(reader):
    # Given
    make_churn()
    rule, _ = make_rule()
    alert = raise_alert(rule)
    services.alert_acknowledge(alert_id=alert.pk, actor=ACTOR, note="seen")
    # When
    items = reader.get("/api/v1/events?limit=1000").json()["results"]
    # Then
    types = [item["type"] for item in items]
    assert {"rule_created", "alert", "alert_acknowledged"} <= set(types)
    shown = next(item["event"] for item in items if item["type"] == "alert")
    assert (shown["id"], shown["observed_value"], shown["rule"]) == (str(alert.pk), 0.5, rule.pk)


def test_alert_acknowledge__twice__one_acknowledgement_the_first(churn):
    # Given
    rule, _ = make_rule()
    alert = raise_alert(rule)
    # When
    services.alert_acknowledge(alert_id=alert.pk, actor="user:a", note="first")
    again = services.alert_acknowledge(alert_id=alert.pk, actor="user:b", note="second")
    # Then
    assert again.acknowledgement.actor == "user:a"
    assert AlertAcknowledgement.objects.count() == 1


# --- admin ---------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, db):
    user = User.objects.create_superuser("alice", "alice@example.com", "pw-alice-123")
    client.force_login(user)
    return client


ADMIN_FORM = {
    "name": "admin-rule",
    "metric": "accuracy",
    "segment_attribute": "country",
    "segment_value": "FR",
    "window": "3h",
    "comparator": "lt",
    "threshold": "0.75",
    "min_samples": "50",
    "cooldown": "12h",
    "action": "alert",
    "enabled": "on",
    "webhook_url": "https://example.com/hook",
}


def test_admin__add_rule__created_through_the_service_and_secret_shown_once(churn, staff):
    # When
    response = staff.post(
        "/admin/monitoring/rule/add/", {**ADMIN_FORM, "model": churn.pk}, follow=True
    )
    # Then
    assert response.status_code == 200
    rule = Rule.objects.get()
    assert (rule.window, rule.cooldown, rule.segment_value) == (
        timedelta(hours=3),
        timedelta(hours=12),
        "FR",
    )
    assert rule.webhook_secret.startswith("whsec_")
    assert rule.webhook_secret in response.content.decode()
    event = RuleEvent.objects.get()
    assert (event.type, event.actor) == ("rule_created", "user:alice")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": "30m"}, "A window is from 1h"),
        ({"segment_attribute": "device"}, "is not a segment attribute"),
        ({"webhook_url": "http://127.0.0.1/hook"}, "Private, loopback and link-local"),
        ({"action": "alert", "open_canary": "on"}, "action retrain"),
        ({"threshold": "1e308"}, "Out of range: must be a number from -1e15 to 1e15."),
        ({"threshold": "-1e16"}, "Out of range: must be a number from -1e15 to 1e15."),
        ({"window": "99999999999d"}, "A duration here is from 0m to 365d."),
        ({"cooldown": "99999999999d"}, "A duration here is from 0m to 365d."),
    ],
)
def test_admin__add_invalid_rule__form_errors_and_nothing_stored(churn, staff, change, message):
    # When
    response = staff.post(
        "/admin/monitoring/rule/add/", {**ADMIN_FORM, "model": churn.pk, **change}
    )
    # Then
    assert response.status_code == 200
    assert message in response.content.decode()
    assert (Rule.objects.count(), RuleEvent.objects.count()) == (0, 0)


def test_admin__edit_and_disable_action__events_with_the_user_as_actor(churn, staff):
    # Given
    rule, _ = make_rule()
    page = staff.get(f"/admin/monitoring/rule/{rule.pk}/change/")
    assert page.status_code == 200 and "2h" in page.content.decode()
    # When
    edited = staff.post(
        f"/admin/monitoring/rule/{rule.pk}/change/",
        {**ADMIN_FORM, "name": "de-accuracy", "segment_value": "DE", "action": "retrain"},
    )
    staff.post(
        "/admin/monitoring/rule/",
        {"action": "disable", "_selected_action": [rule.pk]},
    )
    # Then
    assert edited.status_code == 302
    events = list(RuleEvent.objects.order_by("seq").values_list("type", "actor"))
    assert events == [
        ("rule_created", ACTOR),
        ("rule_updated", "user:alice"),
        ("rule_disabled", "user:alice"),
    ]
    rule.refresh_from_db()
    assert (rule.window, rule.enabled) == (timedelta(hours=3), False)


def test_admin__acknowledge_action__acknowledgement_event_by_the_user(churn, staff):
    # Given
    rule, _ = make_rule()
    alert = raise_alert(rule)
    # When
    staff.post(
        "/admin/monitoring/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]}
    )
    # Then
    assert AlertAcknowledgement.objects.get().actor == "user:alice"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/monitoring/rule/",
        "/admin/monitoring/alert/",
        "/admin/monitoring/ruleevent/",
        "/admin/monitoring/alertacknowledgement/",
        "/admin/monitoring/retrainingjob/",
        "/admin/monitoring/retrainingjobevent/",
        "/admin/monitoring/webhookdelivery/",
    ],
)
def test_admin__every_list__renders(churn, staff, path):
    # Given
    rule, _ = make_rule()
    raise_alert(rule)
    # When / Then
    assert staff.get(path).status_code == 200
    assert Alert.objects.count() == 1

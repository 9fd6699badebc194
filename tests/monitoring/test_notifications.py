"""Webhooks: signed deliveries to a local HTTP server, refusals, retries and the delivery log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.monitoring import services
from apps.monitoring.models import Alert, DeliveryOutcome, Rule, WebhookDelivery
from apps.monitoring.tasks import deliver_webhook
from tests.monitoring.conftest import NOW, make_rule


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it gets and answers `status`."""

    url: str = ""
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length", "0"))
            found.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
            )
            self.send_response(found.status)
            if 300 <= found.status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/kaizen?team=ml"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def raise_alert(rule: Rule) -> Alert:
    """An alert of `rule` as evaluation appends it (set-up through the ORM)."""
    start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return Alert.objects.create(
        rule=rule,
        model=rule.model,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=rule.threshold,
        observed_value=0.5,
        sample_size=250,
        window=rule.window,
        window_start=start,
        window_end=start + rule.window,
        segment={"country": "DE"},
        action=rule.action,
        occurred_at=NOW,
    )


@pytest.fixture
def hooked(churn, receiver, settings) -> tuple[Rule, str, Alert]:
    settings.KAIZEN_WEBHOOK_ALLOW_PRIVATE = True
    rule, secret = make_rule(action="alert", webhook_url=receiver.url)
    assert secret is not None
    return rule, secret, raise_alert(rule)


def test_deliver__receiver_answers_200__signed_payload_delivered_and_logged(hooked, receiver):
    # Given
    rule, secret, alert = hooked
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # Then: one POST, its signature verified here with hmac, independently of Kaizen
    assert (result.outcome, result.retry_in) == ("delivered", None)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    headers = request["headers"]
    timestamp = headers["X-Kaizen-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["X-Kaizen-Signature"], f"sha256={expected}")
    assert (headers["X-Kaizen-Event"], headers["X-Kaizen-Delivery"]) == ("alert", str(alert.pk))
    assert headers["Content-Type"] == "application/json"
    assert request["path"] == "/hooks/kaizen?team=ml"
    body = json.loads(request["body"])
    assert body["type"] == "alert"
    assert (body["id"], body["rule"], body["rule_name"], body["model"]) == (
        str(alert.pk),
        rule.pk,
        "de-accuracy",
        "churn",
    )
    assert (body["observed_value"], body["threshold"], body["sample_size"]) == (0.5, 0.8, 250)
    assert (body["segment"], body["window"], body["comparator"]) == ({"country": "DE"}, "2h", "lt")
    log = WebhookDelivery.objects.get()
    assert (log.attempt, log.outcome, log.status_code, log.error, log.url) == (
        1,
        DeliveryOutcome.DELIVERED,
        200,
        "",
        receiver.url,
    )


def test_deliver__signature_under_another_secret__does_not_verify(hooked, receiver):
    # Given
    _, secret, alert = hooked
    services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    request = receiver.requests[0]
    timestamp = request["headers"]["X-Kaizen-Timestamp"].encode()
    # When
    forged = hmac.new(b"not-the-secret", timestamp + b"." + request["body"], hashlib.sha256)
    # Then
    assert request["headers"]["X-Kaizen-Signature"] != f"sha256={forged.hexdigest()}"


def test_deliver__already_delivered__second_run_sends_nothing(hooked, receiver):
    # Given
    _, _, alert = hooked
    services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # When
    again = services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # Then
    assert again.outcome == "skipped"
    assert (len(receiver.requests), WebhookDelivery.objects.count()) == (1, 1)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_deliver__private_targets_not_allowed__refused_and_nothing_sent(
    hooked, receiver, settings, host
):
    # Given: the setting turned off after the rule was made (or a name resolving to loopback)
    rule, _, alert = hooked
    Rule.objects.filter(pk=rule.pk).update(webhook_url=receiver.url.replace("127.0.0.1", host))
    settings.KAIZEN_WEBHOOK_ALLOW_PRIVATE = False
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # Then
    assert (result.outcome, result.retry_in) == ("refused", None)
    assert receiver.requests == []
    log = WebhookDelivery.objects.get()
    assert (log.outcome, log.status_code) == (DeliveryOutcome.REFUSED, None)
    assert "127.0.0.1" in log.error and "KAIZEN_WEBHOOK_ALLOW_PRIVATE" in log.error


@pytest.mark.parametrize(
    ("status", "outcome", "retry_in"),
    [
        (500, "retrying", 30),
        (503, "retrying", 30),
        (429, "retrying", 30),
        (404, "failed", None),
        (302, "failed", None),
    ],
)
def test_deliver__receiver_fails__transient_retried_with_backoff_others_final(
    hooked, receiver, settings, status, outcome, retry_in
):
    # Given
    settings.KAIZEN_WEBHOOK_BACKOFF_SECONDS = 30
    receiver.status = status
    _, _, alert = hooked
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # Then
    assert (result.outcome, result.retry_in) == (outcome, retry_in)
    log = WebhookDelivery.objects.get()
    assert (log.outcome, log.status_code) == (outcome, status)
    assert len(receiver.requests) == 1  # a redirect is not followed


def test_deliver__nothing_listens__transient_with_the_network_error_logged(hooked, settings):
    # Given: port 9 (discard) has no listener here
    rule, _, alert = hooked
    Rule.objects.filter(pk=rule.pk).update(webhook_url="http://127.0.0.1:9/hook")
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=2)
    # Then: backoff doubles per attempt
    assert (result.outcome, result.retry_in) == ("retrying", 60)
    log = WebhookDelivery.objects.get()
    assert (log.attempt, log.outcome, log.status_code) == (2, DeliveryOutcome.RETRYING, None)
    assert log.error.startswith("ConnectionRefusedError")


def test_task__receiver_keeps_failing__retried_until_max_attempts_then_failed(
    hooked, receiver, settings
):
    # Given: three attempts allowed, a receiver answering 500
    settings.KAIZEN_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.status = 500
    _, _, alert = hooked
    # When: the task runs in this process (its retries too)
    deliver_webhook.apply(args=(str(alert.pk),))
    # Then
    log = list(WebhookDelivery.objects.order_by("attempt").values_list("attempt", "outcome"))
    assert log == [(1, "retrying"), (2, "retrying"), (3, "failed")]
    assert len(receiver.requests) == 3


def test_task__receiver_recovers__delivered_on_the_second_attempt(hooked, receiver):
    # Given: a receiver that fails once
    _, _, alert = hooked
    receiver.status = 503
    services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    receiver.status = 200
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=2)
    # Then
    assert result.outcome == "delivered"
    log = list(WebhookDelivery.objects.order_by("attempt").values_list("attempt", "outcome"))
    assert log == [(1, "retrying"), (2, "delivered")]


def test_deliver__rule_lost_its_webhook__skipped(hooked, receiver):
    # Given
    rule, _, alert = hooked
    Rule.objects.filter(pk=rule.pk).update(webhook_url="", webhook_secret="")
    # When
    result = services.webhook_deliver(alert_id=str(alert.pk), attempt=1)
    # Then
    assert result.outcome == "skipped"
    assert (receiver.requests, WebhookDelivery.objects.count()) == ([], 0)


def test_sign__known_vector__hmac_sha256_of_timestamp_dot_body():
    # Given / When
    signature = services.sign(secret="whsec_test", timestamp=1700000000, body=b'{"a":1}')
    # Then
    expected = hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"


def test_resend_lost__alerts_never_attempted__sent_again_until_attempted(hooked, broker):
    # Given: two alerts raised at NOW whose delivery messages were lost
    rule, _, first_alert = hooked
    second_alert = raise_alert(rule)
    # When: the recovery runs 4 minutes later, 6 minutes later, and after attempts exist
    too_young = services.webhooks_resend_lost(now=NOW + timedelta(minutes=4))
    lost = services.webhooks_resend_lost(now=NOW + timedelta(minutes=6))
    for alert in (first_alert, second_alert):
        WebhookDelivery.objects.create(
            alert=alert, rule=rule, url=rule.webhook_url, attempt=1, outcome="retrying"
        )
    attempted = services.webhooks_resend_lost(now=NOW + timedelta(minutes=7))
    # Then
    assert (too_young, lost, attempted) == (0, 2, 0)
    assert broker.llen("notifications") == 2

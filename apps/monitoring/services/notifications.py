"""Webhook delivery of alerts: a signed JSON POST, one logged row per attempt.

The body is the alert as GET /api/v1/alerts shows it, with "type": "alert". Headers:
`X-Kaizen-Event: alert`, `X-Kaizen-Delivery: <alert id>` (the same on every attempt, so a
receiver can drop repeats), `X-Kaizen-Timestamp: <unix seconds>` and
`X-Kaizen-Signature: sha256=<hex>`, the HMAC-SHA256 under the rule's secret of
`<timestamp>.<body>`; a receiver recomputes it and rejects old timestamps.

The target's host is resolved and every address checked: private, loopback, link-local,
multicast and reserved addresses are refused unless KAIZEN_WEBHOOK_ALLOW_PRIVATE is on. The
connection then goes to a checked address (not a second lookup), so DNS cannot swap in
another between check and use. Redirects are not followed. Network errors, 408, 429 and
5xx are transient and retried with backoff up to KAIZEN_WEBHOOK_MAX_ATTEMPTS; other answers
are final.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson
from django.conf import settings
from django.utils import timezone

from apps.core import backoff
from apps.monitoring import selectors
from apps.monitoring.models import Alert, DeliveryOutcome, WebhookDelivery
from apps.monitoring.services.dispatch import send
from apps.monitoring.validation import is_public_address

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kaizen-Signature"
TIMESTAMP_HEADER = "X-Kaizen-Timestamp"
USER_AGENT = "Kaizen-Webhook/1"
TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_BACKOFF_SECONDS = 3600
RESPONSE_READ_LIMIT = 64 * 1024
DELIVER_TASK = "monitoring.notifications.deliver"
# An alert with no delivery attempt this long after it was raised lost its message (a
# broker that was down); alerts older than a day are not sent any more.
RESEND_AFTER = timedelta(minutes=5)
RESEND_WITHIN = timedelta(days=1)
RESEND_BATCH = 100


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 under `secret` of `<timestamp>.<body>`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_max_attempts() -> int:
    return max(1, int(settings.KAIZEN_WEBHOOK_MAX_ATTEMPTS))


def webhook_backoff(attempt: int) -> int:
    base = max(0, int(settings.KAIZEN_WEBHOOK_BACKOFF_SECONDS))
    return int(backoff.backoff_seconds(attempt, base=base, cap=MAX_BACKOFF_SECONDS))


class TargetRefused(Exception):
    """The webhook's host resolves to an address webhooks may not reach."""


def resolve_target(
    host: str, port: int, *, allow_private: bool
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address `host` resolves to, all checked; TargetRefused if any is not allowed.

    socket.gaierror (a failed lookup) propagates: it is transient.
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = []
    for _, _, _, _, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(f"{host} has no address")
    refused = [str(a) for a in addresses if not allow_private and not is_public_address(a)]
    if refused:
        raise TargetRefused(
            f"{host} resolves to {', '.join(refused)}: private, loopback and link-local "
            "targets are refused (KAIZEN_WEBHOOK_ALLOW_PRIVATE allows them)."
        )
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a given address, whatever the Host header says."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port or 80), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address, the certificate checked against the URL's host name."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port or 443), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _post(parts: SplitResult, address: str, body: bytes, headers: dict[str, str]) -> int:
    host = parts.hostname or ""
    timeout = float(settings.KAIZEN_WEBHOOK_TIMEOUT_SECONDS)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPSConnection(
            host, parts.port or 443, address=address, timeout=timeout
        )
    else:
        connection = _PinnedHTTPConnection(host, parts.port or 80, address=address, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(RESPONSE_READ_LIMIT)
        return int(response.status)
    finally:
        connection.close()


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str
    # Seconds until the next attempt, when one follows.
    retry_in: int | None = None


def _headers(*, secret: str, alert_id: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Kaizen-Event": "alert",
        "X-Kaizen-Delivery": alert_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret=secret, timestamp=timestamp, body=body),
    }


def _attempt(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int | None, str]:
    """(outcome without retries, status code, error) of one POST."""
    parts = urlsplit(url)
    allow_private = bool(settings.KAIZEN_WEBHOOK_ALLOW_PRIVATE)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolve_target(parts.hostname or "", port, allow_private=allow_private)
        status = _post(parts, str(addresses[0]), body, headers)
    except TargetRefused as error:
        return DeliveryOutcome.REFUSED, None, str(error)
    except (OSError, http.client.HTTPException, ValueError) as error:
        return DeliveryOutcome.RETRYING, None, f"{type(error).__name__}: {error}"
    if 200 <= status < 300:
        return DeliveryOutcome.DELIVERED, status, ""
    if status in TRANSIENT_STATUSES or status >= 500:
        return DeliveryOutcome.RETRYING, status, f"HTTP {status}"
    if 300 <= status < 400:
        return DeliveryOutcome.FAILED, status, f"HTTP {status}: redirects are not followed"
    return DeliveryOutcome.FAILED, status, f"HTTP {status}"


def webhook_deliver(*, alert_id: str, attempt: int) -> DeliveryResult:
    """Attempt `attempt` at POSTing the alert to its rule's webhook; logged in any case.

    Safe to run twice: an alert already delivered, gone, or whose rule has no webhook any
    more is skipped.
    """
    alert = selectors.alert_list().filter(pk=alert_id).first()
    if alert is None or not alert.rule.webhook_url or not alert.rule.webhook_secret:
        return DeliveryResult("skipped")
    if WebhookDelivery.objects.filter(alert=alert, outcome=DeliveryOutcome.DELIVERED).exists():
        return DeliveryResult("skipped")
    rule = alert.rule
    payload: dict[str, Any] = {"type": "alert", **selectors.alert_as_dict(alert)}
    body = orjson.dumps(payload)
    headers = _headers(secret=rule.webhook_secret, alert_id=str(alert.pk), body=body)
    started = time.monotonic()
    outcome, status, error = _attempt(rule.webhook_url, body, headers)
    elapsed = (time.monotonic() - started) * 1000
    retry_in = None
    if outcome == DeliveryOutcome.RETRYING:
        if attempt < webhook_max_attempts():
            retry_in = webhook_backoff(attempt)
        else:
            outcome = DeliveryOutcome.FAILED
    WebhookDelivery.objects.create(
        alert=alert,
        rule=rule,
        url=rule.webhook_url,
        attempt=attempt,
        outcome=outcome,
        status_code=status,
        error=error[:2048],
        duration_ms=elapsed,
    )
    log = logger.info if outcome == DeliveryOutcome.DELIVERED else logger.warning
    log(
        "webhook.attempted",
        extra={"alert": str(alert.pk), "attempt": attempt, "outcome": outcome, "status": status},
    )
    return DeliveryResult(str(outcome), retry_in)


def webhooks_resend_lost(*, now: datetime | None = None, limit: int = RESEND_BATCH) -> int:
    """Send again the alerts of webhook rules that never got an attempt (lost messages).

    Safe to run twice: the delivery task skips an alert already delivered.
    """
    at = now or timezone.now()
    lost = list(
        Alert.objects.filter(
            rule__webhook_url__gt="",
            occurred_at__gte=at - RESEND_WITHIN,
            occurred_at__lt=at - RESEND_AFTER,
            deliveries__isnull=True,
        )
        .order_by("occurred_at")
        .values_list("id", flat=True)[:limit]
    )
    return sum(send(DELIVER_TASK, str(alert_id)) for alert_id in lost)

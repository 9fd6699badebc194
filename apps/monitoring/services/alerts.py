"""Acknowledging an alert: an AlertAcknowledgement event, at most one per alert.

An alert is an immutable event; its acknowledgement is another event pointing at it (not a
changed row), so the log keeps who saw what when. The one-to-one key makes a second
acknowledgement impossible; acknowledging again answers the first one (idempotent).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.monitoring import selectors
from apps.monitoring.models import Alert, AlertAcknowledgement

logger = logging.getLogger(__name__)


@transaction.atomic
def alert_acknowledge(*, alert_id: Any, actor: str, note: str = "") -> Alert:
    """Record that `actor` saw the alert; the alert with its (first) acknowledgement."""
    alert = selectors.alert_get(alert_id=alert_id)
    try:
        with transaction.atomic():
            AlertAcknowledgement.objects.create(
                alert=alert, actor=actor, note=note, occurred_at=timezone.now()
            )
    except IntegrityError:
        pass  # acknowledged before (or concurrently): the first acknowledgement stands
    else:
        logger.info("alert.acknowledged", extra={"alert": str(alert.pk), "actor": actor})
    return selectors.alert_get(alert_id=alert.pk)

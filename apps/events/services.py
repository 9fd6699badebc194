"""Writes of the event log app."""

from __future__ import annotations

from datetime import datetime

from django.core.cache import cache

from apps.events.selectors import HEARTBEAT_KEY


def heartbeat_record(*, at: datetime) -> None:
    cache.set(HEARTBEAT_KEY, at.isoformat(), timeout=None)

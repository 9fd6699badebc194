"""How each projection's folds are going (ProjectionHealth): window size, timings, failures.

Written in short statements outside the fold's transaction, so a trigger that finds the
projection busy, or a fold that failed and rolled back, records it at once.

Window size. A window holds `chunk` events, sized so that a fold takes about
KAIZEN_FOLD_TARGET_SECONDS at the rate the last full window was folded (a window that
found fewer events says nothing about the rate unless it was slow), moving at most 4× per
fold. A window that timed out is retried with a quarter of its events, down to MIN_CHUNK,
and that size becomes a ceiling, doubled after every CEILING_FOLDS full windows folded
under it: the cost of a fold need not be linear in its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from apps.analytics.models import ProjectionHealth
from apps.core.backoff import backoff_seconds, worth_logging
from apps.core.errors import describe_error

logger = logging.getLogger(__name__)

MIN_CHUNK = 1_000
MAX_CHUNK = 5_000_000
INITIAL_CHUNK = 100_000
GROWTH = 4
CEILING_FOLDS = 20
FAILURE_BACKOFF_SECONDS = 5
FAILURE_BACKOFF_MAX_SECONDS = 600


def fold_target_seconds() -> float:
    return max(0.1, float(settings.KAIZEN_FOLD_TARGET_SECONDS))


def fold_timeout_seconds() -> float:
    return max(1.0, float(settings.KAIZEN_FOLD_TIMEOUT_SECONDS))


def health_get(name: str) -> ProjectionHealth:
    health, _ = ProjectionHealth.objects.get_or_create(name=name, defaults={"chunk": INITIAL_CHUNK})
    return health


def next_chunk(*, chunk: int, events: int, seconds: float, target: float) -> int:
    """The next window's size after folding `events` of a `chunk`-event window in `seconds`."""
    if events < chunk and seconds <= target:
        return chunk
    rate = events / max(seconds, 1e-3)
    wanted = int(rate * target)
    wanted = max(chunk // GROWTH, min(chunk * GROWTH, wanted))
    return max(MIN_CHUNK, min(MAX_CHUNK, wanted))


def record_folded(
    name: str, *, events: int, seconds: float, chunk: int, adapt: bool, at: datetime
) -> None:
    """A fold committed: its timing, and the next window's size when it is adaptive."""
    changes: dict[str, object] = {
        "last_fold_seconds": seconds,
        "last_fold_events": events,
        "last_fold_at": at,
        "consecutive_failures": 0,
        "retry_at": None,
    }
    health = health_get(name)
    if adapt:
        size = next_chunk(chunk=chunk, events=events, seconds=seconds, target=fold_target_seconds())
        ceiling = health.chunk_ceiling
        if ceiling is not None and events >= chunk:
            under = health.folds_under_ceiling + 1
            if under >= CEILING_FOLDS:
                ceiling, under = (ceiling * 2 if ceiling * 2 < MAX_CHUNK else None), 0
            changes["chunk_ceiling"], changes["folds_under_ceiling"] = ceiling, under
        changes["chunk"] = size if ceiling is None else min(size, ceiling)
    ProjectionHealth.objects.filter(name=name).update(**changes)


def record_skipped(name: str) -> None:
    """A trigger found the projection being folded elsewhere and went on without it."""
    health_get(name)
    ProjectionHealth.objects.filter(name=name).update(skipped_triggers=F("skipped_triggers") + 1)
    logger.info("projection.skipped", extra={"projection": name, "reason": "busy"})


def record_timeout(name: str, *, events: int, seconds: float, window: str) -> int:
    """A window timed out and rolled back: the next one holds a quarter of its events."""
    health = health_get(name)
    chunk = max(MIN_CHUNK, min(health.chunk, events) // GROWTH)
    ProjectionHealth.objects.filter(name=name).update(
        chunk=chunk,
        chunk_ceiling=chunk,
        folds_under_ceiling=0,
        timeouts=F("timeouts") + 1,
        last_error_at=timezone.now(),
    )
    logger.warning(
        "projection.fold_timed_out",
        extra={
            "projection": name,
            "events": events,
            "seconds": round(seconds, 3),
            "window": window,
            "next_chunk": chunk,
        },
    )
    return chunk


@dataclass(frozen=True)
class Failure:
    attempts: int
    retry_at: datetime


def record_failed(name: str, *, error: BaseException, window: str) -> Failure:
    """A fold failed and rolled back: count it, back off, halve the window, log it."""
    health = health_get(name)
    attempts = health.consecutive_failures + 1
    now = timezone.now()
    retry_at = now + timedelta(
        seconds=backoff_seconds(
            attempts, base=FAILURE_BACKOFF_SECONDS, cap=FAILURE_BACKOFF_MAX_SECONDS
        )
    )
    ProjectionHealth.objects.filter(name=name).update(
        failures=F("failures") + 1,
        consecutive_failures=attempts,
        last_error=describe_error(error),
        last_error_at=now,
        failed_window=window[:200],
        retry_at=retry_at,
        chunk=max(MIN_CHUNK, health.chunk // 2),
    )
    extra = {
        "projection": name,
        "window": window,
        "attempts": attempts,
        "error": describe_error(error),
    }
    if worth_logging(attempts):
        logger.error("projection.fold_failed", extra=extra, exc_info=error)
    else:
        logger.warning("projection.fold_failed_again", extra=extra)
    return Failure(attempts=attempts, retry_at=retry_at)

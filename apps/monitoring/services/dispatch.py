"""Work for the workers, sent by task name once the transaction that asked for it commits.

Sending never fails the caller: a broker that is down is logged (`task.enqueue_failed`) and
the work is found again later (the recovery beat re-enqueues queued retraining jobs).
"""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def trainer_configured() -> bool:
    """Whether workers train (KAIZEN_TRAINER set) or leave jobs to external trainers."""
    return bool(settings.KAIZEN_TRAINER)


def send(task: str, *args: str, countdown: float | None = None) -> bool:
    """Send `task` now; False (logged) when the broker cannot take it."""
    from config.celery import app

    try:
        app.send_task(task, args=list(args), countdown=countdown)
    except Exception:  # any broker failure: logged, recovered later, never raised
        logger.exception("task.enqueue_failed", extra={"task": task, "arguments": list(args)})
        return False
    return True


def enqueue_on_commit(
    task: str, *args: str, countdown: float | None = None, only_with_trainer: bool = False
) -> None:
    """Send `task` when the current transaction commits (immediately outside one)."""
    if only_with_trainer and not trainer_configured():
        return
    transaction.on_commit(partial(send, task, *args, countdown=countdown))

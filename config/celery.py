"""The Celery app: every queue declared here, so `celery -A config worker -B` serves them all.

Beat schedules live in this one place (STYLE.md), each with why it runs when it does.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

AGGREGATION_INTERVAL = float(os.environ.get("KAIZEN_AGGREGATION_INTERVAL_SECONDS", "5"))

app = Celery("kaizen")
app.config_from_object("django.conf:settings", namespace="CELERY")

# default: short housekeeping; aggregation: projections (issue 5); retraining: trainer jobs,
# which can run for minutes and must not delay aggregation; notifications: webhooks.
# A module constant, so that reading it (config.launcher) does not load the settings.
QUEUE_NAMES = ("default", "aggregation", "retraining", "notifications")
app.conf.task_queues = tuple(Queue(name) for name in QUEUE_NAMES)
app.conf.task_default_queue = "default"
app.conf.task_routes = {
    "analytics.*": {"queue": "aggregation"},
    "monitoring.retraining.*": {"queue": "retraining"},
    "monitoring.notifications.*": {"queue": "notifications"},
}

app.conf.beat_schedule = {
    # Heartbeat: proves a worker consumes from the broker; /readyz reports its age as broker lag.
    "events-heartbeat": {"task": "events.heartbeat", "schedule": 10.0},
    # Fold new events into the projections (then evaluate rules) every few seconds; a run that
    # is not picked up before the next one is due expires instead of piling up behind it.
    "analytics-aggregate": {
        "task": "analytics.aggregate",
        "schedule": AGGREGATION_INTERVAL,
        "options": {"expires": AGGREGATION_INTERVAL},
    },
    # Retraining jobs whose lease expired (a killed worker, a vanished external trainer) go
    # back to the queue, and queued jobs whose message was lost are sent again; a minute is
    # small against leases of an hour.
    "monitoring-recover-jobs": {"task": "monitoring.jobs.recover", "schedule": 60.0},
    # Ramp steps come due on the hour scale; a minute late is nothing, and each run applies
    # every step that came due (runs are idempotent: an applied step is marked).
    "experiments-advance-ramps": {"task": "experiments.advance_ramps", "schedule": 60.0},
}

app.autodiscover_tasks()

"""Use cases of monitoring: rules, their evaluation, alerts, webhooks and retraining jobs."""

from apps.monitoring.services.alerts import alert_acknowledge
from apps.monitoring.services.canary import canary_open
from apps.monitoring.services.evaluation import (
    Evaluation,
    evaluation_window,
    rule_evaluate,
    rules_evaluate,
)
from apps.monitoring.services.notifications import (
    DeliveryResult,
    sign,
    webhook_deliver,
    webhooks_resend_lost,
)
from apps.monitoring.services.retraining import (
    JobNotHeld,
    PermanentTrainingError,
    RunResult,
    retraining_job_claim,
    retraining_job_complete,
    retraining_job_fail,
    retraining_job_run,
    retraining_jobs_recover,
)
from apps.monitoring.services.rules import (
    rule_check,
    rule_create,
    rule_set_enabled,
    rule_update,
    webhook_allow_private,
)

__all__ = [
    "DeliveryResult",
    "Evaluation",
    "JobNotHeld",
    "PermanentTrainingError",
    "RunResult",
    "alert_acknowledge",
    "canary_open",
    "evaluation_window",
    "retraining_job_claim",
    "retraining_job_complete",
    "retraining_job_fail",
    "retraining_job_run",
    "retraining_jobs_recover",
    "rule_check",
    "rule_create",
    "rule_evaluate",
    "rule_set_enabled",
    "rule_update",
    "rules_evaluate",
    "sign",
    "webhook_allow_private",
    "webhook_deliver",
    "webhooks_resend_lost",
]

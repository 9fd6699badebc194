"""Rules, the alerts they raise, webhook deliveries, and retraining jobs with their events.

A rule and a retraining job are current-state rows that change; every change appends an
immutable event (RuleEvent, RetrainingJobEvent) carrying the actor and the full state after
it (DESIGN.md principle 1). Alerts and their acknowledgements are events themselves. The
webhook delivery log is an operational record, one row per attempt.

"At most one job per rule per cooldown" is held by PostgreSQL: an exclusion constraint
refuses two jobs of one rule whose [created_at, blocks_until) ranges overlap, where
blocks_until is created_at plus the rule's cooldown when the job was opened.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeBoundary, RangeOperators
from django.db import models
from django.db.models.functions import Now

from apps.events.models import ChangeEvent, Event

MINIMUM_WINDOW = timedelta(hours=1)
MINIMUM_COOLDOWN = timedelta(minutes=1)


class Comparator(models.TextChoices):
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"


class Action(models.TextChoices):
    ALERT = "alert"
    RETRAIN = "retrain"


class Rule(models.Model):
    """A threshold on one performance metric of a model, optionally in one segment."""

    model = models.ForeignKey("registry.MLModel", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=50)
    # Both empty: the whole traffic; else one of the model's segment_attributes and a value.
    segment_attribute = models.CharField(max_length=100, blank=True)
    segment_value = models.CharField(max_length=1024, blank=True)
    window = models.DurationField()
    comparator = models.CharField(max_length=3, choices=Comparator.choices)
    threshold = models.FloatField()
    min_samples = models.PositiveIntegerField()
    cooldown = models.DurationField()
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.ALERT)
    enabled = models.BooleanField(default=True)
    webhook_url = models.CharField(max_length=2048, blank=True)
    # The HMAC key of this rule's webhook: shown once when generated; signing needs it in clear.
    webhook_secret = models.CharField(max_length=100, blank=True, editable=False)
    open_canary = models.BooleanField(default=False)
    created_by = models.CharField(max_length=200, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_by = models.CharField(max_length=200, editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="rule_unique_name_per_model"),
            models.CheckConstraint(
                condition=models.Q(window__gte=MINIMUM_WINDOW), name="rule_window_at_least_1h"
            ),
            models.CheckConstraint(
                condition=models.Q(cooldown__gte=MINIMUM_COOLDOWN),
                name="rule_cooldown_at_least_1m",
            ),
            models.CheckConstraint(
                condition=models.Q(min_samples__gte=1), name="rule_min_samples_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(comparator__in=Comparator.values), name="rule_comparator_known"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=Action.values), name="rule_action_known"
            ),
            models.CheckConstraint(
                condition=models.Q(segment_attribute="", segment_value="")
                | ~models.Q(segment_attribute=""),
                name="rule_segment_value_needs_attribute",
            ),
            models.CheckConstraint(
                condition=models.Q(open_canary=False) | models.Q(action=Action.RETRAIN),
                name="rule_canary_needs_retrain",
            ),
        ]
        indexes = [
            models.Index(fields=["created_at", "id"], name="rule_created"),
            models.Index(fields=["enabled"], name="rule_enabled"),
        ]

    def __str__(self) -> str:
        return self.name


class RuleFailure(models.Model):
    """A rule whose evaluation fails: not judged again before `retry_at` (backoff doubles),
    shown in /readyz, /metrics and the admin; deleted by its next good evaluation."""

    rule = models.OneToOneField(Rule, on_delete=models.CASCADE, related_name="failure")
    error = models.TextField()
    attempts = models.IntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    retry_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"rule {self.rule_id}: {self.error[:60]}"


class RuleEventType(models.TextChoices):
    CREATED = "rule_created"
    UPDATED = "rule_updated"
    ENABLED = "rule_enabled"
    DISABLED = "rule_disabled"


class RuleEvent(ChangeEvent):
    """Every change to a rule: who, what changed, and the full state after it (no secret)."""

    type = models.CharField(max_length=40, choices=RuleEventType.choices)
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="events")
    diff = models.JSONField(default=dict)

    class Meta(Event.Meta):
        indexes = [
            *Event.Meta.indexes,
            models.Index(fields=["rule", "seq"], name="ruleevent_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.rule_id}"


class Alert(Event):
    """A rule's threshold was crossed: the figures that crossed it, as they were then."""

    event_type = "alert"

    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="alerts")
    model = models.ForeignKey("registry.MLModel", on_delete=models.PROTECT, related_name="+")
    metric = models.CharField(max_length=50)
    comparator = models.CharField(max_length=3, choices=Comparator.choices)
    threshold = models.FloatField()
    observed_value = models.FloatField()
    sample_size = models.BigIntegerField()
    window = models.DurationField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    segment = models.JSONField(null=True, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)

    class Meta(Event.Meta):
        indexes = [
            *Event.Meta.indexes,
            # The cooldown check: the rule's latest alert.
            models.Index(fields=["rule", "occurred_at"], name="alert_rule_latest"),
            models.Index(fields=["model", "seq"], name="alert_model"),
        ]

    def __str__(self) -> str:
        return f"alert {self.id}"


class AlertAcknowledgement(Event):
    """Someone saw an alert; at most one per alert (the one-to-one key)."""

    event_type = "alert_acknowledged"

    alert = models.OneToOneField(Alert, on_delete=models.PROTECT, related_name="acknowledgement")
    actor = models.CharField(max_length=200)
    note = models.CharField(max_length=1024, blank=True)

    def __str__(self) -> str:
        return f"acknowledgement of {self.alert_id}"


class DeliveryOutcome(models.TextChoices):
    DELIVERED = "delivered"
    # A transient failure (network, 408, 429, 5xx): another attempt follows, if any is left.
    RETRYING = "retrying"
    FAILED = "failed"
    # The target resolved to an address webhooks may not reach (settings).
    REFUSED = "refused"


class WebhookDelivery(models.Model):
    """One attempt to deliver an alert to its rule's webhook (the delivery log)."""

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="deliveries")
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="deliveries")
    url = models.CharField(max_length=2048)
    attempt = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=DeliveryOutcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=2048, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    attempted_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["alert", "attempt"], name="webhookdelivery_alert")]

    def __str__(self) -> str:
        return f"{self.alert_id} #{self.attempt}: {self.outcome}"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TsTzRange(models.Func):
    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class RetrainingJob(models.Model):
    """A request to retrain a model, opened by a rule's alert, carried out by a trainer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey("registry.MLModel", on_delete=models.PROTECT, related_name="+")
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="jobs")
    alert = models.OneToOneField(
        Alert, on_delete=models.PROTECT, related_name="job", null=True, blank=True
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # What fired it, copied from the alert.
    metric = models.CharField(max_length=50)
    comparator = models.CharField(max_length=3, choices=Comparator.choices)
    threshold = models.FloatField()
    observed_value = models.FloatField()
    sample_size = models.BigIntegerField()
    window = models.DurationField()
    segment = models.JSONField(null=True, blank=True)
    open_canary = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    # created_at + the rule's cooldown at the time: no other job of the rule before this.
    blocks_until = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When a worker should next try (a retry waits out its backoff); null = any time.
    not_before = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    result_version = models.ForeignKey(
        "registry.ModelVersion",
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    canary_experiment = models.CharField(max_length=100, blank=True)
    canary_error = models.CharField(max_length=1024, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            ExclusionConstraint(
                name="retrainingjob_one_per_rule_cooldown",
                expressions=[
                    (
                        TsTzRange("created_at", "blocks_until", RangeBoundary()),
                        RangeOperators.OVERLAPS,
                    ),
                    ("rule", RangeOperators.EQUAL),
                ],
            ),
            models.CheckConstraint(
                condition=models.Q(blocks_until__gt=models.F("created_at")),
                name="retrainingjob_blocks_after_creation",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="retrainingjob_status_known"
            ),
            models.CheckConstraint(
                condition=~models.Q(status=JobStatus.RUNNING)
                | models.Q(lease_expires_at__isnull=False),
                name="retrainingjob_running_has_lease",
            ),
        ]
        indexes = [
            models.Index(fields=["created_at", "id"], name="retrainingjob_created"),
            models.Index(fields=["model", "created_at", "id"], name="retrainingjob_model"),
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status=JobStatus.RUNNING),
                name="retrainingjob_running_lease",
            ),
            models.Index(
                fields=["created_at"],
                condition=models.Q(status=JobStatus.QUEUED),
                name="retrainingjob_queued",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"


class JobEventType(models.TextChoices):
    QUEUED = "retraining_job_queued"
    STARTED = "retraining_job_started"
    # Back in the queue: a transient failure with attempts left, or an expired lease.
    REQUEUED = "retraining_job_requeued"
    SUCCEEDED = "retraining_job_succeeded"
    FAILED = "retraining_job_failed"


class RetrainingJobEvent(ChangeEvent):
    """Every transition of a job, with the actor, the error if any and the state after it."""

    type = models.CharField(max_length=40, choices=JobEventType.choices)
    job = models.ForeignKey(RetrainingJob, on_delete=models.PROTECT, related_name="events")
    error = models.TextField(blank=True)

    class Meta(Event.Meta):
        indexes = [
            *Event.Meta.indexes,
            models.Index(fields=["job", "seq"], name="retrainingjobevent_job"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.job_id}"

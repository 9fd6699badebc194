"""App config of monitoring: its event tables in the feed, rule evaluation after aggregation."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring (rules, alerts, retraining)"

    def ready(self) -> None:
        from apps.analytics.services import register_after_aggregation
        from apps.core.metrics import register_gauges
        from apps.core.views import register_readiness
        from apps.events.registry import EventSource, register
        from apps.monitoring import selectors, services
        from apps.monitoring.models import (
            Alert,
            AlertAcknowledgement,
            RetrainingJobEvent,
            RuleEvent,
        )

        register(
            EventSource(
                model=RuleEvent,
                serialize=selectors.rule_event_as_dict,
                queryset=selectors.rule_event_rows,
            )
        )
        register(
            EventSource(
                model=Alert, serialize=selectors.alert_event_as_dict, queryset=selectors.alert_rows
            )
        )
        register(
            EventSource(
                model=AlertAcknowledgement,
                serialize=selectors.acknowledgement_as_dict,
                queryset=selectors.acknowledgement_rows,
            )
        )
        register(
            EventSource(
                model=RetrainingJobEvent,
                serialize=selectors.job_event_as_dict,
                queryset=selectors.job_event_rows,
            )
        )
        # POST /aggregations/run, the analytics.aggregate beat task and `manage.py aggregate`
        # evaluate every enabled rule once the projections are up to date.
        register_after_aggregation("rules", services.rules_evaluate)
        register_readiness("rules", selectors.rule_failure_report, selectors.rule_problems)
        register_gauges(selectors.rule_failure_gauges)

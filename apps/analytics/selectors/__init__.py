"""Reads of the projections, by subdomain: experiment results, performance, projection lag."""

from apps.analytics.selectors.performance import (
    PERFORMANCE_METRICS,
    model_performance,
    performance_metric_value,
    time_parse,
)
from apps.analytics.selectors.results import experiment_results
from apps.analytics.selectors.status import (
    projection_gauges,
    projection_problems,
    projection_status_report,
)

__all__ = [
    "PERFORMANCE_METRICS",
    "experiment_results",
    "model_performance",
    "performance_metric_value",
    "projection_gauges",
    "projection_problems",
    "projection_status_report",
    "time_parse",
]

"""Reads of the projections, by subdomain: experiment results, performance, projection lag."""

from apps.analytics.selectors.lag import projection_lag_gauges, projection_lag_report
from apps.analytics.selectors.performance import (
    PERFORMANCE_METRICS,
    model_performance,
    performance_metric_value,
    time_parse,
)
from apps.analytics.selectors.results import experiment_results

__all__ = [
    "PERFORMANCE_METRICS",
    "experiment_results",
    "model_performance",
    "performance_metric_value",
    "projection_lag_gauges",
    "projection_lag_report",
    "time_parse",
]

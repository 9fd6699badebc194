"""Reads of the projections, by subdomain: experiment results, performance, projection lag."""

from apps.analytics.selectors.lag import projection_lag_gauges, projection_lag_report
from apps.analytics.selectors.performance import (
    PERFORMANCE_METRICS,
    performance_metric_value,
)
from apps.analytics.selectors.results import experiment_results

__all__ = [
    "PERFORMANCE_METRICS",
    "experiment_results",
    "performance_metric_value",
    "projection_lag_gauges",
    "projection_lag_report",
]

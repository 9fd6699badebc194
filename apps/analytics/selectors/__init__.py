"""Reads of the projections, by subdomain: experiment results, projection lag."""

from apps.analytics.selectors.lag import projection_lag_gauges, projection_lag_report
from apps.analytics.selectors.results import experiment_results

__all__ = ["experiment_results", "projection_lag_gauges", "projection_lag_report"]

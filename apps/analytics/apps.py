"""App config of the aggregation workers and their projections."""

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "apps.analytics"
    label = "analytics"
    verbose_name = "Analytics (projections)"

    def ready(self) -> None:
        from apps.analytics import selectors
        from apps.analytics.projections import (
            experiments,  # noqa: F401 - registers itself
            performance,  # noqa: F401 - registers itself
        )
        from apps.core.metrics import register_gauges
        from apps.core.views import register_readiness

        register_readiness(
            "projections", selectors.projection_status_report, selectors.projection_problems
        )
        register_gauges(selectors.projection_gauges)

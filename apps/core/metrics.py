"""Prometheus metrics of the process (multiprocess mode under gunicorn).

With PROMETHEUS_MULTIPROC_DIR set (make run and docker-compose set it), every gunicorn
worker writes its samples there and /metrics merges them; otherwise the process registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "kaizen_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "kaizen_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_STORED = Counter("kaizen_events_stored_total", "Events stored", ["type"])
EVENTS_DUPLICATE = Counter(
    "kaizen_events_duplicate_total", "Events received again with the same content", ["type"]
)
EVENTS_REJECTED = Counter("kaizen_events_rejected_total", "Events rejected", ["type", "reason"])
SCRAPE_ERRORS = Counter(
    "kaizen_metrics_source_errors_total", "Scrape-time gauge sources that raised"
)

GaugeSource = Callable[[], Iterable[Metric]]
_gauge_sources: list[GaugeSource] = []


def register_gauges(source: GaugeSource) -> None:
    """Add gauges computed at scrape time (e.g. projection lag read from the database)."""
    if source not in _gauge_sources:
        _gauge_sources.append(source)


class _ScrapeTimeGauges(Collector):
    def collect(self) -> Iterable[Metric]:
        for source in _gauge_sources:
            try:
                # Listed first: a source failing half-way must not leave a partial family.
                families = list(source())
            except Exception:  # a broken gauge source must not take /metrics down
                logger.exception("metrics.gauge_source_failed", extra={"source": repr(source)})
                SCRAPE_ERRORS.inc()
                continue
            yield from families


def render() -> tuple[bytes, str]:
    """The exposition text of every metric, merged across processes when multiprocess."""
    registry: CollectorRegistry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    output += generate_latest(_scrape_registry())
    return output, CONTENT_TYPE_LATEST


def _scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_ScrapeTimeGauges())
    return registry

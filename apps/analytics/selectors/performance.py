"""Model performance (API.md "Performance"): per version × bucket × segment, from the projection.

Interface for threshold rules (apps.monitoring): `performance_metric_value` and
`PERFORMANCE_METRICS`. The figures come from the `performance` projection's hourly cells;
the implementation of the reads lands with the projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

# Metric names a rule may watch. Label metrics need truth (label feedback for
# classification, value feedback for regression); the others count every prediction.
LABEL_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "mae", "rmse")
PREDICTION_METRICS: tuple[str, ...] = (
    "error_rate",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "count",
)
PERFORMANCE_METRICS: tuple[str, ...] = LABEL_METRICS + PREDICTION_METRICS


def performance_metric_value(
    *,
    model: str,
    metric: str,
    start: datetime,
    end: datetime,
    segment: Mapping[str, str] | None = None,
    version: str | None = None,
) -> tuple[float | None, int]:
    """One metric of `model` over the hour buckets in [start, end): (value, sample size).

    All versions together unless `version` is given; the whole traffic unless `segment`
    names one attribute and value ({"country": "DE"}). The sample size follows API.md's
    rules: labeled predictions for label metrics (LABEL_METRICS), predictions otherwise.
    The value is None when the metric does not apply to the model's task or there is no
    data. Buckets are whole UTC hours: every hour overlapping [start, end) counts, so pass
    whole-hour bounds for an exact window. Raises NotFound (unknown model or version) and
    ValidationFailed (unknown metric, naive times, a segment of more than one attribute or
    an attribute not among the model's segment_attributes).
    """
    del model, metric, start, end, segment, version
    return None, 0

"""Model performance metrics from a row's summed cells (no ORM, no I/O).

Inputs: `Totals`, the sums of a row's cells (performance projection): predictions, labeled
predictions, failures, the binary confusion counts, the exact regression error sums, the
latency sketch's bins and the multiclass confusion pairs.

Metrics, over the labeled predictions (a predicted outcome and a truth) of a row:
- binary: accuracy (TP+TN)/labeled; precision TP/(TP+FP), recall TP/(TP+FN),
  F1 2TP/(2TP+FP+FN), each None when its denominator is 0.
- multiclass: accuracy Σ correct/labeled; precision, recall and F1 macro-averaged over the
  classes seen among the row's predicted and true labels, a class's undefined ratio
  counting 0 (scikit-learn's `average="macro", zero_division=0`).
- regression: MAE Σ|e|/labeled and RMSE √(Σe²/labeled), e = prediction − truth.
- error_rate errors/count; latency_p50/p95/p99 the sketch's estimate of the order statistic
  of rank ⌈q·n⌉ (numpy `method="inverted_cdf"`), within RELATIVE_ERROR (1%) of it.
Metrics that do not apply to the task, or have no data, are None.

Latency sketch. Bins are log-spaced with ratio GAMMA = (1 + α)/(1 − α), α = RELATIVE_ERROR:
a latency x > 0 falls in bin floor(ln x / ln GAMMA) and is represented by
2·GAMMA^(bin+1)/(GAMMA + 1), within α of any value of the bin (DDSketch); x = 0 has its
own bin, represented by 0. Bin counts add, so sketches merge exactly across cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
ZERO_BIN = -(2**31)


def bin_value(index: int) -> float:
    """The latency a sketch bin stands for (within RELATIVE_ERROR of all it holds)."""
    if index == ZERO_BIN:
        return 0.0
    return 2 * math.exp((index + 1) * math.log(GAMMA)) / (GAMMA + 1)


LATENCY_QUANTILES: tuple[tuple[str, float], ...] = (
    ("latency_p50", 0.50),
    ("latency_p95", 0.95),
    ("latency_p99", 0.99),
)


@dataclass
class Totals:
    """The summed cells of one result row (or of a rule's whole window)."""

    count: int = 0
    labeled: int = 0
    errors: int = 0
    # Predictions left out for a number out of bounds (in no other figure).
    excluded: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    absolute_error_sum: Decimal = Decimal(0)
    squared_error_sum: Decimal = Decimal(0)
    latency: dict[int, int] = field(default_factory=dict)
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, other: Totals) -> None:
        self.count += other.count
        self.labeled += other.labeled
        self.errors += other.errors
        self.excluded += other.excluded
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives
        self.true_negatives += other.true_negatives
        self.absolute_error_sum += other.absolute_error_sum
        self.squared_error_sum += other.squared_error_sum
        for index, count in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + count
        for pair, count in other.confusion.items():
            self.confusion[pair] = self.confusion.get(pair, 0) + count


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def latency_quantile(bins: Mapping[int, int], q: float) -> float | None:
    """The sketch's estimate of the order statistic of rank ⌈q·n⌉ (1-based); None if empty."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))  # pragma: no cover - rank <= total


def _binary(totals: Totals) -> dict[str, float | None]:
    tp, fp, fn = totals.true_positives, totals.false_positives, totals.false_negatives
    return {
        "accuracy": _ratio(tp + totals.true_negatives, totals.labeled),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _multiclass(totals: Totals) -> dict[str, float | None]:
    cells = {pair: count for pair, count in totals.confusion.items() if count}
    labeled = sum(cells.values())
    if labeled == 0:
        return {"accuracy": None, "precision": None, "recall": None, "f1": None}
    classes = sorted({label for pair in cells for label in pair})
    predicted = dict.fromkeys(classes, 0)
    actual = dict.fromkeys(classes, 0)
    correct = dict.fromkeys(classes, 0)
    for (guess, truth), count in cells.items():
        predicted[guess] += count
        actual[truth] += count
        if guess == truth:
            correct[guess] += count
    precision = [_ratio(correct[c], predicted[c]) or 0.0 for c in classes]
    recall = [_ratio(correct[c], actual[c]) or 0.0 for c in classes]
    f1 = [_ratio(2 * correct[c], predicted[c] + actual[c]) or 0.0 for c in classes]
    return {
        "accuracy": sum(correct.values()) / labeled,
        "precision": math.fsum(precision) / len(classes),
        "recall": math.fsum(recall) / len(classes),
        "f1": math.fsum(f1) / len(classes),
    }


def _regression(totals: Totals) -> dict[str, float | None]:
    if totals.labeled == 0:
        return {"mae": None, "rmse": None}
    return {
        "mae": float(totals.absolute_error_sum / totals.labeled),
        "rmse": math.sqrt(float(totals.squared_error_sum / totals.labeled)),
    }


def metrics_compute(task: str, totals: Totals) -> dict[str, float | None]:
    """Every metric of API.md's performance rows from a row's totals (None: no value)."""
    values: dict[str, float | None] = dict.fromkeys(
        ("accuracy", "precision", "recall", "f1", "mae", "rmse"), None
    )
    if task == "binary_classification" and totals.labeled:
        values.update(_binary(totals))
    elif task == "multiclass_classification":
        values.update(_multiclass(totals))
    elif task == "regression":
        values.update(_regression(totals))
    values["error_rate"] = _ratio(totals.errors, totals.count)
    for name, q in LATENCY_QUANTILES:
        values[name] = latency_quantile(totals.latency, q)
    return values

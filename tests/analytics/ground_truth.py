"""What Kaizen's answers must be, computed with numpy from the raw values the load clients sent.

Independent of Kaizen: nothing here reads the database or imports the app. The rules are
API.md's ("Results", "Performance"):
- a unit is a subject whose tagged predictions name one variant of the experiment; subjects
  tagged with several are counted in `multiple_exposures` and left out of every figure;
- a unit's value for a metric is the sum of the `value`s of that metric's feedback on its
  tagged predictions (0 without any), 1 if that sum is > 0 for a binomial metric, else 0;
- per variant (overall and per value of a breakdown attribute, taken from the subject's
  attributes, which the clients keep constant per subject): units, mean and sample variance
  (n − 1) of the values, null below 1 and 2 units;
- performance `count`: predictions per model version, tagged or not.

`differences()` compares an answer with the truth: counts exactly, means and variances to
1e-9 relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .load_client import METRICS, attribute_value

RELATIVE_TOLERANCE = 1e-9

# (units, mean, variance) of one variant's values
Stats = tuple[int, float | None, float | None]


@dataclass(frozen=True)
class Recorded:
    """Every distinct event the clients sent, over all clients (predictions numbered 0..n-1)."""

    subject: np.ndarray
    # the experiment a prediction is tagged with (-1: untagged) and the one naming its model
    experiment: np.ndarray
    model_experiment: np.ndarray
    variant: np.ndarray
    attributes: dict[str, np.ndarray]
    feedback_prediction: np.ndarray
    feedback_metric: np.ndarray
    feedback_value: np.ndarray

    @property
    def predictions(self) -> int:
        return int(self.subject.size)

    @property
    def feedback(self) -> int:
        return int(self.feedback_prediction.size)


def load(outputs: list[Path]) -> Recorded:
    """The clients' `<output>.npz` recordings, concatenated."""
    parts: dict[str, list[np.ndarray]] = {}
    offset = 0
    for output in outputs:
        with np.load(f"{output}.npz") as data:
            count = int(data["prediction"].size)
            # Each client numbers its predictions 0, 1, … and records them in that order.
            assert np.array_equal(data["prediction"], np.arange(count))
            for name in data.files:
                values = data[name] + offset if name == "feedback_prediction" else data[name]
                parts.setdefault(name, []).append(values)
            offset += count
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    return Recorded(
        subject=columns["subject"],
        experiment=columns["experiment"],
        model_experiment=columns["model_experiment"],
        variant=columns["variant"],
        attributes={"country": columns["country"], "cohort": columns["cohort"]},
        feedback_prediction=columns["feedback_prediction"].astype(np.int64),
        feedback_metric=columns["feedback_metric"],
        feedback_value=columns["feedback_value"],
    )


@dataclass(frozen=True)
class Groups:
    """Units per variant and, per metric and variant, the statistics of the units' values."""

    units: dict[str, int]
    metrics: dict[str, dict[str, Stats]]


@dataclass(frozen=True)
class ExperimentTruth:
    key: str
    overall: Groups
    multiple_exposures: int
    # attribute -> value -> groups of the units with that value
    segments: dict[str, dict[str, Groups]]
    exposures: int


def _stats(values: np.ndarray) -> Stats:
    units = int(values.size)
    mean = float(values.mean()) if units >= 1 else None
    variance = float(values.var(ddof=1)) if units >= 2 else None
    return units, mean, variance


def _per_subject(codes: np.ndarray, owners: np.ndarray, subjects: int) -> np.ndarray:
    """The one code each subject has (asserting the clients kept it constant)."""
    lowest = np.full(subjects, np.iinfo(np.int64).max)
    highest = np.full(subjects, np.iinfo(np.int64).min)
    np.minimum.at(lowest, owners, codes)
    np.maximum.at(highest, owners, codes)
    assert np.array_equal(lowest, highest), "a subject was sent with different attributes"
    return lowest


def experiment_truth(
    recorded: Recorded, number: int, experiment: dict[str, Any]
) -> ExperimentTruth:
    """The results of experiment `number` (its spec: key, variants, metrics, breakdown)."""
    variants = [variant[0] for variant in experiment["variants"]]
    tagged = np.flatnonzero(recorded.experiment == number)
    keys, owners = np.unique(recorded.subject[tagged], return_inverse=True)
    subjects = keys.size
    # Distinct (subject, variant) pairs: the exposures; a unit has exactly one.
    pairs = np.unique(owners * len(variants) + recorded.variant[tagged])
    pair_owner, pair_variant = pairs // len(variants), pairs % len(variants)
    exposures_of = np.bincount(pair_owner, minlength=subjects)
    unit_variant = np.full(subjects, -1)
    single = exposures_of[pair_owner] == 1
    unit_variant[pair_owner[single]] = pair_variant[single]
    # Per-subject sums of each metric's feedback on the subject's tagged predictions.
    subject_of_prediction = np.full(recorded.predictions, -1)
    subject_of_prediction[tagged] = owners
    feedback_owner = subject_of_prediction[recorded.feedback_prediction]
    values = {}
    for metric, kind in experiment["metrics"]:
        chosen = (feedback_owner >= 0) & (recorded.feedback_metric == METRICS.index(metric))
        sums = np.bincount(
            feedback_owner[chosen], weights=recorded.feedback_value[chosen], minlength=subjects
        )
        values[metric] = (sums > 0).astype(np.float64) if kind == "binomial" else sums

    def groups(selected: np.ndarray) -> Groups:
        members = [selected & (unit_variant == position) for position in range(len(variants))]
        return Groups(
            units={
                variant: int(member.sum())
                for variant, member in zip(variants, members, strict=True)
            },
            metrics={
                metric: {
                    variant: _stats(values[metric][member])
                    for variant, member in zip(variants, members, strict=True)
                }
                for metric, _ in experiment["metrics"]
            },
        )

    segments = {}
    for attribute in experiment["breakdown"]:
        codes = _per_subject(recorded.attributes[attribute][tagged], owners, subjects)
        segments[attribute] = {
            attribute_value(attribute, int(code)): groups(codes == code)
            for code in np.unique(codes[unit_variant >= 0])
        }
    return ExperimentTruth(
        key=experiment["key"],
        overall=groups(np.ones(subjects, dtype=bool)),
        multiple_exposures=int((exposures_of > 1).sum()),
        segments=segments,
        exposures=int(pairs.size),
    )


def performance_counts(
    recorded: Recorded, experiments: list[dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """model -> version -> predictions (tagged or not)."""
    found: dict[str, dict[str, int]] = {}
    pairs, counts = np.unique(
        np.stack([recorded.model_experiment, recorded.variant]), axis=1, return_counts=True
    )
    for (number, variant), count in zip(pairs.T.tolist(), counts.tolist(), strict=True):
        experiment = experiments[number]
        version = experiment["variants"][variant][1]
        by_version = found.setdefault(experiment["model"], {})
        by_version[version] = by_version.get(version, 0) + count
    return found


# --- answers ----------------------------------------------------------------------------------


def answered_groups(body: dict[str, Any]) -> Groups:
    """Groups from a results answer (overall, or one entry of `values`)."""
    return Groups(
        units=dict(body["srm"]["units"]),
        metrics={
            metric["metric"]: {
                entry["variant"]: (entry["units"], entry["mean"], entry["variance"])
                for entry in metric["variants"]
            }
            for metric in body["metrics"]
        },
    )


def _close(expected: float | None, found: float | None) -> bool:
    if expected is None or found is None:
        return expected is found
    return math.isclose(found, expected, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0)


def groups_differences(where: str, expected: Groups, found: Groups) -> list[str]:
    if expected.units != found.units:
        return [f"{where}: units {found.units}, expected {expected.units}"]
    out = []
    if set(expected.metrics) != set(found.metrics):
        out.append(f"{where}: metrics {sorted(found.metrics)}, expected {sorted(expected.metrics)}")
    for metric, by_variant in expected.metrics.items():
        for variant, (units, mean, variance) in by_variant.items():
            got = found.metrics.get(metric, {}).get(variant)
            if (
                got is None
                or got[0] != units
                or not _close(mean, got[1])
                or not _close(variance, got[2])
            ):
                out.append(f"{where} {metric}/{variant}: {got}, expected {(units, mean, variance)}")
    return out


def differences(
    truth: ExperimentTruth, overall: dict[str, Any], segments: dict[str, dict[str, Any]]
) -> list[str]:
    """How the results answers differ from the truth: the overall one, and the one per
    breakdown attribute for each attribute in `segments`."""
    out = []
    if overall["multiple_exposures"] != truth.multiple_exposures:
        out.append(
            f"{truth.key}: multiple_exposures {overall['multiple_exposures']}, "
            f"expected {truth.multiple_exposures}"
        )
    out += groups_differences(truth.key, truth.overall, answered_groups(overall))
    for attribute, answer in segments.items():
        expected = truth.segments[attribute]
        found = {entry["value"]: answered_groups(entry) for entry in answer["values"]}
        if set(found) != set(expected):
            missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
            out.append(f"{truth.key} {attribute}: values missing {missing[:5]}, extra {extra[:5]}")
            continue
        for value, groups in expected.items():
            where = f"{truth.key} {attribute}={value}"
            out += groups_differences(where, groups, found[value])
    return out

"""The production-shape test's ground truth, on a recording small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from . import ground_truth
from .ground_truth import Groups, Recorded

EXPERIMENT = {
    "key": "load-0",
    "model": "churn-0",
    "variants": [["control", "1", 0.4], ["treatment", "2", 0.4], ["other", "3", 0.2]],
    "metrics": [["click", "binomial"], ["revenue", "mean"]],
    "breakdown": ["country"],
}
DE, FR = 0, 1
CLICK, REVENUE = 0, 1


def recorded() -> Recorded:
    # prediction: subject, experiment (-1 untagged), variant, country
    predictions = [
        (1, 0, 0, DE),
        (1, 0, 0, DE),
        (2, 0, 1, FR),
        (3, 0, 0, FR),
        (3, 0, 1, FR),  # subject 3 is tagged with two variants
        (4, -1, 2, DE),  # untagged
        (5, 0, 1, DE),
    ]
    # feedback: prediction, metric, value
    feedback = [
        (0, CLICK, 1.0),
        (1, CLICK, 0.0),
        (0, REVENUE, 2.5),
        (1, REVENUE, 1.5),
        (2, CLICK, 0.0),
        (3, CLICK, 1.0),
        (5, REVENUE, 10.0),
        (6, REVENUE, 3.0),
        (6, CLICK, 1.0),
    ]
    subject, experiment, variant, country = (
        np.array(column) for column in zip(*predictions, strict=True)
    )
    target, metric, value = (np.array(column) for column in zip(*feedback, strict=True))
    return Recorded(
        subject=subject,
        experiment=experiment,
        model_experiment=np.zeros_like(experiment),
        variant=variant,
        attributes={"country": country, "cohort": np.zeros_like(country)},
        feedback_prediction=target,
        feedback_metric=metric,
        feedback_value=value.astype(np.float64),
    )


def test_experiment_truth__hand_made_recording__units_values_and_breakdown_by_hand():
    truth = ground_truth.experiment_truth(recorded(), 0, EXPERIMENT)
    # Subject 1 (control): click 1 + 0 → 1, revenue 4.0; subjects 2 and 5 (treatment):
    # clicks 0 and 1, revenue 0 and 3.0; subject 3: two variants; subject 4: untagged.
    assert truth.multiple_exposures == 1
    assert truth.exposures == 5
    assert truth.overall == Groups(
        units={"control": 1, "treatment": 2, "other": 0},
        metrics={
            "click": {
                "control": (1, 1.0, None),
                "treatment": (2, 0.5, 0.5),
                "other": (0, None, None),
            },
            "revenue": {
                "control": (1, 4.0, None),
                "treatment": (2, 1.5, 4.5),
                "other": (0, None, None),
            },
        },
    )
    assert truth.segments["country"]["DE"].units == {"control": 1, "treatment": 1, "other": 0}
    assert truth.segments["country"]["DE"].metrics["revenue"]["treatment"] == (1, 3.0, None)
    assert truth.segments["country"]["FR"].units == {"control": 0, "treatment": 1, "other": 0}
    assert set(truth.segments["country"]) == {"DE", "FR"}


def test_performance_counts__hand_made_recording__every_prediction_by_version():
    counts = ground_truth.performance_counts(recorded(), [EXPERIMENT])
    assert counts == {"churn-0": {"1": 3, "2": 3, "3": 1}}


def answer(truth: ground_truth.ExperimentTruth) -> dict:
    """A results answer (API.md) carrying exactly the truth's overall figures."""
    return {
        "multiple_exposures": truth.multiple_exposures,
        "srm": {"units": dict(truth.overall.units)},
        "metrics": [
            {
                "metric": metric,
                "variants": [
                    {"variant": variant, "units": n, "mean": mean, "variance": variance}
                    for variant, (n, mean, variance) in by_variant.items()
                ],
            }
            for metric, by_variant in truth.overall.metrics.items()
        ],
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda body: None, []),
        (
            lambda body: body["metrics"][1]["variants"][1].update(mean=1.5 * (1 + 1e-10)),
            [],
        ),
        (
            lambda body: body["metrics"][1]["variants"][1].update(mean=1.5 * (1 + 1e-8)),
            ["load-0 revenue/treatment: (2, 1.500000015, 4.5), expected (2, 1.5, 4.5)"],
        ),
        (
            lambda body: body["metrics"][0]["variants"][1].update(variance=None),
            ["load-0 click/treatment: (2, 0.5, None), expected (2, 0.5, 0.5)"],
        ),
        (
            lambda body: body["srm"]["units"].update(other=1),
            [
                "load-0: units {'control': 1, 'treatment': 2, 'other': 1}, "
                "expected {'control': 1, 'treatment': 2, 'other': 0}"
            ],
        ),
        (
            lambda body: body.update(multiple_exposures=0),
            ["load-0: multiple_exposures 0, expected 1"],
        ),
    ],
    ids=["equal", "mean_off_1e-10", "mean_off_1e-8", "variance_missing", "units", "multiple"],
)
def test_differences__answer_changed__counts_exact_means_to_1e9_relative(change, expected):
    truth = ground_truth.experiment_truth(recorded(), 0, EXPERIMENT)
    body = answer(truth)
    change(body)
    assert ground_truth.differences(truth, body, {}) == expected

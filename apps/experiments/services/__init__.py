"""Use cases of experiments: configuration and rollouts, assignment, exposures."""

from apps.experiments.services.assignment import Assignment, assignment_create
from apps.experiments.services.exposures import (
    PredictionExposure,
    config_changed,
    exposures_record_from_predictions,
)
from apps.experiments.services.rollouts import (
    experiment_check,
    experiment_create,
    experiment_pause,
    experiment_ramp_advance,
    experiment_ship,
    experiment_start,
    experiment_state,
    experiment_stop,
    experiment_update,
    ramp_advance_due,
    spec_of,
)

__all__ = [
    "Assignment",
    "PredictionExposure",
    "assignment_create",
    "config_changed",
    "experiment_check",
    "experiment_create",
    "experiment_pause",
    "experiment_ramp_advance",
    "experiment_ship",
    "experiment_start",
    "experiment_state",
    "experiment_stop",
    "experiment_update",
    "exposures_record_from_predictions",
    "ramp_advance_due",
    "spec_of",
]

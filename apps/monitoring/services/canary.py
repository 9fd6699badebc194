"""The canary a retrained version gets when its rule asks for one (`open_canary`).

An experiment of the new version (variant `canary`) against the version the model's
`production` alias points to (variant `control`), half and half, started at once at 10%
coverage and ramped to 25% after a day and 50% after two: 5% of subjects meet the new
version at first. Shipping it, or stopping it, is left to people (the admin or the API).
"""

from __future__ import annotations

from datetime import timedelta

from apps.core.errors import Conflict
from apps.experiments import services as experiment_services
from apps.experiments.validation import ExperimentSpec, RampStepSpec, VariantSpec
from apps.registry import selectors as registry_selectors

PRODUCTION_ALIAS = "production"
CANARY_COVERAGE = 0.1
CANARY_RAMP = (
    RampStepSpec(coverage=0.1, after=timedelta(0)),
    RampStepSpec(coverage=0.25, after=timedelta(hours=24)),
    RampStepSpec(coverage=0.5, after=timedelta(hours=48)),
)
KEY_MAX_LENGTH = 100


def canary_key(*, model: str, version: str, job_id: str) -> str:
    """A key no person would pick: the model, the version and the job's id (≤ 100 chars)."""
    suffix = f"-{job_id[:8]}"
    return f"canary-{model}-{version}"[: KEY_MAX_LENGTH - len(suffix)] + suffix


def canary_open(*, model: str, version: str, job_id: str, actor: str) -> str:
    """Create and start the canary experiment; its key. Raises the experiment's errors.

    NotFound when the model has no production alias; Conflict when production already
    serves this version.
    """
    production = registry_selectors.alias_get(model=model, alias=PRODUCTION_ALIAS)
    current = production.version.version
    if current == version:
        raise Conflict(f"{PRODUCTION_ALIAS} already serves version {version!r}: no canary.")
    key = canary_key(model=model, version=version, job_id=job_id)
    attributes = registry_selectors.model_get(name=model).segment_attributes
    spec = ExperimentSpec(
        key=key,
        model=model,
        variants=(
            VariantSpec(key="control", model_version=current, weight=0.5),
            VariantSpec(key="canary", model_version=version, weight=0.5),
        ),
        control="control",
        description=f"Canary of version {version} (retraining job {job_id}) against {current}.",
        hypothesis=f"Version {version} performs at least as well as {current}.",
        owner=actor[:200],
        breakdown_attributes=tuple(attributes),
        coverage=CANARY_COVERAGE,
        ramp=CANARY_RAMP,
    )
    experiment_services.experiment_create(spec=spec, actor=actor)
    experiment_services.experiment_start(key=key, actor=actor)
    return key

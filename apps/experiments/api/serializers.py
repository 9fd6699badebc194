"""JSON shapes of experiments, their events and assignments (API.md "Experiments")."""

from __future__ import annotations

from typing import Any

from apps.experiments.models import Exposure, RolloutEvent


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def exposure_as_dict(exposure: Exposure) -> dict[str, Any]:
    return {
        "id": str(exposure.id),
        "experiment": exposure.experiment.key,
        "subject": exposure.subject,
        "variant": exposure.variant,
        "model_version": exposure.model_version,
        "attributes": exposure.attributes,
        "source": exposure.source,
        "hash_version": exposure.hash_version,
        "prediction_id": str(exposure.prediction_id) if exposure.prediction_id else None,
        "occurred_at": _time(exposure.occurred_at),
        "received_at": _time(exposure.received_at),
    }


def rollout_event_as_dict(event: RolloutEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "experiment": event.experiment.key,
        "actor": event.actor,
        "diff": event.diff,
        "state": event.state,
        "occurred_at": _time(event.occurred_at),
        "received_at": _time(event.received_at),
    }

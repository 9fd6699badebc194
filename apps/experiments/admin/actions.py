"""The admin's experiment actions: what each is called, when it applies, what it does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apps.experiments import services
from apps.experiments.models import Experiment, RolloutEvent, RolloutEventType, Status


@dataclass(frozen=True)
class Action:
    label: str
    question: str
    consequence: str
    confirm: str


ACTIONS: dict[str, Action] = {
    "start": Action(
        label="Start",
        question="Start (or resume) this experiment?",
        consequence="Assignments begin at once: subjects inside the targeting and coverage get "
        "a variant and are recorded as exposed. Variants, weights and targeting are then fixed.",
        confirm="Yes, start",
    ),
    "pause": Action(
        label="Pause",
        question="Pause this experiment?",
        consequence="Until it is resumed every subject gets the control; exposures already "
        "recorded are kept and resuming brings subjects back to their variant.",
        confirm="Yes, pause",
    ),
    "stop": Action(
        label="Stop",
        question="Stop this experiment for good?",
        consequence="A stopped experiment never restarts: every subject gets the model's "
        "production version from now on.",
        confirm="Yes, stop",
    ),
    "advance": Action(
        label="Advance ramp",
        question="Apply the next ramp step now?",
        consequence="Coverage rises to the next step's value ahead of its schedule; subjects "
        "already in keep their variant, new ones are added.",
        confirm="Yes, advance",
    ),
    "ship": Action(
        label="Ship",
        question="Ship a variant of this experiment?",
        consequence="The experiment stops and the model's production alias moves to the chosen "
        "variant's version, in one step. Every application asking for production gets it.",
        confirm="Yes, ship",
    ),
}


def available(experiment: Experiment) -> list[tuple[str, str]]:
    """(name, label) of the actions that make sense in the experiment's status."""
    status = experiment.status
    names: list[str] = []
    if status in {Status.DRAFT, Status.PAUSED}:
        names.append("start")
    if status == Status.RUNNING:
        names.append("pause")
    if status in {Status.RUNNING, Status.PAUSED}:
        if any(step.applied_at is None for step in experiment.ramp.all()):
            names.append("advance")
    if status != Status.STOPPED:
        names.append("stop")
    if status != Status.DRAFT and not experiment.shipped_variant:
        names.append("ship")
    return [
        (name, "Resume" if name == "start" and status == Status.PAUSED else ACTIONS[name].label)
        for name in names
    ]


def perform(name: str, experiment: Experiment, actor: str, variant: str) -> Experiment:
    key = experiment.key
    if name == "start":
        return services.experiment_start(key=key, actor=actor)
    if name == "pause":
        return services.experiment_pause(key=key, actor=actor)
    if name == "stop":
        return services.experiment_stop(key=key, actor=actor)
    if name == "advance":
        return services.experiment_ramp_advance(key=key, actor=actor)
    return services.experiment_ship(key=key, variant=variant, actor=actor)


def done_message(name: str, experiment: Experiment) -> str:
    past = {
        "start": "started",
        "pause": "paused",
        "stop": "stopped",
        "advance": "ramp advanced",
        "ship": "shipped",
    }
    return f"{experiment.key}: {past[name]}."


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "…"


def describe_diff(event: RolloutEvent) -> str:
    """A one-line summary of what an event changed."""
    if event.type == RolloutEventType.CREATED:
        state = event.state
        variants = ", ".join(f"{v['key']} {v['weight']:g}" for v in state.get("variants", []))
        return f"created as draft ({variants}; coverage {state.get('coverage', 1):g})"
    parts = [
        f"{name}: {_short(change['from'])} → {_short(change['to'])}"
        for name, change in sorted(event.diff.items())
        if name not in {"started_at", "stopped_at"}
    ]
    return "; ".join(parts) or "no visible change"

"""The rules an experiment's configuration obeys, shared by the API and the admin.

Pure Python (no ORM): `parse_payload` turns untrusted JSON into an ExperimentSpec, and
`spec_problems` checks a spec against the registry facts a caller looked up (the model's
segment attributes and which versions exist). Each problem is an API.md detail with a dotted
`field` and a message a product person can act on; the admin shows the same messages.

Every number has a finite range (API.md "Limits"): weights and coverages are shares in
[0, 1], alpha is in (0, 1), mde in (0, 100] (a relative lift), a ramp step comes at most
365d after the start, and a number among targeting values or assignment attributes is
within ±1e15 like any attribute value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.conf import settings

from apps.core import durations
from apps.core.bounds import VALUE, Bound
from apps.core.durations import format_duration as format_duration  # its callers import it here
from apps.core.errors import Detail, ValidationFailed
from apps.core.text import name_problem
from apps.experiments.bucketing import attribute_text
from apps.experiments.models import KEY_PATTERN, MetricType

KEY_RE = re.compile(KEY_PATTERN)
KEY_MESSAGE = "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
WEIGHT_TOLERANCE = 1e-9
MAX_TEXT = 10_000
MAX_VARIANTS = 20
MAX_METRICS = 50
MAX_TARGETING_ATTRIBUTES = 50
MAX_TARGETING_VALUES = 1000
MAX_RAMP_STEPS = 50
ATTRIBUTE_MAX_LENGTH = 100
VALUE_MAX_LENGTH = 1024
# A relative lift: 100 is +10,000%.
MDE = Bound(0, 100, exclusive_minimum=True)
ALPHA = Bound(0, 1, exclusive_minimum=True, exclusive_maximum=True)
MAXIMUM_RAMP_AFTER = timedelta(days=365)


@dataclass(frozen=True)
class VariantSpec:
    key: str
    model_version: str
    weight: float
    # The model the chosen version belongs to, when the caller picked a version row (admin).
    version_model: str | None = None


@dataclass(frozen=True)
class MetricSpec:
    key: str
    type: str


@dataclass(frozen=True)
class RampStepSpec:
    coverage: float
    after: timedelta = timedelta(0)


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything a person configures on an experiment (API.md's POST body, normalised)."""

    key: str
    model: str
    variants: tuple[VariantSpec, ...]
    control: str
    description: str = ""
    hypothesis: str = ""
    owner: str = ""
    metrics: tuple[MetricSpec, ...] = ()
    primary_metric: str | None = None
    guardrail_metrics: tuple[str, ...] = ()
    breakdown_attributes: tuple[str, ...] = ()
    targeting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    coverage: float = 1.0
    ramp: tuple[RampStepSpec, ...] = ()
    alpha: float = 0.05
    mde: float = 0.05


@dataclass(frozen=True)
class RegistryFacts:
    """What the registry says about the spec's model: looked up by the service."""

    model_exists: bool
    segment_attributes: frozenset[str]
    versions: frozenset[str]


# --- durations -------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """A ramp step's `after` ('<n>m|h|d', API.md's spelling, at most 365d) → timedelta;
    ValueError with the message otherwise."""
    return durations.parse_duration(
        text,
        minimum=timedelta(0),
        maximum=MAXIMUM_RAMP_AFTER,
        example="24h",
        subject="A step's after",
    )


# --- untrusted JSON → spec -------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.details: list[Detail] = []

    def add(self, field_path: str, message: str) -> None:
        self.details.append({"field": field_path, "message": message})

    def text(
        self, value: Any, path: str, *, limit: int, required: bool = False, name: bool = False
    ) -> str:
        """A string within `limit`, without U+0000; a `name` without any control character."""
        if not isinstance(value, str):
            self.add(path, "Must be a string.")
            return ""
        problem = name_problem(value) if name else None
        if "\x00" in value:
            self.add(path, "Must not contain the NUL character (U+0000).")
        elif problem is not None:
            self.add(path, problem)
        elif len(value) > limit:
            self.add(path, f"At most {limit} characters.")
        elif required and not value.strip():
            self.add(path, "Must not be blank.")
        return value

    def number(self, value: Any, path: str, default: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, "Must be a number.")
            return default
        if not math.isfinite(value):
            self.add(path, "Must be a finite number.")
            return default
        return float(value)

    def bounded(self, value: Any, path: str, bound: Bound) -> None:
        problem = bound.problem(value)
        if problem is not None:
            self.add(path, problem)

    def listing(self, value: Any, path: str, limit: int) -> list[Any]:
        if not isinstance(value, list):
            self.add(path, "Must be a list.")
            return []
        if len(value) > limit:
            self.add(path, f"At most {limit} entries.")
            return []
        return value

    def string_list(self, value: Any, path: str, limit: int) -> tuple[str, ...]:
        items = self.listing(value, path, limit)
        return tuple(
            self.text(item, f"{path}.{index}", limit=ATTRIBUTE_MAX_LENGTH, required=True, name=True)
            for index, item in enumerate(items)
        )


PAYLOAD_FIELDS = frozenset(
    {
        "key",
        "model",
        "description",
        "hypothesis",
        "owner",
        "variants",
        "control",
        "metrics",
        "primary_metric",
        "guardrail_metrics",
        "breakdown_attributes",
        "targeting",
        "coverage",
        "ramp",
        "alpha",
        "mde",
    }
)


def parse_payload(payload: Any, *, base: ExperimentSpec | None = None) -> ExperimentSpec:
    """A POST body (base None) or a PATCH body applied to `base` → spec; ValidationFailed with
    every shape problem otherwise. Domain rules are spec_problems()'s."""
    if not isinstance(payload, Mapping):
        raise ValidationFailed("The body must be a JSON object.")
    problems = _Collector()
    for unknown in sorted(set(payload) - PAYLOAD_FIELDS):
        problems.add(str(unknown)[:100], "Unknown field.")
    if base is None:
        for required in ("key", "model", "variants", "control"):
            if required not in payload:
                problems.add(required, "This field is required.")
    elif "key" in payload and payload["key"] != base.key:
        problems.add("key", "The key of an experiment never changes.")
    values: dict[str, Any] = {}
    _parse_scalars(payload, problems, values)
    _parse_lists(payload, problems, values)
    if problems.details:
        raise ValidationFailed("The experiment is invalid.", details=problems.details)
    if base is None:
        values.setdefault("variants", ())
        return ExperimentSpec(**values)
    values.pop("key", None)
    return replace(base, **values)


def _parse_scalars(
    payload: Mapping[str, Any], problems: _Collector, values: dict[str, Any]
) -> None:
    for name in ("key", "model", "control"):
        if name in payload:
            values[name] = problems.text(
                payload[name], name, limit=ATTRIBUTE_MAX_LENGTH, required=True, name=True
            )
    for name, limit in (("description", MAX_TEXT), ("hypothesis", MAX_TEXT), ("owner", 200)):
        if name in payload:
            values[name] = problems.text(payload[name], name, limit=limit)
    for name in ("coverage", "alpha", "mde"):
        if name in payload:
            values[name] = problems.number(payload[name], name)
    if "primary_metric" in payload:
        raw = payload["primary_metric"]
        values["primary_metric"] = (
            None
            if raw is None
            else problems.text(
                raw, "primary_metric", limit=ATTRIBUTE_MAX_LENGTH, required=True, name=True
            )
        )


def _parse_lists(payload: Mapping[str, Any], problems: _Collector, values: dict[str, Any]) -> None:
    if "variants" in payload:
        values["variants"] = tuple(
            _parse_variant(item, f"variants.{index}", problems)
            for index, item in enumerate(
                problems.listing(payload["variants"], "variants", MAX_VARIANTS)
            )
        )
    if "metrics" in payload:
        values["metrics"] = tuple(
            _parse_metric(item, f"metrics.{index}", problems)
            for index, item in enumerate(
                problems.listing(payload["metrics"], "metrics", MAX_METRICS)
            )
        )
    for name in ("guardrail_metrics", "breakdown_attributes"):
        if name in payload:
            values[name] = problems.string_list(payload[name], name, MAX_METRICS)
    if "targeting" in payload:
        values["targeting"] = _parse_targeting(payload["targeting"], problems)
    if "ramp" in payload:
        raw = payload["ramp"]
        values["ramp"] = tuple(
            _parse_ramp_step(item, f"ramp.{index}", problems)
            for index, item in enumerate(
                [] if raw is None else problems.listing(raw, "ramp", MAX_RAMP_STEPS)
            )
        )


def _object(value: Any, path: str, allowed: set[str], problems: _Collector) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        problems.add(path, "Must be an object.")
        return {}
    for unknown in sorted(set(value) - allowed):
        problems.add(f"{path}.{str(unknown)[:100]}", "Unknown field.")
    return value


def _parse_variant(value: Any, path: str, problems: _Collector) -> VariantSpec:
    item = _object(value, path, {"key", "model_version", "weight"}, problems)
    for required in ("key", "model_version", "weight"):
        if item and required not in item:
            problems.add(f"{path}.{required}", "This field is required.")
    return VariantSpec(
        key=problems.text(item.get("key", ""), f"{path}.key", limit=100, required=True, name=True),
        model_version=problems.text(
            item.get("model_version", ""),
            f"{path}.model_version",
            limit=100,
            required=True,
            name=True,
        ),
        weight=problems.number(item.get("weight", 0.0), f"{path}.weight"),
    )


def _parse_metric(value: Any, path: str, problems: _Collector) -> MetricSpec:
    item = _object(value, path, {"key", "type"}, problems)
    kind = item.get("type", "")
    if item and kind not in MetricType.values:
        problems.add(f"{path}.type", "Must be 'binomial' or 'mean'.")
    return MetricSpec(
        key=problems.text(item.get("key", ""), f"{path}.key", limit=100, required=True, name=True),
        type=kind if isinstance(kind, str) else "",
    )


def _parse_targeting(value: Any, problems: _Collector) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add("targeting", "Must be an object of attribute → list of allowed values.")
        return {}
    if len(value) > MAX_TARGETING_ATTRIBUTES:
        problems.add("targeting", f"At most {MAX_TARGETING_ATTRIBUTES} attributes.")
        return {}
    parsed: dict[str, tuple[str, ...]] = {}
    for attribute, allowed in value.items():
        path = f"targeting.{str(attribute)[:100]}"
        problems.text(attribute, path, limit=ATTRIBUTE_MAX_LENGTH, required=True, name=True)
        items = problems.listing(allowed, path, MAX_TARGETING_VALUES)
        texts = []
        for index, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                problems.add(f"{path}.{index}", "Must be a string, number or boolean.")
                continue
            if not isinstance(item, str) and (problem := VALUE.problem(item)) is not None:
                problems.add(f"{path}.{index}", problem)
                continue
            texts.append(
                problems.text(attribute_text(item), f"{path}.{index}", limit=VALUE_MAX_LENGTH)
            )
        parsed[str(attribute)] = tuple(texts)
    return parsed


def _parse_ramp_step(value: Any, path: str, problems: _Collector) -> RampStepSpec:
    item = _object(value, path, {"coverage", "after"}, problems)
    if item and "coverage" not in item:
        problems.add(f"{path}.coverage", "This field is required.")
    after = timedelta(0)
    raw_after = item.get("after")
    if raw_after is not None:
        if not isinstance(raw_after, str):
            problems.add(f"{path}.after", "Must be a duration such as '24h'.")
        else:
            try:
                after = parse_duration(raw_after)
            except ValueError as error:
                problems.add(f"{path}.after", str(error))
    return RampStepSpec(
        coverage=problems.number(item.get("coverage", 0.0), f"{path}.coverage"), after=after
    )


# --- domain rules ------------------------------------------------------------------------------


def spec_problems(spec: ExperimentSpec, facts: RegistryFacts) -> list[Detail]:
    """Every rule the spec breaks (empty when it is valid)."""
    problems = _Collector()
    if not KEY_RE.fullmatch(spec.key):
        problems.add("key", KEY_MESSAGE)
    if not facts.model_exists:
        problems.add("model", f"No model named {spec.model!r} is registered.")
    _check_variants(spec, facts, problems)
    _check_metrics(spec, problems)
    _check_segments(spec, facts, problems)
    _check_rates(spec, problems)
    _check_ramp(spec, problems)
    return problems.details


def _check_variants(spec: ExperimentSpec, facts: RegistryFacts, problems: _Collector) -> None:
    variants = spec.variants
    if len(variants) < 2:
        problems.add("variants", "An experiment needs at least two variants.")
    if len(variants) > MAX_VARIANTS:
        problems.add("variants", f"At most {MAX_VARIANTS} variants.")
    seen: set[str] = set()
    for index, variant in enumerate(variants):
        _check_variant(spec, facts, problems, f"variants.{index}", variant, seen)
        seen.add(variant.key)
    weights = [variant.weight for variant in variants]
    # A weight out of [0, 1] is reported above; summing huge ones could overflow.
    total = math.fsum(weights) if all(0.0 <= weight <= 1.0 for weight in weights) else 1.0
    if variants and abs(total - 1.0) > WEIGHT_TOLERANCE:
        problems.add("variants", f"The weights add up to {total:g}; they must add up to 1.")
    if spec.control not in seen:
        problems.add(
            "control",
            "Choose exactly one control: the key of one of the variants"
            + (f" ({', '.join(sorted(seen))})." if seen else "."),
        )


def _check_variant(
    spec: ExperimentSpec,
    facts: RegistryFacts,
    problems: _Collector,
    path: str,
    variant: VariantSpec,
    seen: set[str],
) -> None:
    if not KEY_RE.fullmatch(variant.key):
        problems.add(f"{path}.key", KEY_MESSAGE)
    if variant.key in seen:
        problems.add(f"{path}.key", f"Two variants are called {variant.key!r}.")
    if not 0.0 <= variant.weight <= 1.0:
        problems.add(f"{path}.weight", "A weight is between 0 and 1.")
    if variant.version_model is not None and variant.version_model != spec.model:
        problems.add(
            f"{path}.model_version",
            f"Version {variant.model_version!r} belongs to model {variant.version_model!r},"
            f" not to {spec.model!r}.",
        )
    elif facts.model_exists and variant.model_version not in facts.versions:
        problems.add(
            f"{path}.model_version",
            f"{variant.model_version!r} is not a registered version of model {spec.model!r}.",
        )


def _check_metrics(spec: ExperimentSpec, problems: _Collector) -> None:
    keys: set[str] = set()
    for index, metric in enumerate(spec.metrics):
        if not KEY_RE.fullmatch(metric.key):
            problems.add(f"metrics.{index}.key", KEY_MESSAGE)
        if metric.key in keys:
            problems.add(f"metrics.{index}.key", f"The metric {metric.key!r} is listed twice.")
        keys.add(metric.key)
    if spec.primary_metric is not None and spec.primary_metric not in keys:
        problems.add(
            "primary_metric", f"The primary metric {spec.primary_metric!r} is not a metric above."
        )
    for index, guardrail in enumerate(spec.guardrail_metrics):
        if guardrail not in keys:
            problems.add(
                f"guardrail_metrics.{index}",
                f"The guardrail metric {guardrail!r} is not one of the experiment's metrics.",
            )


def _check_segments(spec: ExperimentSpec, facts: RegistryFacts, problems: _Collector) -> None:
    if not facts.model_exists:
        return
    allowed = ", ".join(sorted(facts.segment_attributes)) or "none"
    for index, attribute in enumerate(spec.breakdown_attributes):
        if attribute not in facts.segment_attributes:
            problems.add(
                f"breakdown_attributes.{index}",
                f"{attribute!r} is not a segment attribute of model {spec.model!r}"
                f" (its segment attributes: {allowed}).",
            )
    if len(set(spec.breakdown_attributes)) != len(spec.breakdown_attributes):
        problems.add("breakdown_attributes", "An attribute is listed twice.")
    for attribute, values in spec.targeting.items():
        if not values:
            problems.add(f"targeting.{attribute}", "List at least one allowed value.")


def _check_rates(spec: ExperimentSpec, problems: _Collector) -> None:
    if not 0.0 <= spec.coverage <= 1.0:
        problems.add("coverage", "Coverage is a share of subjects, between 0 and 1.")
    if not ALPHA.contains(spec.alpha):
        problems.add("alpha", "alpha is a significance level, strictly between 0 and 1.")
    if not MDE.contains(spec.mde):
        problems.add("mde", f"mde is a relative lift {MDE.text} (0.05 for 5%, 100 for +10,000%).")


def _check_ramp(spec: ExperimentSpec, problems: _Collector) -> None:
    previous: RampStepSpec | None = None
    for index, step in enumerate(spec.ramp):
        path = f"ramp.{index}"
        if not 0.0 <= step.coverage <= 1.0:
            problems.add(f"{path}.coverage", "Coverage is a share of subjects, between 0 and 1.")
        if previous is not None:
            if step.after <= previous.after:
                problems.add(
                    f"{path}.after",
                    "Each step comes later than the one before"
                    f" ({format_duration(step.after)} is not after"
                    f" {format_duration(previous.after)}).",
                )
            if step.coverage < previous.coverage:
                problems.add(
                    f"{path}.coverage",
                    "A ramp never lowers coverage: each step's coverage is at least the previous"
                    " step's.",
                )
        elif step.after > timedelta(0) and step.coverage < spec.coverage:
            problems.add(
                f"{path}.coverage",
                f"The first step ({step.coverage:g}) would lower the coverage ({spec.coverage:g});"
                " a ramp only raises it. Start the ramp at 0h or lower the coverage.",
            )
        previous = step


# --- assignment requests -----------------------------------------------------------------------

ASSIGNMENT_FIELDS = frozenset({"experiment", "subject", "attributes"})


def parse_assignment(payload: Any) -> tuple[str, str, dict[str, Any]]:
    """(experiment, subject, attributes) of a POST /assignments body; ValidationFailed else."""
    if not isinstance(payload, dict):
        raise ValidationFailed("The body must be a JSON object.")
    max_length = int(settings.KAIZEN_MAX_STRING_LENGTH)
    problems = _Collector()
    for unknown in sorted(set(payload) - ASSIGNMENT_FIELDS):
        problems.add(str(unknown)[:100], "Unknown field.")
    for required in ("experiment", "subject"):
        if required not in payload:
            problems.add(required, "This field is required.")
    experiment = problems.text(payload.get("experiment", ""), "experiment", limit=100, name=True)
    subject = problems.text(payload.get("subject", ""), "subject", limit=max_length, required=True)
    attributes = payload.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        problems.add("attributes", "Must be a flat object of string → string, number or boolean.")
        attributes = {}
    else:
        _check_attributes(attributes, problems, max_length)
    if problems.details:
        raise ValidationFailed("The assignment request is invalid.", details=problems.details)
    return experiment, subject, attributes


def _check_attributes(attributes: dict[str, Any], problems: _Collector, max_length: int) -> None:
    limit = int(settings.KAIZEN_MAX_ATTRIBUTES)
    if len(attributes) > limit:
        problems.add("attributes", f"At most {limit} attributes.")
        return
    for name, value in attributes.items():
        path = f"attributes.{name[:100]}"
        if len(name) > ATTRIBUTE_MAX_LENGTH or not name:
            problems.add(path, f"Attribute names have 1-{ATTRIBUTE_MAX_LENGTH} characters.")
        elif name_problem(name) is not None:
            problems.add(path, f"Attribute names are names. {name_problem(name)}")
        elif isinstance(value, str):
            problems.text(value, path, limit=max_length)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            problems.bounded(value, path, VALUE)
        else:
            problems.add(path, "Must be a string, number or boolean (attributes are flat).")

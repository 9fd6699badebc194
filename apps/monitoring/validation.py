"""The rules a threshold rule's configuration obeys, shared by the API and the admin.

Pure Python (no ORM): `parse_rule` turns untrusted JSON (a POST body, or a PATCH body over
the stored rule) into a RuleSpec, collecting every problem as an API.md detail with a dotted
`field`; `rule_problems` checks a spec against what the registry says about its model.
Durations are written `<n>m|h|d` (API.md); a window is whole hours, at least 1h. Every
number has a finite range (API.md "Limits"): the threshold within ±1e15 (every metric a rule
watches is finite, so every comparison is), min_samples a whole number from 1 to 1e9, a
numeric segment value within ±1e15 like any attribute value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from apps.core import durations
from apps.core.bounds import VALUE, Bound
from apps.core.durations import format_duration as format_duration  # its callers import it here
from apps.core.errors import Detail, ValidationFailed
from apps.core.text import name_problem
from apps.monitoring.models import MINIMUM_COOLDOWN, MINIMUM_WINDOW, Action, Comparator

MAXIMUM_WINDOW = timedelta(days=30)
MAXIMUM_COOLDOWN = timedelta(days=365)
MAXIMUM_MIN_SAMPLES = 1_000_000_000
MIN_SAMPLES = Bound(1, MAXIMUM_MIN_SAMPLES, integer=True)
NAME_MAX_LENGTH = 200
VALUE_MAX_LENGTH = 1024
URL_MAX_LENGTH = 2048
NOTE_MAX_LENGTH = 1024
ERROR_MAX_LENGTH = 10_000
# Metrics that need a classification or a regression model: a rule on the other kind of
# model would never see a value.
CLASSIFICATION_METRICS = frozenset({"accuracy", "precision", "recall", "f1"})
REGRESSION_METRICS = frozenset({"mae", "rmse"})

DEFAULT_WINDOW = "1h"
DEFAULT_COOLDOWN = "1h"
DEFAULT_MIN_SAMPLES = 100

CREATE_FIELDS = (
    "name",
    "model",
    "metric",
    "segment",
    "window",
    "comparator",
    "threshold",
    "min_samples",
    "cooldown",
    "action",
    "enabled",
    "webhook_url",
    "open_canary",
)
REQUIRED_FIELDS = ("name", "model", "metric", "comparator", "threshold")
PATCH_FIELDS = (*CREATE_FIELDS, "rotate_webhook_secret")


@dataclass(frozen=True)
class RuleSpec:
    """Everything a person configures on a rule, normalised."""

    name: str
    model: str
    metric: str
    comparator: str
    threshold: float
    segment: tuple[str, str] | None = None
    window: timedelta = timedelta(hours=1)
    min_samples: int = DEFAULT_MIN_SAMPLES
    cooldown: timedelta = timedelta(hours=1)
    action: str = Action.ALERT.value
    enabled: bool = True
    webhook_url: str = ""
    open_canary: bool = False


@dataclass(frozen=True)
class ModelFacts:
    """What the registry says about the spec's model: looked up by the service."""

    exists: bool
    task: str = ""
    segment_attributes: frozenset[str] = frozenset()


@dataclass
class Problems:
    details: list[Detail] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.details.append({"field": path, "message": message})

    def raise_if_any(self, message: str) -> None:
        if self.details:
            raise ValidationFailed(message, details=self.details)


# --- durations -------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """'<n>m|h|d' → timedelta, at most the longest duration a rule takes (its cooldown's);
    ValueError otherwise. window_problem and cooldown_problem check each field's range."""
    return durations.parse_duration(text, minimum=timedelta(0), maximum=MAXIMUM_COOLDOWN)


def window_problem(window: timedelta) -> str | None:
    if window < MINIMUM_WINDOW or window > MAXIMUM_WINDOW:
        return f"A window is {durations.range_text(MINIMUM_WINDOW, MAXIMUM_WINDOW)}."
    if window.total_seconds() % 3600:
        return "A window is a whole number of hours (performance is kept per hour)."
    return None


def cooldown_problem(cooldown: timedelta) -> str | None:
    if cooldown < MINIMUM_COOLDOWN or cooldown > MAXIMUM_COOLDOWN:
        return f"A cooldown is {durations.range_text(MINIMUM_COOLDOWN, MAXIMUM_COOLDOWN)}."
    return None


# --- values ----------------------------------------------------------------------------------


def attribute_text(value: object) -> str:
    """An attribute value as segments compare it: strings as they are, JSON spelling else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_text(
    problems: Problems,
    value: Any,
    path: str,
    *,
    limit: int,
    required: bool = False,
    name: bool = False,
) -> str:
    """A string within `limit`, without U+0000; a `name` (or URL) without any control
    character."""
    if not isinstance(value, str):
        problems.add(path, "Must be a string.")
        return ""
    problem = name_problem(value) if name else None
    if "\x00" in value:
        problems.add(path, "Must not contain the NUL character (U+0000).")
    elif problem is not None:
        problems.add(path, problem)
    elif len(value) > limit:
        problems.add(path, f"At most {limit} characters.")
    elif required and not value.strip():
        problems.add(path, "Must not be blank.")
    return value


def _is_public_literal(host: str) -> bool | None:
    """None when `host` is a name (resolved at delivery), else whether the address is public."""
    if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(
        ".localhost"
    ):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return is_public_address(address)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may reach `address` when private targets are not allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_webhook_url(
    problems: Problems, value: Any, path: str = "webhook_url", *, allow_private: bool
) -> str:
    """An http(s) URL with a host and no credentials; "" or None clears the webhook."""
    if value is None or value == "":
        return ""
    before = len(problems.details)
    url = check_text(problems, value, path, limit=URL_MAX_LENGTH, name=True)
    if len(problems.details) > before:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        problems.add(path, "Not a valid URL.")
        return ""
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        problems.add(path, "Use an http:// or https:// URL with a host.")
    elif parts.username is not None or parts.password is not None:
        problems.add(path, "Credentials in the URL are not allowed; the payload is signed.")
    elif any(character.isspace() for character in url):
        problems.add(path, "A URL has no whitespace.")
    elif port == 0:
        problems.add(path, "Port 0 is not a port.")
    elif not allow_private and _is_public_literal(parts.hostname) is False:
        problems.add(
            path,
            "Private, loopback and link-local targets are refused "
            "(KAIZEN_WEBHOOK_ALLOW_PRIVATE allows them).",
        )
    return url


# --- untrusted JSON → spec -------------------------------------------------------------------


def _parse_segment(problems: Problems, value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.add("segment", 'Must be an object of one attribute, e.g. {"country": "DE"}.')
        return None
    if len(value) != 1:
        problems.add("segment", "A rule watches at most one attribute (or none: null).")
        return None
    ((attribute, raw),) = value.items()
    name = check_text(problems, attribute, "segment", limit=100, required=True, name=True)
    path = f"segment.{str(attribute)[:100]}"
    if not isinstance(raw, str | bool | int | float):
        problems.add(path, "Must be a string, number or boolean.")
        return None
    if not isinstance(raw, str | bool) and (problem := VALUE.problem(raw)) is not None:
        problems.add(path, problem)
        return None
    text = check_text(problems, attribute_text(raw), path, limit=VALUE_MAX_LENGTH)
    return (name, text)


def _parse_duration_field(problems: Problems, value: Any, path: str) -> timedelta | None:
    if not isinstance(value, str):
        problems.add(path, "Must be a duration such as '6h'.")
        return None
    window = path == "window"
    try:
        duration = durations.parse_duration(
            value,
            minimum=MINIMUM_WINDOW if window else MINIMUM_COOLDOWN,
            maximum=MAXIMUM_WINDOW if window else MAXIMUM_COOLDOWN,
            subject="A window" if window else "A cooldown",
        )
    except ValueError as error:
        problems.add(path, str(error))
        return None
    problem = window_problem(duration) if window else None
    if problem is not None:
        problems.add(path, problem)
        return None
    return duration


def _parse_min_samples(problems: Problems, value: Any) -> int | None:
    problem = MIN_SAMPLES.problem(value)
    if problem is not None:
        problems.add("min_samples", problem)
        return None
    return int(value)


def _parse_choice(problems: Problems, value: Any, path: str, choices: list[str]) -> str | None:
    if not isinstance(value, str) or value not in choices:
        problems.add(path, f"One of: {', '.join(choices)}.")
        return None
    return value


def _parse_boolean(problems: Problems, value: Any, path: str) -> bool | None:
    if not isinstance(value, bool):
        problems.add(path, "Must be true or false.")
        return None
    return value


def _name(problems: Problems, value: Any, path: str, limit: int) -> str:
    return check_text(problems, value, path, limit=limit, required=True, name=True)


def _field_values(
    payload: Mapping[str, Any], problems: Problems, *, allow_private: bool
) -> dict[str, Any]:
    """The given fields parsed; a field with a problem is left out (its problem recorded)."""
    parsers: dict[str, Any] = {
        "name": lambda v: _name(problems, v, "name", NAME_MAX_LENGTH),
        "model": lambda v: _name(problems, v, "model", 100),
        "metric": lambda v: _name(problems, v, "metric", 50),
        "segment": lambda v: _parse_segment(problems, v),
        "window": lambda v: _parse_duration_field(problems, v, "window"),
        "cooldown": lambda v: _parse_duration_field(problems, v, "cooldown"),
        "comparator": lambda v: _parse_choice(problems, v, "comparator", Comparator.values),
        "action": lambda v: _parse_choice(problems, v, "action", Action.values),
        "min_samples": lambda v: _parse_min_samples(problems, v),
        "enabled": lambda v: _parse_boolean(problems, v, "enabled"),
        "open_canary": lambda v: _parse_boolean(problems, v, "open_canary"),
        "webhook_url": lambda v: check_webhook_url(problems, v, allow_private=allow_private),
    }
    values: dict[str, Any] = {}
    for name, parse in parsers.items():
        if name not in payload:
            continue
        before = len(problems.details)
        parsed = parse(payload[name])
        if len(problems.details) == before:
            values[name] = parsed
    if "threshold" in payload:
        problem = VALUE.problem(payload["threshold"])
        if problem is None:
            values["threshold"] = float(payload["threshold"])
        else:
            problems.add("threshold", problem)
    return values


_DEFAULTS = RuleSpec(name="", model="", metric="", comparator="", threshold=0.0)


def parse_rule(
    payload: Any, *, base: RuleSpec | None = None, allow_private: bool
) -> tuple[RuleSpec, bool]:
    """A POST body (base None) or a PATCH body over `base`: (spec, rotate_webhook_secret).

    Raises ValidationFailed listing every problem; unknown fields are problems.
    """
    problems = Problems()
    if not isinstance(payload, Mapping):
        raise ValidationFailed("The body must be a JSON object.")
    known = PATCH_FIELDS if base is not None else CREATE_FIELDS
    for unknown in sorted(set(map(str, payload)) - set(known)):
        problems.add(unknown[:100], "Unknown field.")
    if base is None:
        for required in REQUIRED_FIELDS:
            if required not in payload:
                problems.add(required, "This field is required.")
    values = _field_values(payload, problems, allow_private=allow_private)
    rotate = False
    if base is not None and "rotate_webhook_secret" in payload:
        flag = payload["rotate_webhook_secret"]
        rotate = bool(_parse_boolean(problems, flag, "rotate_webhook_secret"))
    problems.raise_if_any("The rule is invalid.")
    start = base if base is not None else _DEFAULTS
    if base is None:
        values.setdefault("window", parse_duration(DEFAULT_WINDOW))
        values.setdefault("cooldown", parse_duration(DEFAULT_COOLDOWN))
    return replace(start, **values), rotate


def rule_problems(
    spec: RuleSpec, facts: ModelFacts, *, metrics: Collection[str], model_fixed: str | None
) -> list[Detail]:
    """The rules `spec` breaks given its model; `model_fixed` is the stored model on a change."""
    problems = Problems()
    if model_fixed is not None and spec.model != model_fixed:
        problems.add("model", "The model of a rule never changes; create another rule.")
    if not facts.exists:
        problems.add("model", f"No model named {spec.model!r} is registered.")
    if spec.metric not in metrics:
        problems.add("metric", f"One of: {', '.join(metrics)}.")
    elif facts.exists and _metric_misfits(spec.metric, facts.task):
        problems.add("metric", f"{spec.metric!r} does not apply to a {facts.task} model.")
    if spec.segment is not None and facts.exists:
        attribute = spec.segment[0]
        if attribute not in facts.segment_attributes:
            allowed = ", ".join(sorted(facts.segment_attributes)) or "none"
            problems.add(
                f"segment.{attribute[:100]}",
                f"{attribute!r} is not a segment attribute of model {spec.model!r}"
                f" (its segment attributes: {allowed}).",
            )
    # The API refuses these while parsing; the admin's form fields reach here unbounded.
    for path, value, bound in (
        ("threshold", spec.threshold, VALUE),
        ("min_samples", spec.min_samples, MIN_SAMPLES),
    ):
        if (problem := bound.problem(value)) is not None:
            problems.add(path, problem)
    if spec.open_canary and spec.action != Action.RETRAIN:
        problems.add("open_canary", "A canary is opened by a retrained version: action retrain.")
    return problems.details


def _metric_misfits(metric: str, task: str) -> bool:
    if metric in CLASSIFICATION_METRICS:
        return task == "regression"
    if metric in REGRESSION_METRICS:
        return task != "regression"
    return False


# --- other bodies ----------------------------------------------------------------------------


def parse_acknowledgement(payload: Any) -> str:
    """An acknowledgement body: nothing, or {"note": "..."}; the note."""
    if payload is None or payload == {}:
        return ""
    problems = Problems()
    if not isinstance(payload, Mapping):
        raise ValidationFailed("The body must be a JSON object.")
    for unknown in sorted(set(map(str, payload)) - {"note"}):
        problems.add(unknown[:100], "Unknown field.")
    note = check_text(problems, payload.get("note", ""), "note", limit=NOTE_MAX_LENGTH)
    problems.raise_if_any("The acknowledgement is invalid.")
    return note


def parse_failure(payload: Any) -> tuple[str, bool]:
    """A /fail body: {"error": "...", "retry": false}; (error, retry)."""
    problems = Problems()
    if not isinstance(payload, Mapping):
        raise ValidationFailed("The body must be a JSON object.")
    for unknown in sorted(set(map(str, payload)) - {"error", "retry"}):
        problems.add(unknown[:100], "Unknown field.")
    if "error" not in payload:
        problems.add("error", "This field is required.")
    error = check_text(
        problems, payload.get("error", ""), "error", limit=ERROR_MAX_LENGTH, required=True
    )
    retry = payload.get("retry", False)
    if not isinstance(retry, bool):
        problems.add("retry", "Must be true or false.")
    problems.raise_if_any("The failure report is invalid.")
    return error, bool(retry)

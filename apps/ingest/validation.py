"""One compiled pass over an ingestion body: decode, type-check and bound every event.

The msgspec types below are built from the configured limits (API.md "Conventions") the
first time a set of limits is seen, so a valid body is decoded and validated by msgspec's C
code alone into Structs, with no other per-item Python objects. Only a body that fails that
pass takes the slow path, which decodes each event on its own to report every bad index.

Rules checked here without the database: shapes and types, unknown keys, string lengths and
NUL characters, key counts, finite numbers that fit a float, RFC 3339 times with an offset
no further in the future than allowed, output-or-error, experiment-with-variant-and-subject,
explanation keys among the features. References (model versions, experiments) are checked
by services.py against the per-process caches.

`content_hash` defines when two events are equal (API.md "Idempotency"): the Struct encoded
with its fields in a fixed order and dict keys sorted, times as UTC instants, numbers as
floats (msgspec turns every JSON number into a float where a float is expected), and
hashed with BLAKE2b-128. Stored rows carry this hash: changing the canonical form would
turn re-posts of stored events into conflicts, so it changes only with a migration that
recomputes the column.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

import msgspec
from django.conf import settings

from apps.core.errors import ApplicationError, Detail, PayloadTooLarge, ValidationFailed

Kind = Literal["prediction", "feedback"]


class InvalidJson(ApplicationError):
    code = "invalid_json"
    status = 400


@dataclass(frozen=True)
class Limits:
    """API.md's configurable limits, read from settings when a request needs them."""

    batch_events: int
    attributes: int
    features: int
    string_length: int
    future_seconds: int
    body_bytes: int

    @classmethod
    def current(cls) -> Limits:
        return cls(
            batch_events=settings.KAIZEN_MAX_BATCH_EVENTS,
            attributes=settings.KAIZEN_MAX_ATTRIBUTES,
            features=settings.KAIZEN_MAX_FEATURES,
            string_length=settings.KAIZEN_MAX_STRING_LENGTH,
            future_seconds=settings.KAIZEN_MAX_FUTURE_SECONDS,
            body_bytes=settings.KAIZEN_MAX_BODY_BYTES,
        )


# The shapes msgspec builds (as Structs of the classes made in _codec); typed for callers.
class OutputIn(Protocol):
    label: str | None
    score: float | None
    value: float | None


class PredictionIn(Protocol):
    id: uuid.UUID
    model: str
    model_version: str
    occurred_at: datetime
    subject: str | None
    experiment: str | None
    variant: str | None
    attributes: dict[str, str | float | bool] | None
    features: dict[str, float | str | bool | None] | None
    output: OutputIn | None
    error: str | None
    explanation: dict[str, float] | None
    latency_ms: float | None


class FeedbackIn(Protocol):
    id: uuid.UUID
    prediction_id: uuid.UUID
    metric: str
    value: float | None
    label: str | None
    occurred_at: datetime


Problem = tuple[str, str]  # (field, message)
Check = Callable[[Any, datetime], list[Problem] | None]


@dataclass(frozen=True)
class _Codec:
    batch: msgspec.json.Decoder[Any]
    single: msgspec.json.Decoder[Any]
    check: Check


@dataclass(frozen=True)
class Decoded:
    """The events of a body, in order; None where an event failed (its problems in details)."""

    events: list[Any]
    batch: bool
    details: list[Detail]


_ENVELOPE = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
# Dict keys sorted; Struct fields in their fixed declaration order.
_CANONICAL = msgspec.json.Encoder(order="deterministic")
# A NUL can only reach a decoded string through this escape (raw control bytes are invalid).
_NUL_ESCAPE = b"\\u0000"


_JSON = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    """JSON of a decoded value, for a jsonb column (PostgreSQL orders jsonb keys itself)."""
    return _JSON.encode(value)


def content_hash(event: Any) -> bytes:
    """BLAKE2b-128 of the event's canonical JSON (see the module docstring)."""
    return hashlib.blake2b(_CANONICAL.encode(event), digest_size=16).digest()


def decode(body: bytes, *, kind: Kind, limits: Limits) -> Decoded:
    """The events of an ingestion body, or the envelope-level error (400, 413) raised.

    Item-level problems do not raise: they come back in `details` with their index, so the
    caller can add its own (references) and answer every bad index at once.
    """
    if len(body) > limits.body_bytes:
        raise PayloadTooLarge(f"The request body is over {limits.body_bytes} bytes.")
    if not body.strip():
        raise InvalidJson('The body is empty; send one event or {"events": [...]}.')
    codec = _codec(kind, limits)
    events: list[Any]
    try:
        events = codec.batch.decode(body).events
        batch = True
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        try:
            events = [codec.single.decode(body)]
            batch = False
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return _slow_decode(body, codec, limits)
    if batch:
        _check_count(len(events), limits)
    details = _check_events(events, codec.check, limits, has_nul=_NUL_ESCAPE in body)
    return Decoded(events=events, batch=batch, details=details)


def _check_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise ValidationFailed(
            f"The batch is empty; send 1 to {limits.batch_events} events.",
            details=[{"field": "events", "message": "At least one event."}],
        )
    if count > limits.batch_events:
        raise PayloadTooLarge(
            f"The batch holds {count} events; send at most {limits.batch_events} per request."
        )


def _check_events(
    events: list[Any], check: Check, limits: Limits, *, has_nul: bool
) -> list[Detail]:
    """Problems of the decoded events (each failing event is replaced by None)."""
    horizon = datetime.now(UTC) + timedelta(seconds=limits.future_seconds)
    details: list[Detail] = []
    for index, event in enumerate(events):
        if event is None:
            continue
        problems = check(event, horizon)
        if has_nul:
            problems = (problems or []) + _nul_problems(event)
        if problems:
            details.extend({"index": index, "field": f, "message": m} for f, m in problems)
            events[index] = None
    return details


def _slow_decode(body: bytes, codec: _Codec, limits: Limits) -> Decoded:
    """Decode event by event to report every bad index (only bodies that failed run this)."""
    top = _envelope(body)
    if "events" not in top:
        event, problem = _decode_one(codec, body)
        details = [] if problem is None else [problem]
        events = [event]
        details += _check_events(events, codec.check, limits, has_nul=_NUL_ESCAPE in body)
        return Decoded(events=events, batch=False, details=details)
    envelope_problems: list[Detail] = [
        {"field": key, "message": 'Unknown field; a batch is {"events": [...]} alone.'}
        for key in sorted(top)
        if key != "events"
    ]
    try:
        items = _ITEMS.decode(top["events"])
    except msgspec.ValidationError as error:
        raise ValidationFailed(
            "events must be an array of event objects.",
            details=[*envelope_problems, {"field": "events", "message": _message(error)}],
        ) from error
    _check_count(len(items), limits)
    events = []
    details = []
    for index, item in enumerate(items):
        event, problem = _decode_one(codec, item)
        events.append(event)
        if problem is not None:
            details.append({"index": index, **problem})
    details += _check_events(events, codec.check, limits, has_nul=_NUL_ESCAPE in body)
    if envelope_problems:
        raise ValidationFailed("The batch is invalid.", details=envelope_problems + details)
    details.sort(key=lambda detail: int(detail["index"]))
    return Decoded(events=events, batch=True, details=details)


def _envelope(body: bytes) -> dict[str, msgspec.Raw]:
    try:
        return _ENVELOPE.decode(body)
    except UnicodeDecodeError as error:
        raise InvalidJson("The body is not UTF-8.") from error
    except RecursionError as error:
        raise InvalidJson("The body is nested too deeply.") from error
    except msgspec.ValidationError as error:
        raise ValidationFailed(
            'The body must be a JSON object: one event, or {"events": [...]}.',
            details=[{"message": _message(error)}],
        ) from error
    except msgspec.DecodeError as error:
        raise InvalidJson(f"The body is not valid JSON: {error}.") from error


def _decode_one(codec: _Codec, raw: bytes | msgspec.Raw) -> tuple[Any, Detail | None]:
    try:
        return codec.single.decode(raw), None
    except msgspec.ValidationError as error:
        return None, _problem(error)
    except RecursionError as error:
        raise InvalidJson("The body is nested too deeply.") from error
    except UnicodeDecodeError as error:
        raise InvalidJson("The body is not UTF-8.") from error
    except msgspec.DecodeError as error:
        raise InvalidJson(f"The body is not valid JSON: {error}.") from error


_LOCATION = re.compile(r"^(?P<message>.*?) - at `(?P<path>[^`]*)`(?: in `(?P<container>[^`]*)`)?$")
_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<name>[^`]*)`")


def _message(error: msgspec.ValidationError) -> str:
    match = _LOCATION.match(str(error))
    return match.group("message") if match else str(error)


def _problem(error: msgspec.ValidationError) -> Detail:
    """API.md's detail from msgspec's message: "Expected `float`, got `str` - at `$.x.y`"."""
    text = str(error)
    match = _LOCATION.match(text)
    message, path = (match.group("message"), match.group("path")) if match else (text, "$")
    if match and match.group("container"):  # "... - at `key` in `$.attributes`"
        path = match.group("container")
        message = f"{message} (a key)"
    field = re.sub(r"\[(\d+)\]", r".\1", path.removeprefix("$").replace("[...]", ""))
    field = field.lstrip(".")
    named = _NAMED_FIELD.match(message)
    if named:
        field = f"{field}.{named.group('name')}" if field else named.group("name")
    problem: Detail = {"field": field} if field else {}
    problem["message"] = message
    return problem


def _nul_problems(event: Any) -> list[Problem]:
    """Fields whose strings hold U+0000 (PostgreSQL text cannot store it)."""
    found: list[Problem] = []
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if isinstance(value, msgspec.Struct):
            found += [(f"{name}.{field}", message) for field, message in _nul_problems(value)]
        elif _holds_nul(value):
            found.append((name, "Strings must not contain U+0000."))
    return found


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    return False


def _normalise_time(event: Any, horizon: datetime) -> Problem | None:
    """Store and hash occurred_at as a UTC instant; refuse it past the horizon."""
    try:
        event.occurred_at = event.occurred_at.astimezone(UTC)
    except OverflowError:
        return ("occurred_at", "The time is out of range.")
    if event.occurred_at > horizon:
        return ("occurred_at", "More than the allowed time in the future; check the clock.")
    return None


def _check_prediction(event: Any, horizon: datetime) -> list[Problem] | None:
    problem = _normalise_time(event, horizon)
    problems = [problem] if problem else None
    output = event.output
    if output is None:
        if event.error is None:
            problems = (problems or []) + [("output", "Send output, or error if the model failed.")]
    elif event.error is not None:
        problems = (problems or []) + [("error", "Send either output or error, not both.")]
    elif output.label is None and output.score is None and output.value is None:
        problems = (problems or []) + [("output", "Give at least one of label, score, value.")]
    if (event.experiment is None) != (event.variant is None):
        field = "variant" if event.variant is None else "experiment"
        problems = (problems or []) + [(field, "experiment and variant go together.")]
    elif event.experiment is not None and event.subject is None:
        problems = (problems or []) + [("subject", "Required with an experiment.")]
    explanation = event.explanation
    if explanation is not None and event.features is not None:
        if not explanation.keys() <= event.features.keys():
            problems = (problems or []) + [
                ("explanation", "Its keys must be among the features' keys.")
            ]
    return problems


def _check_feedback(event: Any, horizon: datetime) -> list[Problem] | None:
    problem = _normalise_time(event, horizon)
    problems = [problem] if problem else None
    if (event.value is None) == (event.label is None):
        problems = (problems or []) + [("value", "Send exactly one of value or label.")]
    return problems


@functools.cache
def _codec(kind: Kind, limits: Limits) -> _Codec:
    """msgspec decoders for one kind of event under `limits` (built once per process)."""
    text = Annotated[str, msgspec.Meta(max_length=limits.string_length)]
    name = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.string_length)]
    moment = Annotated[datetime, msgspec.Meta(tz=True)]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]]
    if kind == "prediction":
        output = msgspec.defstruct(
            "Output",
            [
                ("label", text | None, None),
                ("score", float | None, None),
                ("value", float | None, None),
            ],
            forbid_unknown_fields=True,
            gc=False,
        )
        fields = [
            ("id", uuid.UUID),
            ("model", name),
            ("model_version", name),
            ("occurred_at", moment),
            ("subject", name | None, None),
            ("experiment", name | None, None),
            ("variant", name | None, None),
            (
                "attributes",
                Annotated[
                    dict[text, text | float | bool], msgspec.Meta(max_length=limits.attributes)
                ]
                | None,
                None,
            ),
            (
                "features",
                Annotated[
                    dict[text, float | text | bool | None], msgspec.Meta(max_length=limits.features)
                ]
                | None,
                None,
            ),
            ("output", output | None, None),
            ("error", text | None, None),
            (
                "explanation",
                Annotated[dict[text, float], msgspec.Meta(max_length=limits.features)] | None,
                None,
            ),
            ("latency_ms", Annotated[float, msgspec.Meta(ge=0)] | None, None),
        ]
        check: Check = _check_prediction
    else:
        fields = [
            ("id", uuid.UUID),
            ("prediction_id", uuid.UUID),
            ("metric", name),
            ("occurred_at", moment),
            ("value", float | None, None),
            ("label", text | None, None),
        ]
        check = _check_feedback
    # gc=False: events hold only scalars and flat dicts, never a cycle, so the collector
    # need not track the thousands a batch creates.
    event = msgspec.defstruct(kind.title(), fields, forbid_unknown_fields=True, gc=False)
    batch = msgspec.defstruct("Batch", [("events", list[event])], forbid_unknown_fields=True)  # type: ignore[valid-type]  # built at run time
    return _Codec(
        batch=msgspec.json.Decoder(batch), single=msgspec.json.Decoder(event), check=check
    )

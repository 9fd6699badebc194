"""One compiled pass over an ingestion body: decode, type-check and bound every event.

The msgspec types are built from the declaration of each event shape (shapes.py) under the
configured limits (API.md "Conventions") the first time a set of limits is seen, so a valid
body is decoded, type-checked and bounded by msgspec's C code alone into Structs, with no
other per-item Python objects. Only a body that fails that pass takes the slow path, which
decodes each event on its own to report every bad index with the field's dotted path (for a
value inside a map, the key too: `features.tenure_days`).

Rules checked here without the database: shapes and types, unknown keys, string lengths,
key counts, numbers within their declared bounds (apps.core.bounds), RFC 3339 times with an
offset no further in the future than allowed, and each shape's cross-field rules. U+0000 in
any string and control characters in names (name fields, map keys) are looked for only in
bodies whose bytes could carry them (an escape, DEL or a C1 character), which valid bodies
from ordinary clients rarely do. References (model versions, experiments) are checked by
services.py against the per-process caches.

`content_hash` defines when two events are equal (API.md "Idempotency"): the Struct encoded
with its fields in the declaration's order and dict keys sorted, times as UTC instants,
numbers as floats (every number of an event is declared a float), and hashed with
BLAKE2b-128. Stored rows carry this hash: changing the canonical form (reordering, renaming
or retyping a declared field) would turn re-posts of stored events into conflicts, so it
changes only with a migration that recomputes the column.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

import msgspec
from django.conf import settings

from apps.core.bounds import Bound
from apps.core.errors import ApplicationError, Detail, PayloadTooLarge, ValidationFailed
from apps.ingest.shapes import SHAPES, Field, Map, Object, Problem, Scalar, Shape

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


@dataclass(frozen=True)
class _Codec:
    shape: Shape
    batch: msgspec.json.Decoder[Any]
    single: msgspec.json.Decoder[Any]
    # Per map field: a decoder of one of its values (the slow path names the failing key).
    values: dict[str, msgspec.json.Decoder[Any]]


@dataclass(frozen=True)
class Decoded:
    """The events of a body, in order; None where an event failed (its problems in details)."""

    events: list[Any]
    batch: bool
    details: list[Detail]


_ENVELOPE = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_MAP_ITEMS = msgspec.json.Decoder(dict[str, msgspec.Raw])
# Dict keys sorted; Struct fields in their fixed declaration order.
_CANONICAL = msgspec.json.Encoder(order="deterministic")
# A control character (U+0000 included) reaches a decoded string only through an escape (raw
# C0 bytes are invalid JSON), as DEL or as a C1 character (UTF-8 0xC2 0x80-0x9F).
_CONTROL_HINTS = (b"\\", b"\x7f", b"\xc2")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NUL_MESSAGE = "Strings must not contain U+0000."
_CONTROL_MESSAGE = "Names must not contain control characters (U+0000-U+001F, U+007F-U+009F)."


_JSON = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    """JSON of a decoded value, for a jsonb column (PostgreSQL orders jsonb keys itself)."""
    return _JSON.encode(value)


def content_hash(event: Any) -> bytes:
    """BLAKE2b-128 of the event's canonical JSON (see the module docstring)."""
    return hashlib.blake2b(_CANONICAL.encode(event), digest_size=16).digest()


def decode(body: bytes, *, kind: Kind, limits: Limits, shape: Shape | None = None) -> Decoded:
    """The events of an ingestion body, or the envelope-level error (400, 413) raised.

    Item-level problems do not raise: they come back in `details` with their index, so the
    caller can add its own (references) and answer every bad index at once. `shape` replaces
    the declaration of `kind` (bench/bench_ingest.py times a variant without bounds).
    """
    if len(body) > limits.body_bytes:
        raise PayloadTooLarge(f"The request body is over {limits.body_bytes} bytes.")
    if not body.strip():
        raise InvalidJson('The body is empty; send one event or {"events": [...]}.')
    codec = _codec(kind, limits) if shape is None else _codec_of(shape, limits)
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
    details = _check_events(events, codec, limits, suspect=_may_hold_control(body))
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


def _may_hold_control(body: bytes) -> bool:
    return any(hint in body for hint in _CONTROL_HINTS)


def _check_events(
    events: list[Any], codec: _Codec, limits: Limits, *, suspect: bool
) -> list[Detail]:
    """Problems of the decoded events (each failing event is replaced by None)."""
    horizon = datetime.now(UTC) + timedelta(seconds=limits.future_seconds)
    rules = codec.shape.rules
    fields = codec.shape.fields
    details: list[Detail] = []
    for index, event in enumerate(events):
        if event is None:
            continue
        problem = _normalise_time(event, horizon)
        problems = rules(event)
        if problem is not None:
            problems = [problem, *(problems or [])]
        if suspect:
            problems = (problems or []) + _text_problems(event, fields)
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
        details += _check_events(events, codec, limits, suspect=_may_hold_control(body))
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
    details += _check_events(events, codec, limits, suspect=_may_hold_control(body))
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
        return None, _problem(error, codec, raw)
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


def _problem(error: msgspec.ValidationError, codec: _Codec, raw: bytes | msgspec.Raw) -> Detail:
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
    declared = _declared(codec.shape.fields, field)
    if declared is not None and path.endswith("[...]") and isinstance(declared.type, Map):
        key = _failing_key(codec, raw, field)
        if key is not None:
            field = f"{field}.{key[:_KEY_ECHO]}"
    if declared is not None and _OUT_OF_RANGE.match(message):
        bound = _bound_of(declared)
        if bound is not None:
            message = bound.out_of_range
    problem: Detail = {"field": field} if field else {}
    problem["message"] = message
    return problem


# msgspec's words for a number outside a Meta(ge/le) bound, or beyond a float's range.
_OUT_OF_RANGE = re.compile(r"^(Expected `(float|int)` [<>]=? |Number out of range$)")
# A key named in a field's path is cut to this many characters.
_KEY_ECHO = 100


def _declared(fields: tuple[Field, ...], path: str) -> Field | None:
    """The declared field at a dotted path of an event ("output.score"), if any."""
    name, _, rest = path.partition(".")
    found = next((field for field in fields if field.name == name), None)
    if found is None or not rest:
        return found
    return _declared(found.type.fields, rest) if isinstance(found.type, Object) else None


def _bound_of(field: Field) -> Bound | None:
    scalars = field.type.values if isinstance(field.type, Map) else (field.type,)
    return next(
        (scalar.bound for scalar in scalars if isinstance(scalar, Scalar) and scalar.bound),
        None,
    )


def _failing_key(codec: _Codec, raw: bytes | msgspec.Raw, name: str) -> str | None:
    """The first key of map field `name` whose value fails its declared type."""
    try:
        entries = _MAP_ITEMS.decode(_ENVELOPE.decode(raw)[name])
    except (msgspec.DecodeError, KeyError, RecursionError):
        return None
    decoder = codec.values[name]
    for key, value in entries.items():
        try:
            decoder.decode(value)
        except (msgspec.DecodeError, RecursionError):
            return key
    return None


def _text_problems(struct: Any, fields: tuple[Field, ...], prefix: str = "") -> list[Problem]:
    """U+0000 in any string (PostgreSQL text cannot store it); control characters in names."""
    found: list[Problem] = []
    for field in fields:
        value = getattr(struct, field.name)
        if value is None:
            continue
        path = prefix + field.name
        kind = field.type
        if isinstance(kind, Object):
            found += _text_problems(value, kind.fields, f"{path}.")
        elif isinstance(kind, Map):
            problem = _map_problem(value)
            if problem is not None:
                found.append((path, problem))
        elif isinstance(value, str) and "\x00" in value:
            found.append((path, _NUL_MESSAGE))
        elif kind.kind == "name" and _CONTROL.search(value):
            found.append((path, _CONTROL_MESSAGE))
    return found


def _map_problem(entries: dict[str, Any]) -> str | None:
    if any(
        "\x00" in key or (isinstance(item, str) and "\x00" in item) for key, item in entries.items()
    ):
        return _NUL_MESSAGE
    if any(_CONTROL.search(key) for key in entries):
        return _CONTROL_MESSAGE
    return None


def _normalise_time(event: Any, horizon: datetime) -> Problem | None:
    """Store and hash occurred_at as a UTC instant; refuse it past the horizon."""
    try:
        event.occurred_at = event.occurred_at.astimezone(UTC)
    except OverflowError:
        return ("occurred_at", "The time is out of range.")
    if event.occurred_at > horizon:
        return ("occurred_at", "More than the allowed time in the future; check the clock.")
    return None


@functools.cache
def _codec(kind: Kind, limits: Limits) -> _Codec:
    """msgspec decoders for one kind of event under `limits` (built once per process)."""
    return _build(SHAPES[kind], limits)


@functools.cache
def _codec_of(shape: Shape, limits: Limits) -> _Codec:
    return _build(shape, limits)


def _build(shape: Shape, limits: Limits) -> _Codec:
    event = _struct(shape.kind.title(), shape.fields, limits)
    batch = msgspec.defstruct("Batch", [("events", list[event])], forbid_unknown_fields=True)  # type: ignore[valid-type]  # built at run time
    values = {
        field.name: msgspec.json.Decoder(_union(field.type.values, limits))
        for field in shape.fields
        if isinstance(field.type, Map)
    }
    return _Codec(
        shape=shape,
        batch=msgspec.json.Decoder(batch),
        single=msgspec.json.Decoder(event),
        values=values,
    )


def _struct(name: str, fields: tuple[Field, ...], limits: Limits) -> type[msgspec.Struct]:
    """A Struct of the declared fields, in their order (the canonical order of the hash)."""
    declared: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in fields:
        kind = _type(field, limits)
        declared.append((field.name, kind) if field.required else (field.name, kind | None, None))
    # gc=False: events hold only scalars and flat dicts, never a cycle, so the collector
    # need not track the thousands a batch creates.
    return msgspec.defstruct(name, declared, forbid_unknown_fields=True, gc=False)


def _type(field: Field, limits: Limits) -> Any:
    kind = field.type
    if isinstance(kind, Object):
        return _struct(kind.name, kind.fields, limits)
    if isinstance(kind, Map):
        keys: Any = Annotated[str, msgspec.Meta(max_length=limits.string_length)]
        values = _union(kind.values, limits)
        size = msgspec.Meta(max_length=getattr(limits, kind.max_keys))
        return Annotated[dict[keys, values], size]  # type: ignore[valid-type]  # built at run time
    return _scalar(kind, limits)


def _union(scalars: tuple[Scalar, ...], limits: Limits) -> Any:
    union: Any = None
    for scalar in scalars:
        kind = _scalar(scalar, limits)
        union = kind if union is None else union | kind
    return union


def _scalar(scalar: Scalar, limits: Limits) -> Any:
    if scalar.kind == "number":  # every declared number is bounded (tests/ingest/test_shapes.py)
        return float if scalar.bound is None else Annotated[float, scalar.bound.meta()]
    return {
        "uuid": uuid.UUID,
        "name": Annotated[str, msgspec.Meta(min_length=1, max_length=limits.string_length)],
        "text": Annotated[str, msgspec.Meta(max_length=limits.string_length)],
        "time": Annotated[datetime, msgspec.Meta(tz=True)],
        "boolean": bool,
        "null": type(None),
    }[scalar.kind]

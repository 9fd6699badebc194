"""Checks and normal forms of registry input, shared by the API, the admin and other apps.

Pure Python (no ORM): each `clean_*` function takes what a caller sent (possibly of the wrong
type, since API bodies are untrusted JSON), collects every problem as an API.md detail with a
dotted `field`, and either raises one ValidationFailed or returns the normal form that is
stored and hashed.

Every number has a finite range (API.md "Limits", apps.core.bounds): decision_threshold a
share in [0, 1]; metric values and feature importances within ±1e15; in hyperparameters and
tags an integer (written without a fraction or exponent) within int64, any other number
within ±1e15. An integer such as a seed stays exact up to int64; the wider numbers a float
could only approximate, or that overflow when a reader computes with them, are refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from apps.core.bounds import INT64, SHARE, VALUE
from apps.core.errors import Detail, ValidationFailed
from apps.core.text import name_problem
from apps.registry.models import NAME_PATTERN, Task

NAME_RE = re.compile(NAME_PATTERN)
SHA256_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
NAME_MESSAGE = "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."
ATTRIBUTE_MAX_LENGTH = 100
ACTOR_MAX_LENGTH = 200
# Entries of one JSON object or list inside hyperparameters, metrics or tags.
MAX_JSON_ENTRIES = 1000
MAX_DATASET_VERSIONS = 100
# Integers beyond 2**53 are kept as integers: a float would silently merge distinct seeds.
_EXACT_FLOAT_LIMIT = 2**53


def max_string_length() -> int:
    return int(settings.KAIZEN_MAX_STRING_LENGTH)


@dataclass
class Problems:
    """Every problem of one input, reported together."""

    details: list[Detail] = field(default_factory=list)

    def add(self, field_path: str, message: str) -> None:
        self.details.append({"field": field_path, "message": message})

    def raise_if_any(self, message: str) -> None:
        if self.details:
            raise ValidationFailed(message, details=self.details)


def json_number_problem(value: int | float) -> str | None:
    """The range of a number inside free-form JSON (hyperparameters, tags): an integer within
    int64, any other number within ±1e15."""
    bound = INT64 if isinstance(value, int) else VALUE
    if bound.problem(value) is None:
        return None
    return f"Out of range: an integer must be {INT64.text}, any other number {VALUE.text}."


def check_string(
    problems: Problems,
    value: Any,
    field_path: str,
    *,
    max_length: int | None = None,
    required: bool = False,
    name: bool = False,
) -> str:
    """A string without U+0000 and within the length limit; "" when it is not one.

    A `name` (of an attribute, a feature, a dataset) holds no control character at all.
    """
    limit = max_string_length() if max_length is None else max_length
    if not isinstance(value, str):
        problems.add(field_path, "Must be a string.")
        return ""
    problem = name_problem(value) if name else None
    if "\x00" in value:
        problems.add(field_path, "Must not contain the NUL character (U+0000).")
    elif problem is not None:
        problems.add(field_path, problem)
    elif len(value) > limit:
        problems.add(field_path, f"At most {limit} characters.")
    elif required and not value.strip():
        problems.add(field_path, "Must not be blank.")
    return value


def is_name(value: Any) -> bool:
    """Whether `value` is a valid model, version or alias name (lookups of others find nothing)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def check_name(problems: Problems, value: Any, field_path: str) -> str:
    if not isinstance(value, str):
        problems.add(field_path, "Must be a string.")
        return ""
    if not NAME_RE.fullmatch(value):
        problems.add(field_path, NAME_MESSAGE)
    return value


def _optional_string(problems: Problems, value: Any, field_path: str, max_length: int) -> str:
    """An optional string: None means not given and is stored as ""."""
    if value is None:
        return ""
    return check_string(problems, value, field_path, max_length=max_length)


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFields:
    """The editable fields of a model in normal form (what is stored and compared)."""

    task: str
    description: str
    positive_label: str
    decision_threshold: float
    segment_attributes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "description": self.description,
            "positive_label": self.positive_label,
            "decision_threshold": self.decision_threshold,
            "segment_attributes": list(self.segment_attributes),
        }


def clean_model_fields(
    *,
    task: Any,
    description: Any,
    positive_label: Any,
    decision_threshold: Any,
    segment_attributes: Any,
    problems: Problems,
) -> ModelFields:
    """Check a model's fields together (positive_label depends on task); None = default."""
    if task not in Task.values:
        problems.add("task", f"One of {', '.join(Task.values)}.")
    text = _optional_string(problems, description, "description", max_string_length())
    label = _optional_string(problems, positive_label, "positive_label", max_string_length())
    label_given_as_text = positive_label is None or isinstance(positive_label, str)
    if task == Task.BINARY_CLASSIFICATION and not label and label_given_as_text:
        problems.add("positive_label", "Required for a binary_classification model.")
    threshold = 0.5 if decision_threshold is None else decision_threshold
    problem = SHARE.problem(threshold)
    if problem is not None:
        problems.add("decision_threshold", problem)
        threshold = 0.5
    attributes = clean_segment_attributes(problems, segment_attributes)
    return ModelFields(
        task=task if isinstance(task, str) else "",
        description=text,
        positive_label=label,
        decision_threshold=float(threshold),
        segment_attributes=attributes,
    )


def clean_segment_attributes(problems: Problems, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        problems.add("segment_attributes", "Must be a list of attribute names.")
        return []
    limit = int(settings.KAIZEN_MAX_ATTRIBUTES)
    if len(value) > limit:
        problems.add("segment_attributes", f"At most {limit} attributes.")
        return []
    seen: set[str] = set()
    cleaned: list[str] = []
    for position, item in enumerate(value):
        path = f"segment_attributes.{position}"
        name = check_string(
            problems, item, path, max_length=ATTRIBUTE_MAX_LENGTH, required=True, name=True
        )
        if name in seen:
            problems.add(path, f"Duplicate attribute {name!r}.")
        seen.add(name)
        cleaned.append(name)
    return cleaned


# --- versions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionContent:
    """A version's content in normal form; its canonical JSON hash decides idempotency."""

    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    features: list[dict[str, Any]]
    dataset_versions: list[dict[str, str]]
    artifact_uri: str
    artifact_sha256: str
    code_version: str
    tags: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "hyperparameters": self.hyperparameters,
            "metrics": self.metrics,
            "features": self.features,
            "dataset_versions": self.dataset_versions,
            "artifact_uri": self.artifact_uri,
            "artifact_sha256": self.artifact_sha256,
            "code_version": self.code_version,
            "tags": self.tags,
        }

    def content_hash(self) -> str:
        return content_hash(self.as_dict())


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON: sorted keys, integral floats written as integers."""
    canonical = orjson.dumps(_canonical(content), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
        return int(value)
    return value


def clean_version_content(
    *,
    hyperparameters: Any,
    metrics: Any,
    features: Any,
    dataset_versions: Any,
    artifact_uri: Any,
    artifact_sha256: Any,
    code_version: Any,
    tags: Any,
    problems: Problems,
) -> VersionContent:
    """Check a version's content; None means not given (empty)."""
    limit = max_string_length()
    sha = _optional_string(problems, artifact_sha256, "artifact_sha256", limit)
    if sha and len(sha) <= limit and "\x00" not in sha and not SHA256_RE.fullmatch(sha):
        problems.add("artifact_sha256", "Must be 64 hexadecimal characters (a SHA-256 digest).")
    return VersionContent(
        hyperparameters=_clean_object(problems, hyperparameters, "hyperparameters", depth=2),
        metrics=_clean_metrics(problems, metrics),
        features=_clean_features(problems, features),
        dataset_versions=_clean_dataset_versions(problems, dataset_versions),
        artifact_uri=_optional_string(problems, artifact_uri, "artifact_uri", limit),
        artifact_sha256=sha.lower(),
        code_version=_optional_string(problems, code_version, "code_version", limit),
        tags=_clean_object(problems, tags, "tags", depth=1),
    )


def _clean_object(problems: Problems, value: Any, path: str, *, depth: int) -> dict[str, Any]:
    """A JSON object of scalars and lists of scalars, nested at most `depth` objects deep."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(path, "Must be a JSON object.")
        return {}
    if len(value) > MAX_JSON_ENTRIES:
        problems.add(path, f"At most {MAX_JSON_ENTRIES} keys.")
        return {}
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        item_path = f"{path}.{key}"
        if not _check_key(problems, key, path):
            continue
        if isinstance(item, Mapping) and depth > 1:
            cleaned[key] = _clean_object(problems, item, item_path, depth=depth - 1)
        elif isinstance(item, list) and depth > 1:
            cleaned[key] = _clean_scalar_list(problems, item, item_path)
        else:
            cleaned[key] = _clean_scalar(problems, item, item_path, nested=depth > 1)
    return cleaned


def _check_key(problems: Problems, key: Any, path: str) -> bool:
    if not isinstance(key, str) or not key:
        problems.add(path, "Keys must be non-empty strings.")
        return False
    if "\x00" in key or len(key) > max_string_length():
        problems.add(path, f"Keys are at most {max_string_length()} characters, without NUL.")
        return False
    problem = name_problem(key)
    if problem is not None:
        problems.add(path, f"Keys are names. {problem}")
        return False
    return True


def _clean_scalar_list(problems: Problems, items: list[Any], path: str) -> list[Any]:
    if len(items) > MAX_JSON_ENTRIES:
        problems.add(path, f"At most {MAX_JSON_ENTRIES} items.")
        return []
    return [
        _clean_scalar(problems, item, f"{path}.{position}", nested=False)
        for position, item in enumerate(items)
    ]


def _clean_scalar(problems: Problems, value: Any, path: str, *, nested: bool) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_string(problems, value, path)
    if isinstance(value, int | float):
        problem = json_number_problem(value)
        if problem is not None:
            problems.add(path, problem)
        return value
    if nested:
        problems.add(path, "Nested too deeply: use a string, number, boolean, null or a list.")
    else:
        problems.add(path, "Must be a string, number, boolean or null.")
    return None


def _clean_metrics(problems: Problems, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add("metrics", "Must be a JSON object of metric name to number.")
        return {}
    if len(value) > MAX_JSON_ENTRIES:
        problems.add("metrics", f"At most {MAX_JSON_ENTRIES} metrics.")
        return {}
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if not _check_key(problems, key, "metrics"):
            continue
        problem = VALUE.problem(item)
        if problem is not None:
            problems.add(f"metrics.{key}", problem)
        cleaned[key] = item
    return cleaned


def _clean_features(problems: Problems, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        problems.add("features", "Must be a list of {name, importance?} objects.")
        return []
    limit = int(settings.KAIZEN_MAX_FEATURES)
    if len(value) > limit:
        problems.add("features", f"At most {limit} features.")
        return []
    seen: set[str] = set()
    cleaned: list[dict[str, Any]] = []
    for position, item in enumerate(value):
        path = f"features.{position}"
        if not isinstance(item, Mapping):
            problems.add(path, "Must be an object {name, importance?}.")
            continue
        for unknown in sorted(set(map(str, item)) - {"name", "importance"}):
            problems.add(f"{path}.{unknown}", "Unknown field.")
        name = check_string(problems, item.get("name"), f"{path}.name", required=True, name=True)
        if name in seen:
            problems.add(f"{path}.name", f"Duplicate feature {name!r}.")
        seen.add(name)
        feature: dict[str, Any] = {"name": name}
        importance = item.get("importance")
        if importance is not None:
            problem = VALUE.problem(importance)
            if problem is not None:
                problems.add(f"{path}.importance", problem)
            feature["importance"] = importance
        cleaned.append(feature)
    return cleaned


def _clean_dataset_versions(problems: Problems, value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        problems.add("dataset_versions", "Must be a list of {name, version} objects.")
        return []
    if len(value) > MAX_DATASET_VERSIONS:
        problems.add("dataset_versions", f"At most {MAX_DATASET_VERSIONS} dataset versions.")
        return []
    seen: set[tuple[str, str]] = set()
    cleaned: list[dict[str, str]] = []
    for position, item in enumerate(value):
        path = f"dataset_versions.{position}"
        if not isinstance(item, Mapping):
            problems.add(path, "Must be an object {name, version}.")
            continue
        for unknown in sorted(set(map(str, item)) - {"name", "version"}):
            problems.add(f"{path}.{unknown}", "Unknown field.")
        name = check_string(problems, item.get("name"), f"{path}.name", required=True, name=True)
        version = check_string(
            problems, item.get("version"), f"{path}.version", required=True, name=True
        )
        if (name, version) in seen:
            problems.add(path, f"Duplicate dataset version {name!r} {version!r}.")
        seen.add((name, version))
        cleaned.append({"name": name, "version": version})
    return cleaned


def reject_unknown(problems: Problems, data: Mapping[str, Any], known: Sequence[str]) -> None:
    for unknown in sorted(set(map(str, data)) - set(known)):
        problems.add(unknown, "Unknown field.")

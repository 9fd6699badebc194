"""Request and response shapes of the registry API.

Request serializers declare the bodies for the OpenAPI schema and give `read_body` the known
and required fields; the values themselves are checked by the services (apps.registry.
validation), the one place the API, the admin and other apps share. Response serializers
turn rows into the JSON the API answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from apps.core.bounds import INT64, SHARE, VALUE
from apps.core.errors import ValidationFailed
from apps.registry.models import NAME_PATTERN, Alias, MLModel, ModelVersion, Task
from apps.registry.selectors import AliasMove
from apps.registry.validation import MAX_DATASET_VERSIONS, Problems

_UNKNOWN_FIELD_ECHO = 200
_JSON_NUMBERS = (
    f"Numbers: an integer (no fraction or exponent) {INT64.text}, any other number {VALUE.text}."
)

# --- requests ---------------------------------------------------------------------------------


class _Name(serializers.RegexField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NAME_PATTERN, max_length=100, **kwargs)


class MLModelCreateSerializer(serializers.Serializer[Any]):
    """A new model; null in an optional field means not given (its default)."""

    name = _Name(help_text="1-100 letters, digits, '.', '_' or '-', starting alphanumeric.")
    task = serializers.ChoiceField(choices=Task.choices)
    description = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=1024
    )
    positive_label = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=1024,
        help_text="Required for binary_classification: the label counted as positive.",
    )
    decision_threshold = SHARE.serializer_field("Default 0.5.", required=False, allow_null=True)
    segment_attributes = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        allow_null=True,
        max_length=50,
        help_text="Unique attribute names performance and drift are broken down by.",
    )


class MLModelUpdateSerializer(serializers.Serializer[Any]):
    description = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    positive_label = serializers.CharField(required=False, max_length=1024)
    decision_threshold = SHARE.serializer_field(required=False)
    segment_attributes = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    task = serializers.ChoiceField(
        choices=Task.choices,
        required=False,
        help_text="Immutable: accepted only when equal to the registered task.",
    )


class ModelVersionFeatureSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=1024)
    importance = VALUE.serializer_field(required=False, allow_null=True)


class ModelVersionDatasetSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=1024)
    version = serializers.CharField(max_length=1024)


class ModelVersionRegisterSerializer(serializers.Serializer[Any]):
    version = _Name()
    hyperparameters = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        allow_null=True,
        help_text="Values: string, number, boolean, null, a list of those, or one nested "
        f"object. {_JSON_NUMBERS}",
    )
    metrics = serializers.DictField(
        child=VALUE.serializer_field(),
        required=False,
        allow_null=True,
        help_text="Metric name → number.",
    )
    features = ModelVersionFeatureSerializer(
        many=True, required=False, allow_null=True, help_text="At most 500, unique names."
    )
    dataset_versions = ModelVersionDatasetSerializer(
        many=True, required=False, allow_null=True, help_text=f"At most {MAX_DATASET_VERSIONS}."
    )
    artifact_uri = serializers.CharField(required=False, allow_null=True, max_length=1024)
    artifact_sha256 = serializers.RegexField(
        r"^[0-9A-Fa-f]{64}$", required=False, allow_null=True, help_text="SHA-256, hex."
    )
    code_version = serializers.CharField(required=False, allow_null=True, max_length=1024)
    tags = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        allow_null=True,
        help_text=f"Tag → string, number, boolean or null. {_JSON_NUMBERS}",
    )


class AliasTargetSerializer(serializers.Serializer[Any]):
    version = _Name(help_text="A registered version of the model.")


def read_body(
    request: Request, shape: type[serializers.Serializer[Any]], *, nulls: bool = True
) -> dict[str, Any]:
    """The body as a dict of the fields `shape` declares: unknown or missing fields are a 400.

    With `nulls=False` (PATCH) a null value is refused rather than read as "unchanged".
    """
    data = request.data
    if not isinstance(data, Mapping):
        raise ValidationFailed("The body must be a JSON object.")
    fields = shape().fields
    problems = Problems()
    for key in data:
        if key not in fields:
            problems.add(str(key)[:_UNKNOWN_FIELD_ECHO], "Unknown field.")
        elif data[key] is None and not nulls:
            problems.add(key, 'Must not be null (send "" to clear a text field).')
    for name, declared in fields.items():
        if declared.required and name not in data:
            problems.add(name, "This field is required.")
    problems.raise_if_any("The request body is invalid.")
    return dict(data)


# --- responses --------------------------------------------------------------------------------


class _EmptyAsNull(serializers.CharField):
    """An optional text stored as "": answered as null when empty."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return str(value) if value else None


class AliasMoveSerializer(serializers.Serializer[AliasMove]):
    version = serializers.CharField()
    previous_version = serializers.CharField(allow_null=True)
    actor = serializers.CharField()
    at = serializers.DateTimeField()
    rollback = serializers.BooleanField()


class ModelAliasSummarySerializer(serializers.Serializer[Alias]):
    name = serializers.CharField()
    version = serializers.CharField(source="version.version")
    previous_version = serializers.CharField(source="previous_version.version", allow_null=True)
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()


class ModelAliasSerializer(ModelAliasSummarySerializer):
    """An alias with its latest moves, newest first (context["history"]: name → moves)."""

    history = serializers.SerializerMethodField()

    @extend_schema_field(AliasMoveSerializer(many=True))
    def get_history(self, alias: Alias) -> list[dict[str, Any]]:
        moves: dict[str, list[AliasMove]] = self.context.get("history", {})
        return [dict(AliasMoveSerializer(move).data) for move in moves.get(alias.name, [])]


class MLModelSerializer(serializers.Serializer[MLModel]):
    name = serializers.CharField()
    task = serializers.ChoiceField(choices=Task.choices)
    description = serializers.CharField()
    positive_label = _EmptyAsNull()
    decision_threshold = serializers.FloatField()
    segment_attributes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    aliases = ModelAliasSummarySerializer(many=True, source="aliases.all")


class MLModelDetailSerializer(MLModelSerializer):
    """A model with each alias's history (pass context={"history": alias_history(...)})."""

    aliases = ModelAliasSerializer(many=True, source="aliases.all")


class ModelVersionSerializer(serializers.Serializer[ModelVersion]):
    model = serializers.CharField(source="model.name")
    version = serializers.CharField()
    hyperparameters = serializers.DictField()
    metrics = serializers.DictField(child=serializers.FloatField())
    features = ModelVersionFeatureSerializer(many=True)
    dataset_versions = ModelVersionDatasetSerializer(many=True)
    artifact_uri = _EmptyAsNull()
    artifact_sha256 = _EmptyAsNull()
    code_version = _EmptyAsNull()
    tags = serializers.DictField()
    content_hash = serializers.CharField(help_text="SHA-256 of the canonical content.")
    aliases = serializers.SerializerMethodField(help_text="The aliases pointing at it.")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, version: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in version.aliases.all())


class MLModelPageSerializer(serializers.Serializer[Any]):
    results = MLModelSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class ModelVersionPageSerializer(serializers.Serializer[Any]):
    results = ModelVersionSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)

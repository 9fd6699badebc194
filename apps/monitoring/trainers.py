"""The reference trainer (KAIZEN_TRAINER's default): learn from the model's own feedback.

It reads the model's latest labeled predictions (KAIZEN_TRAINER_MAX_ROWS, newest by
arrival, each with its latest truth: the `label` feedback for a classifier, the numeric
`label` feedback for a regression model), one-hot encodes string features and scales the
rest (DictVectorizer + StandardScaler; missing and null features count as 0), and fits a
scikit-learn LogisticRegression (Ridge for regression) on 80% of them. The other 20%
measure it: accuracy and macro F1 for a classifier, MAE, RMSE and R² for regression. Its
feature importances are the absolute standardised coefficients (averaged over classes),
summed per input feature and normalised to 1.

It returns the registry payload of the new version, named one above the model's highest
numeric version: metrics, features, hyperparameters, the training data's description in
`dataset_versions` and `tags` (row count, time range), and the job in `tags`. It stores no
artifact: Kaizen has no artifact store; the coefficients are not kept. A model with too
little data raises PermanentTrainingError (another attempt would not help).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import sklearn
from django.conf import settings
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from apps.monitoring import selectors
from apps.monitoring.models import RetrainingJob
from apps.monitoring.services import PermanentTrainingError
from apps.registry import selectors as registry_selectors

MINIMUM_ROWS = 20
HOLDOUT_SHARE = 0.2
RANDOM_STATE = 0
MAX_ITERATIONS = 1000
TRAINER_NAME = "kaizen-reference"


def _features(raw: Any) -> dict[str, float | str]:
    """A prediction's features as DictVectorizer takes them (nulls dropped, booleans 0/1)."""
    values = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    features: dict[str, float | str] = {}
    for name, value in (values or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            features[name] = float(value)
        elif isinstance(value, int | float):
            features[name] = float(value)
        else:
            features[name] = str(value)
    return features


def _next_version(model: str) -> str:
    numbers = [
        int(version)
        for version in registry_selectors.model_version_list(model=model).values_list(
            "version", flat=True
        )
        if version.isascii() and version.isdigit() and len(version) <= 18
    ]
    return str(max(numbers, default=0) + 1)


def _owner(column: str, names: list[str], separator: str) -> str:
    """The input feature a vectorised column comes from: itself, or `<name><sep><value>`."""
    if column in names:
        return column
    prefixes = [name for name in names if column.startswith(name + separator)]
    return max(prefixes, key=len) if prefixes else column


def _importances(pipeline: Pipeline, names: list[str]) -> list[dict[str, Any]]:
    """|standardised coefficient| per input feature (one-hot columns summed), normalised."""
    vectorizer: DictVectorizer = pipeline.named_steps["vectorize"]
    coefficients = np.atleast_2d(pipeline.named_steps["fit"].coef_)
    weights = np.abs(coefficients).mean(axis=0)
    separator = vectorizer.separator
    per_feature: dict[str, float] = dict.fromkeys(names, 0.0)
    for column, weight in zip(vectorizer.get_feature_names_out(), weights, strict=True):
        per_feature[_owner(str(column), names, separator)] += float(weight)
    total = sum(per_feature.values())
    return [
        {"name": name, "importance": (value / total) if total > 0 else 0.0}
        for name, value in sorted(per_feature.items(), key=lambda item: (-item[1], item[0]))
    ]


def _classification(
    train: tuple[list[Any], list[Any]], holdout: tuple[list[Any], list[Any]]
) -> tuple[Pipeline, dict[str, float]]:
    pipeline = Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=False)),
            ("scale", StandardScaler()),
            ("fit", LogisticRegression(max_iter=MAX_ITERATIONS)),
        ]
    )
    pipeline.fit(*train)
    predicted = pipeline.predict(holdout[0])
    metrics = {
        "holdout_accuracy": float(accuracy_score(holdout[1], predicted)),
        "holdout_f1_macro": float(f1_score(holdout[1], predicted, average="macro")),
    }
    return pipeline, metrics


def _regression(
    train: tuple[list[Any], list[Any]], holdout: tuple[list[Any], list[Any]]
) -> tuple[Pipeline, dict[str, float]]:
    pipeline = Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=False)),
            ("scale", StandardScaler()),
            ("fit", Ridge()),
        ]
    )
    pipeline.fit(*train)
    predicted = pipeline.predict(holdout[0])
    metrics = {
        "holdout_mae": float(mean_absolute_error(holdout[1], predicted)),
        "holdout_rmse": float(math.sqrt(mean_squared_error(holdout[1], predicted))),
    }
    if len(holdout[1]) >= 2:
        metrics["holdout_r2"] = float(r2_score(holdout[1], predicted))
    return pipeline, metrics


def _split(
    rows: list[dict[str, float | str]], truths: list[Any], *, regression: bool
) -> tuple[tuple[list[Any], list[Any]], tuple[list[Any], list[Any]]]:
    stratify = None
    if not regression:
        counts: dict[Any, int] = {}
        for truth in truths:
            counts[truth] = counts.get(truth, 0) + 1
        if len(counts) < 2:
            raise PermanentTrainingError(
                f"Every labeled prediction has the label {truths[0]!r}: nothing to learn."
            )
        if min(counts.values()) >= 2:
            stratify = truths
    x_train, x_test, y_train, y_test = train_test_split(
        rows, truths, test_size=HOLDOUT_SHARE, random_state=RANDOM_STATE, stratify=stratify
    )
    return (x_train, y_train), (x_test, y_test)


def reference_trainer(job: RetrainingJob) -> Mapping[str, Any]:
    """Fit on the model's recent labeled predictions; the new version's registry payload."""
    model = registry_selectors.model_get(name=job.model.name)
    regression = model.task == "regression"
    version_ids = list(
        registry_selectors.model_version_list(model=model.name).values_list("id", flat=True)
    )
    data = selectors.labeled_predictions(
        version_ids=version_ids, regression=regression, limit=int(settings.KAIZEN_TRAINER_MAX_ROWS)
    )
    rows = [_features(row.features) for row in data]
    keep = [index for index, features in enumerate(rows) if features]
    if len(keep) < MINIMUM_ROWS:
        raise PermanentTrainingError(
            f"{len(keep)} labeled predictions with features; the reference trainer needs "
            f"at least {MINIMUM_ROWS}."
        )
    rows = [rows[index] for index in keep]
    truths: list[Any] = [
        float(data[index].truth) if regression else str(data[index].truth) for index in keep
    ]
    times: list[datetime] = [data[index].occurred_at for index in keep]
    train, holdout = _split(rows, truths, regression=regression)
    pipeline, metrics = (_regression if regression else _classification)(train, holdout)
    names = sorted({name for features in rows for name in features})
    start, end = min(times), max(times)
    hyperparameters: dict[str, Any] = {
        "algorithm": "Ridge" if regression else "LogisticRegression",
        "holdout_share": HOLDOUT_SHARE,
        "random_state": RANDOM_STATE,
        "scaling": "standard",
        "encoding": "one-hot strings, booleans as 0/1, missing as 0",
    }
    if not regression:
        hyperparameters["max_iter"] = MAX_ITERATIONS
    return {
        "version": _next_version(model.name),
        "hyperparameters": hyperparameters,
        "metrics": {**metrics, "training_rows": len(train[1]), "holdout_rows": len(holdout[1])},
        "features": _importances(pipeline, names)[: int(settings.KAIZEN_MAX_FEATURES)],
        "dataset_versions": [
            {
                "name": f"{model.name}/labeled-predictions",
                "version": f"{start.isoformat()}..{end.isoformat()}",
            }
        ],
        "code_version": f"{TRAINER_NAME}/scikit-learn-{sklearn.__version__}",
        "tags": {
            "trainer": TRAINER_NAME,
            "retraining_job": str(job.id),
            "rule": job.rule_id,
            "training_rows": len(rows),
            "training_data_start": start.isoformat(),
            "training_data_end": end.isoformat(),
        },
    }

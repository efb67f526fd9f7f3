"""The Model manifest's training part, parsed into typed settings with the documented defaults.

The trainer reads the same YAML a user applies (``-f model.yaml``) or the effective
manifest the operator passes as JSON (``--model-json``); both arrive here as a mapping.
Every problem is reported with the manifest path of the offending field, so the user
can find it in the YAML, and before any data is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from mlkube.api.names import is_valid_model_name
from mlkube.api.search import LOWER_IS_BETTER
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.search_spec import SearchSpec, parse_search

Task = Literal["classification", "regression"]

CLASSIFICATION_METRICS: Final = (
    "f1",
    "f1_macro",
    "accuracy",
    "roc_auc",
    "log_loss",
    "precision",
    "recall",
)
REGRESSION_METRICS: Final = ("r2", "rmse", "mae")
DATA_FORMATS: Final = ("csv", "parquet", "jsonl")
_NAMESPACE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class SliceSpec:
    name: str
    query: str
    min_score: float | None = None


@dataclass(frozen=True)
class DataSpec:
    uri: str
    target: str
    features: tuple[str, ...] | None = None  # None: every column but the target
    format: str | None = None  # None: from the URI's extension


@dataclass(frozen=True)
class ValidationSpec:
    metric: str
    test_fraction: float = 0.2
    folds: int = 0
    slices: tuple[SliceSpec, ...] = ()
    random_seed: int = 0


@dataclass(frozen=True)
class QualitySpec:
    max_missing_fraction: float = 0.05
    min_rows: int = 20


@dataclass(frozen=True)
class TrainingSpec:
    name: str
    namespace: str
    task: Task
    estimator_class: str
    estimator_params: dict[str, Any]
    data: DataSpec
    validation: ValidationSpec
    quality: QualitySpec = field(default_factory=QualitySpec)
    search: SearchSpec | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.validation.metric not in LOWER_IS_BETTER


def _section(parent: Mapping[str, Any], key: str, path: str, required: bool) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise TrainingInputError(f"{path}.{key} is required")
        return {}
    if not isinstance(value, Mapping):
        raise TrainingInputError(f"{path}.{key} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _string(parent: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = parent.get(key, default)
    if value is None:
        raise TrainingInputError(f"{path}.{key} is required")
    if not isinstance(value, str) or not value.strip():
        raise TrainingInputError(f"{path}.{key} must be a non-empty string")
    return value


def _number(parent: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = parent.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrainingInputError(f"{path}.{key} must be a number, got {value!r}")
    return float(value)


def _integer(parent: Mapping[str, Any], key: str, path: str, default: int) -> int:
    value = parent.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrainingInputError(f"{path}.{key} must be an integer, got {value!r}")
    return value


def _parse_slices(raw: Any, path: str) -> tuple[SliceSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TrainingInputError(f"{path} must be a list")
    slices: list[SliceSpec] = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise TrainingInputError(f"{where} must be a mapping with name and query")
        name = _string(item, "name", where)
        if any(s.name == name for s in slices):
            raise TrainingInputError(f"{where}.name {name!r} is used twice")
        min_score = item.get("minScore")
        slices.append(
            SliceSpec(
                name=name,
                query=_string(item, "query", where),
                min_score=None if min_score is None else _number(item, "minScore", where, 0.0),
            )
        )
    return tuple(slices)


def _parse_data(training: Mapping[str, Any]) -> DataSpec:
    path = "spec.training.data"
    data = _section(training, "data", "spec.training", required=True)
    uri = _string(data, "uri", path)
    default_target = "target" if uri.startswith("sklearn://") else None
    features = data.get("features")
    if features is not None and (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
    ):
        raise TrainingInputError(f"{path}.features must be a non-empty list of column names")
    if features is not None and len(set(features)) != len(features):
        raise TrainingInputError(f"{path}.features lists a column twice")
    fmt = data.get("format")
    if fmt is not None and fmt not in DATA_FORMATS:
        raise TrainingInputError(
            f"{path}.format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}"
        )
    target = _string(data, "target", path, default_target)
    if features is not None and target in features:
        raise TrainingInputError(f"{path}.features must not include the target {target!r}")
    return DataSpec(
        uri=uri, target=target, features=None if features is None else tuple(features), format=fmt
    )


def _parse_validation(training: Mapping[str, Any], task: Task) -> ValidationSpec:
    path = "spec.training.validation"
    validation = _section(training, "validation", "spec.training", required=False)
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metric = _string(validation, "metric", path, "f1" if task == "classification" else "r2")
    if metric not in allowed:
        raise TrainingInputError(
            f"{path}.metric {metric!r} is not a {task} metric; use one of {', '.join(allowed)}"
        )
    test_fraction = _number(validation, "testFraction", path, 0.2)
    if not 0.0 < test_fraction < 1.0:
        raise TrainingInputError(
            f"{path}.testFraction must be between 0 and 1, got {test_fraction}"
        )
    folds = _integer(validation, "folds", path, 0)
    if folds == 1 or folds < 0:
        raise TrainingInputError(f"{path}.folds must be 0 (no k-fold) or at least 2, got {folds}")
    return ValidationSpec(
        metric=metric,
        test_fraction=test_fraction,
        folds=folds,
        slices=_parse_slices(validation.get("slices"), f"{path}.slices"),
        random_seed=_integer(validation, "randomSeed", path, 0),
    )


def _parse_quality(training: Mapping[str, Any]) -> QualitySpec:
    path = "spec.training.dataQuality"
    quality = _section(training, "dataQuality", "spec.training", required=False)
    max_missing = _number(quality, "maxMissingFraction", path, 0.05)
    if not 0.0 <= max_missing <= 1.0:
        raise TrainingInputError(f"{path}.maxMissingFraction must be between 0 and 1")
    min_rows = _integer(quality, "minRows", path, 20)
    if min_rows < 2:
        raise TrainingInputError(f"{path}.minRows must be at least 2, got {min_rows}")
    return QualitySpec(max_missing_fraction=max_missing, min_rows=min_rows)


def parse_model(manifest: Mapping[str, Any], namespace: str | None = None) -> TrainingSpec:
    """Reads what training needs from a Model manifest; ``namespace`` overrides metadata's."""
    if not isinstance(manifest, Mapping):
        raise TrainingInputError("the manifest must be a mapping (a Model object)")
    kind = manifest.get("kind", "Model")
    if kind != "Model":
        raise TrainingInputError(f"expected a Model manifest, got kind {kind!r}")
    metadata = _section(manifest, "metadata", "", required=True)
    name = _string(metadata, "name", "metadata")
    if not is_valid_model_name(name):
        raise TrainingInputError(
            f"metadata.name {name!r} must be a DNS label of at most 40 characters"
        )
    ns = namespace or metadata.get("namespace") or "default"
    if not isinstance(ns, str) or not _NAMESPACE.match(ns):
        raise TrainingInputError(f"namespace {ns!r} is not a valid Kubernetes namespace")
    spec = _section(manifest, "spec", "", required=True)
    task = spec.get("task")
    if task not in ("classification", "regression"):
        raise TrainingInputError(f"spec.task must be classification or regression, got {task!r}")
    training = _section(spec, "training", "spec", required=True)
    validation = _parse_validation(training, task)
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    search = parse_search(training, validation.metric, allowed, validation.random_seed)
    if search is not None and training.get("estimator") is None:
        # A search needs no estimator of its own; the first candidate stands for it in
        # the checks made before the data is read.
        first = search.candidates[0]
        estimator: dict[str, Any] = {"class": first.class_path, "params": first.params}
    else:
        estimator = _section(training, "estimator", "spec.training", required=True)
    params = estimator.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise TrainingInputError("spec.training.estimator.params must be a mapping")
    return TrainingSpec(
        name=name,
        namespace=ns,
        task=task,
        estimator_class=_string(estimator, "class", "spec.training.estimator"),
        estimator_params=dict(params),
        data=_parse_data(training),
        validation=validation,
        quality=_parse_quality(training),
        search=search,
    )

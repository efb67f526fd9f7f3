"""The feature schema and the scikit-learn Pipeline built around the manifest's estimator.

The manifest names the estimator by import path, which makes it code the trainer will
import: only paths under an allow-listed prefix (``MLKUBE_ESTIMATOR_ALLOWLIST``, default
``sklearn.``) are accepted, and only classes that are scikit-learn estimators of the
model's task. Parameters are plain YAML values checked against ``get_params()`` before
any data is read, so a typo fails in milliseconds with a suggestion, not after a fit.

The pipeline takes a 2-D numpy array with the schema's features as columns, in schema
order (``model_inputs``): float64 when every feature is numeric, else an object array
(numbers as floats, categories as text, NaN for missing). Its ColumnTransformer selects
columns by position, not by name, so the server hands it the array it decoded a request
into, with no DataFrame per request; metadata.json records this as ``input`` (see
``input_layout``). Numeric columns are median-imputed (all-numeric data with no missing
value at all gets no imputer: the server refuses a missing value in a feature that was
never missing), categorical ones get a constant
for missing values and a one-hot encoding (at most 100 columns, rare categories pooled)
that maps unseen categories to the pooled column or to none, so serving never fails on a
new category. The schema recorded in the metadata is what the server validates requests
against.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from mlkube.runtime.artifact import FeatureSchema, InputLayout
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.spec import Task

MISSING_CATEGORY: Final = "__missing__"
# Per categorical column; rarer categories share one "infrequent" column. Bounding it keeps
# the dense encoding (which every estimator accepts, unlike sparse input) small.
MAX_ONEHOT_COLUMNS: Final = 100
_MAX_CATEGORIES_RECORDED: Final = 1000


@dataclass(frozen=True)
class EstimatorChoice:
    cls: type[Any]
    class_path: str
    params: dict[str, Any]  # as given, plus random_state when the estimator has one


def resolve_estimator(
    class_path: str, params: dict[str, Any], task: Task, allowlist: tuple[str, ...], seed: int
) -> EstimatorChoice:
    """Imports an allow-listed estimator class and checks the params' names against it."""
    where = "spec.training.estimator.class"
    if not class_path.startswith(allowlist) or "." not in class_path:
        raise TrainingInputError(
            f"{where} {class_path!r} is outside the estimator allow-list "
            f"({', '.join(allowlist)}; MLKUBE_ESTIMATOR_ALLOWLIST)"
        )
    module_name, _, attr = class_path.rpartition(".")
    if attr.startswith("_"):
        raise TrainingInputError(f"{where} {class_path!r} names a private object")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise TrainingInputError(f"{where} {class_path!r}: no module {module_name!r}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=1)
        hint = f" (did you mean {module_name}.{close[0]}?)" if close else ""
        raise TrainingInputError(f"{where} {class_path!r}: {module_name} has no {attr}{hint}")
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    if not inspect.isclass(cls) or not issubclass(cls, BaseEstimator):
        raise TrainingInputError(f"{where} {class_path!r} is not a scikit-learn estimator class")
    try:
        instance: Any = cls()
    except TypeError as error:
        raise TrainingInputError(
            f"{where} {class_path!r} cannot be built without arguments: {error}"
        ) from None
    fits_task = is_classifier(instance) if task == "classification" else is_regressor(instance)
    if not fits_task:
        kind = "classifier" if task == "classification" else "regressor"
        raise TrainingInputError(f"{where} {class_path!r} is not a {kind}; spec.task is {task}")
    known = instance.get_params(deep=False)
    unknown = [name for name in params if name not in known]
    if unknown:
        details = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(known), n=1)
            details.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TrainingInputError(
            f"spec.training.estimator.params: unknown parameter {', '.join(details)} for {attr}"
        )
    effective = dict(params)
    if "random_state" in known and "random_state" not in effective:
        effective["random_state"] = seed
    _check_param_values(cls(**effective), attr)
    return EstimatorChoice(cls=cls, class_path=class_path, params=effective)


def _check_param_values(estimator: Any, name: str) -> None:
    """Runs scikit-learn's own parameter constraints now rather than at fit time."""
    validate = getattr(estimator, "_validate_params", None)
    if validate is None:
        return
    try:
        validate()
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        raise TrainingInputError(f"spec.training.estimator.params: {message}") from None


def infer_schema(frame: pd.DataFrame, features: list[str]) -> list[FeatureSchema]:
    """Numeric (numbers, booleans) vs categorical (everything else), with seen categories."""
    schema: list[FeatureSchema] = []
    for name in features:
        column = frame[name]
        nullable = bool(column.isna().any())
        if pd.api.types.is_bool_dtype(column.dtype):
            schema.append(FeatureSchema(name=name, kind="numeric", dtype="bool", nullable=nullable))
        elif pd.api.types.is_numeric_dtype(column.dtype):
            dtype = "int64" if pd.api.types.is_integer_dtype(column.dtype) else "float64"
            schema.append(FeatureSchema(name=name, kind="numeric", dtype=dtype, nullable=nullable))
        else:
            seen = sorted(str(v) for v in column.dropna().unique())
            entry = FeatureSchema(name=name, kind="categorical", dtype="string", nullable=nullable)
            if len(seen) <= _MAX_CATEGORIES_RECORDED:
                entry["categories"] = seen
            schema.append(entry)
    return schema


def model_inputs(frame: pd.DataFrame, schema: list[FeatureSchema]) -> np.ndarray[Any, Any]:
    """The array the pipeline expects: schema order, float64 if all numeric, else objects.

    Booleans become 0/1, categories their text, and every missing value NaN (the value
    the server decodes a ``null`` into), so training and serving see identical inputs.
    """
    if all(f["kind"] == "numeric" for f in schema):
        return np.column_stack([_numeric_column(frame[f["name"]]) for f in schema])
    out = np.empty((len(frame), len(schema)), dtype=object)
    for position, feature in enumerate(schema):
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            out[:, position] = _numeric_column(column)
        else:
            text = column.map(str, na_action="ignore").to_numpy(dtype=object)
            text[column.isna().to_numpy()] = np.nan
            out[:, position] = text
    return out


def _numeric_column(column: pd.Series) -> np.ndarray[Any, Any]:
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def input_layout(schema: list[FeatureSchema]) -> InputLayout:
    """metadata.json's ``input``: how the fitted pipeline wants to be called."""
    numeric_only = all(f["kind"] == "numeric" for f in schema)
    return InputLayout(
        layout="array",
        order=[f["name"] for f in schema],
        dtype="float64" if numeric_only else "object",
    )


def scoring_model(
    schema: list[FeatureSchema], estimator: EstimatorChoice, *, complete: bool
) -> Any:
    """A model that scores as ``build_pipeline``'s does, for cross-validation folds.

    On all-numeric rows with no missing or infinite value (``complete``: the caller has
    checked every row the model will see) the pipeline's only step before the estimator,
    the median imputer, passes the rows through unchanged, so the estimator alone makes
    the same predictions and spares the imputer's medians (a sort of every column: up
    to a fifth of a shallow tree's fit). A kept or served pipeline has the imputer
    whenever a feature is nullable (``build_pipeline``).
    """
    if complete and all(f["kind"] == "numeric" for f in schema):
        return estimator.cls(**estimator.params)
    return build_pipeline(schema, estimator)


def build_pipeline(schema: list[FeatureSchema], estimator: EstimatorChoice) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [i for i, f in enumerate(schema) if f["kind"] == "numeric"]
    categorical = [i for i, f in enumerate(schema) if f["kind"] == "categorical"]
    if not categorical:
        if not any(f["nullable"] for f in schema):
            # No feature had a missing value, and the server refuses a missing value in
            # a feature that is not nullable: the imputer would never change a value, yet
            # its medians (a sort of every column) cost up to a fifth of a short fit.
            return Pipeline([("estimator", estimator.cls(**estimator.params))])
        # The same median imputation without a ColumnTransformer around it, whose
        # per-call bookkeeping costs a numeric model's prediction ~0.3 ms per request.
        return Pipeline(
            [
                ("preprocess", SimpleImputer(strategy="median")),
                ("estimator", estimator.cls(**estimator.params)),
            ]
        )
    transformers: list[tuple[str, Any, list[int]]] = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if categorical:
        encode = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                (
                    "onehot",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=MAX_ONEHOT_COLUMNS,
                        sparse_output=False,
                        dtype=np.float64,
                    ),
                ),
            ]
        )
        transformers.append(("categorical", encode, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline(
        [
            ("preprocess", preprocess),
            ("estimator", estimator.cls(**estimator.params)),
        ]
    )

"""The served model: loaded through the store's safe loader, warmed up, then predicting.

``load_model`` is the only way in: it checks the sha256 and the types (via
``mlkube.runtime.artifact.load_pipeline``), decides once how inputs must be shaped for
this pipeline, and runs a warm-up prediction, so a model that cannot predict refuses to
start instead of failing its first request.

Speed matters here because every request pays it. The pipeline's input follows
metadata.json's ``input`` (``InputLayout``): with layout ``array`` (what ``mlkube train``
writes) it gets the decoded float64 matrix as is, or an object array when some features
are categorical; no DataFrame is built per request. Versions without ``input`` are read
as before: a DataFrame when the pipeline records ``feature_names_in_`` (or has
categorical features), else the float64 matrix. Classifiers whose ``predict`` is by
definition the argmax of ``predict_proba`` get one model call per request instead of two.
When the version has a verified ONNX file, onnxruntime predicts instead (``engine``), and
the answer has the same shape and types: labels from ``classes``, float64 values.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mlkube.runtime.artifact import (
    ArtifactError,
    FeatureSchema,
    Metadata,
    load_pipeline,
    read_metadata,
)
from mlkube.runtime.serve.engine import Choice, Compiled, choose_engine

_ROW_SLICE: Final = 1024
# Final estimators whose predict() is classes_[argmax(predict_proba())] by construction.
_ARGMAX_CLASSIFIERS: Final = frozenset(
    {
        "LogisticRegression",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "GaussianNB",
    }
)


@dataclass(frozen=True)
class Batch:
    """Decoded, validated rows: a float64 matrix when every feature is numeric, else columns.

    ``columns`` maps each feature name to a 1-D array (float64 for numeric features,
    object for categorical ones, with ``None`` for a missing value).
    """

    rows: int
    matrix: NDArray[np.float64] | None = None
    columns: dict[str, NDArray[Any]] | None = None

    def row_dicts(self, names: list[str]) -> Iterator[dict[str, Any]]:
        """One ``{feature: value}`` per row, for the inference log (off the request path);
        built a slice at a time, so a writer that stops at its budget never builds the rest."""
        for start in range(0, self.rows, _ROW_SLICE):
            stop = start + _ROW_SLICE
            if self.matrix is not None:
                rows: Iterable[Any] = self.matrix[start:stop].tolist()
            else:
                assert self.columns is not None
                rows = zip(*(self.columns[n][start:stop].tolist() for n in names), strict=True)
            for row in rows:
                yield dict(zip(names, row, strict=True))


@dataclass(frozen=True)
class Prediction:
    labels: NDArray[Any]
    proba: NDArray[np.float64] | None


class ModelInputError(ValueError):
    """The pipeline rejected a batch that passed schema validation (a client's data problem)."""


class ServedModel:
    """One loaded, warmed-up version: its schema, its identity, and ``predict``."""

    def __init__(self, metadata: Metadata, pipeline: Any) -> None:
        self.metadata = metadata
        self.pipeline = pipeline
        self.name: str = metadata["name"]
        self.version: int = int(metadata["version"])
        self.version_label = str(self.version)
        self.features: list[FeatureSchema] = list(metadata["features"])
        self.feature_names = [f["name"] for f in self.features]
        self.numeric_only = all(f["kind"] == "numeric" for f in self.features)
        self.is_classifier = metadata["task"] == "classification" and hasattr(
            pipeline, "predict_proba"
        )
        classes = getattr(pipeline, "classes_", None)
        self.classes: NDArray[Any] | None = np.asarray(classes) if classes is not None else None
        final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
        self.estimator_class: str = type(final).__name__
        self._proba_gives_labels = (
            self.is_classifier
            and self.classes is not None
            and self.estimator_class in _ARGMAX_CLASSIFIERS
        )
        names_in = getattr(pipeline, "feature_names_in_", None)
        self._frame_columns: list[str] | None = None
        self._array_order: list[int] | None = None
        layout = metadata.get("input")
        if layout is not None:
            self._array_order = self._check_array_layout(layout, names_in)
        elif names_in is not None or not self.numeric_only:
            self._frame_columns = (
                [str(n) for n in names_in] if names_in is not None else self.feature_names
            )
            missing = set(self._frame_columns) - set(self.feature_names)
            if missing:
                raise ArtifactError(
                    f"the pipeline expects columns {sorted(missing)} that metadata.json's "
                    "feature schema does not list"
                )
        self.predict_ms = 0.0
        self.compiled: Compiled | None = None
        self.engine = "sklearn"
        self.engine_reason = "not chosen yet"

    def use_engine(self, choice: Choice) -> None:
        """Predicts with ``choice``'s compiled model (if any) from now on."""
        self.compiled = choice.compiled
        self.engine = choice.engine
        self.engine_reason = choice.reason

    @property
    def compilable(self) -> bool:
        """Whether a compiled model can take this server's input (an array, not a frame)."""
        return self._frame_columns is None

    def _check_array_layout(self, layout: Any, names_in: Any) -> list[int] | None:
        """Column positions of ``layout``'s order in the schema (None: schema order)."""
        if not isinstance(layout, dict) or layout.get("layout") != "array":
            found = layout.get("layout") if isinstance(layout, dict) else layout
            raise ArtifactError(
                f"metadata.json's input layout {found!r} is unknown to this server "
                "(it knows 'array'); serve it with the runtime that trained it"
            )
        order = layout.get("order")
        if not isinstance(order, list) or sorted(map(str, order)) != sorted(self.feature_names):
            raise ArtifactError(
                "metadata.json's input order does not list exactly the schema's features"
            )
        if names_in is not None:
            raise ArtifactError(
                "metadata.json says the pipeline takes an array, but it was fitted on "
                "named columns (a DataFrame)"
            )
        positions = [self.feature_names.index(name) for name in order]
        return None if positions == list(range(len(positions))) else positions

    @property
    def uses_frame(self) -> bool:
        return self._frame_columns is not None

    def configure_thread(self) -> None:
        """Skips scikit-learn's per-call checks that the dataplane has already made.

        The schema check guarantees finite inputs when no feature is nullable, so
        ``assume_finite`` only drops a second scan; parameters of a fitted model were
        validated at fit time. scikit-learn's config is per thread: call this in every
        thread that predicts.
        """
        import sklearn

        nullable = any(f.get("nullable", False) for f in self.features)
        sklearn.set_config(assume_finite=not nullable, skip_parameter_validation=True)

    def predict(self, batch: Batch) -> Prediction:
        """Predicts one batch; ``ModelInputError`` if the pipeline refuses the data."""
        x = self.model_input(batch)
        if self.compiled is not None:
            out = self.compiled.predict(x)
            if out is not None:
                positions, values = out
                if self.compiled.classifier:
                    assert self.classes is not None
                    return Prediction(self.classes[positions], values)
                return Prediction(values, None)
        try:
            if self._proba_gives_labels:
                assert self.classes is not None
                proba = self.pipeline.predict_proba(x)
                return Prediction(self.classes[proba.argmax(axis=1)], proba)
            labels = np.asarray(self.pipeline.predict(x))
            proba = self.pipeline.predict_proba(x) if self.is_classifier else None
        except (ValueError, TypeError) as error:
            raise ModelInputError(f"the model rejected the input: {error}") from None
        return Prediction(labels, proba)

    def model_input(self, batch: Batch) -> Any:
        """What the pipeline is called with for ``batch`` (decided once, at load time)."""
        if self._frame_columns is None:
            names = self.feature_names
            if self._array_order is not None:
                names = [names[i] for i in self._array_order]
            if batch.matrix is not None:
                if self._array_order is not None:
                    return batch.matrix[:, self._array_order]
                return batch.matrix
            assert batch.columns is not None
            cells = np.empty((batch.rows, len(names)), dtype=object)
            for position, name in enumerate(names):
                cells[:, position] = batch.columns[name]
            return cells
        import pandas as pd

        if batch.matrix is not None:
            frame = pd.DataFrame(batch.matrix, columns=self.feature_names)
            return frame[self._frame_columns]
        assert batch.columns is not None
        return pd.DataFrame({n: batch.columns[n] for n in self._frame_columns})

    def warm_up(self, rounds: int = 5) -> None:
        """Predicts a synthetic row a few times; the median time picks the threading mode."""
        batch = _synthetic_batch(self.features, self.numeric_only)
        timings = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(rounds):
                started = time.perf_counter()
                try:
                    self.predict(batch)
                except (ModelInputError, Warning) as error:
                    raise ArtifactError(f"warm-up prediction failed: {error}") from None
                timings.append(time.perf_counter() - started)
        self.predict_ms = statistics.median(timings) * 1000


def _synthetic_batch(features: list[FeatureSchema], numeric_only: bool) -> Batch:
    if numeric_only:
        return Batch(rows=1, matrix=np.zeros((1, len(features)), dtype=np.float64))
    columns: dict[str, NDArray[Any]] = {}
    for f in features:
        if f["kind"] == "numeric":
            columns[f["name"]] = np.zeros(1, dtype=np.float64)
        else:
            value = (f.get("categories") or [""])[0]
            columns[f["name"]] = np.array([value], dtype=object)
    return Batch(rows=1, columns=columns)


def single_job(pipeline: Any) -> None:
    """Sets every ``n_jobs`` in the pipeline to 1: a server worker predicts on one thread.

    A forest trained with ``n_jobs=-1`` would otherwise start a thread per core for each
    call, and several workers (or replicas on one node) would fight over the cores."""
    get_params = getattr(pipeline, "get_params", None)
    if get_params is None:
        return
    keys = [k for k in get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        pipeline.set_params(**dict.fromkeys(keys, 1))


def load_model(
    model_dir: Path,
    expected_sha256: str | None,
    engine: str = "auto",
    onnx_sha256: str | None = None,
) -> ServedModel:
    """Verifies, loads and warms up one version; ``ArtifactError`` says why it cannot serve.

    ``engine`` (``auto``, ``onnx``, ``sklearn``) picks what predicts: see ``engine``."""
    metadata = read_metadata(model_dir)
    for key in ("name", "version", "task", "features", "artifact"):
        if key not in metadata:
            raise ArtifactError(f"{model_dir}/metadata.json has no {key!r}")
    if not metadata["features"]:
        raise ArtifactError(f"{model_dir}/metadata.json lists no features")
    pipeline = load_pipeline(model_dir, expected_sha256)
    single_job(pipeline)
    model = ServedModel(metadata, pipeline)
    model.use_engine(
        choose_engine(model_dir, metadata, engine, onnx_sha256, servable=model.compilable)
    )
    model.configure_thread()
    model.warm_up()
    return model

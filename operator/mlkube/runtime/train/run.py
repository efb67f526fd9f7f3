"""One training run, from a parsed spec to a version in the store and its summary.

The order is chosen so that bad input fails cheaply and leaves nothing behind: the
spec, the version number, the store's writability, the slice queries and the estimator
are all checked before the data is read; the data is checked before the fit; slices
must select rows of the holdout before the fit; and the version directory appears in
one rename at the very end (``artifact.write_version``), after everything succeeded.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from mlkube import __version__
from mlkube.api.names import version_dir
from mlkube.runtime.artifact import FeatureSchema, write_version
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.data import load_data
from mlkube.runtime.train.fetch import redact_uri
from mlkube.runtime.train.pipeline import (
    build_pipeline,
    infer_schema,
    input_layout,
    model_inputs,
    resolve_estimator,
)
from mlkube.runtime.train.quality import check_quality, unknown_column_message
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.slices import Node, SliceError, columns_used, evaluate, parse_query
from mlkube.runtime.train.spec import TrainingSpec, ValidationSpec
from mlkube.runtime.train.validate import (
    Predictions,
    cross_validate,
    holdout_split,
    metric_value,
    predict,
    standard_metrics,
)

_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
Mask = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True)
class RunRequest:
    spec: TrainingSpec
    store: Path
    store_uri: str  # how the summary names the store (a pvc:// URI in a pod, else the path)
    version: int | None
    trigger: str
    reason: str
    training_job: str | None


class Progress:
    """Human-readable progress on stderr, each line stamped with the seconds since start."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.started = time.monotonic()
        self.stream = stream

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        stream = self.stream or sys.stderr
        print(f"mlkube train: [{self.elapsed():6.2f}s] {message}", file=stream, flush=True)


def next_version(model_dir: Path) -> int:
    """1 + the highest ``v<N>`` already in the store for this model (1 for a new model)."""
    try:
        names = [entry.name for entry in model_dir.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return 1
    except OSError as error:
        raise TrainingInputError(
            f"cannot list the store at {model_dir}: {error.strerror}"
        ) from None
    found = [int(m.group(1)) for name in names if (m := _VERSION_DIR.match(name))]
    return max(found, default=0) + 1


def check_store_writable(target: Path) -> None:
    """Probes the deepest existing ancestor of ``target`` with a temporary directory.

    A probe rather than ``os.access`` because it also catches read-only mounts and a
    root user; it is removed at once, so a refused run leaves the store as it was.
    """
    ancestor = target
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TrainingInputError(f"cannot write to the store: {ancestor} is not a directory")
    try:
        Path(tempfile.mkdtemp(prefix=".mlkube-probe.", dir=ancestor)).rmdir()
    except OSError as error:
        raise TrainingInputError(
            f"cannot write to the store at {ancestor}: {error.strerror}"
        ) from None


def _parse_slices(spec: TrainingSpec) -> list[Node]:
    parsed = []
    for item in spec.validation.slices:
        try:
            parsed.append(parse_query(item.query))
        except SliceError as error:
            raise SliceError(f"slice {item.name!r}: syntax error: {error}") from None
    return parsed


def _libraries() -> dict[str, str]:
    import pandas
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "mlkube": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "skops": skops.__version__,
    }


def _report_warnings(caught: list[warnings.WarningMessage], progress: Progress) -> list[str]:
    """Warnings from fitting (convergence, …) are shown once each and kept in the metadata:
    they say something about this model, so they belong in its record, not lost on a tty."""
    messages = list(
        dict.fromkeys(f"{w.category.__name__}: {' '.join(str(w.message).split())}" for w in caught)
    )
    for message in messages:
        progress(f"warning: {message}")
    return messages


def _passed(score: float | None, minimum: float | None, higher_is_better: bool) -> bool:
    if minimum is None:
        return True
    if score is None:
        return False
    return score >= minimum if higher_is_better else score <= minimum


def _check_slice_columns(spec: TrainingSpec, queries: list[Node], columns: list[str]) -> None:
    """Slices may name any column of the data, features or not (a region kept out of
    the model is still a useful slice), but only columns that exist."""
    for item, query in zip(spec.validation.slices, queries, strict=True):
        unknown = sorted(columns_used(query) - set(columns))
        if unknown:
            raise SliceError(
                f"slice {item.name!r}: unknown column {unknown_column_message(unknown, columns)}"
            )


def _slice_masks(spec: TrainingSpec, queries: list[Node], test_rows: pd.DataFrame) -> list[Mask]:
    """Holdout rows of each slice, computed before the fit so an empty slice fails fast."""
    masks = []
    for item, query in zip(spec.validation.slices, queries, strict=True):
        try:
            mask = evaluate(query, test_rows)
        except SliceError as error:
            raise SliceError(f"slice {item.name!r}: {error}") from None
        if not mask.any():
            raise SliceError(
                f"slice {item.name!r} ({item.query}) selects no rows of the "
                f"{len(test_rows)}-row holdout set"
            )
        masks.append(mask)
    return masks


def _slice_results(
    spec: TrainingSpec, masks: list[Mask], holdout: Predictions
) -> list[dict[str, Any]]:
    results = []
    for item, mask in zip(spec.validation.slices, masks, strict=True):
        value = metric_value(spec.validation.metric, holdout.subset(mask))
        score = None if value is None else round(value, 6)
        results.append(
            {
                "name": item.name,
                "query": item.query,
                "score": score,
                "rows": int(mask.sum()),
                "minScore": item.min_score,
                "passed": _passed(score, item.min_score, spec.higher_is_better),
            }
        )
    return results


def _reference_profile(
    train_rows: pd.DataFrame,
    schema: list[FeatureSchema],
    settings: TrainSettings,
    validation: ValidationSpec,
) -> dict[str, Any]:
    """The drift reference, from a seeded sample so its cost stays flat on large data."""
    from mlkube.runtime.profile import build_reference_profile

    if len(train_rows) > settings.profile_sample_rows:
        train_rows = train_rows.sample(
            n=settings.profile_sample_rows, random_state=validation.random_seed
        )
    return build_reference_profile(train_rows, schema)


def train_model(request: RunRequest, settings: TrainSettings, progress: Progress) -> dict[str, Any]:
    """Runs training and writes the version; returns the summary (not yet trimmed)."""
    spec = request.spec
    validation = spec.validation
    model_dir = request.store / spec.namespace / spec.name
    version = request.version or next_version(model_dir)
    target_dir = request.store / version_dir(spec.namespace, spec.name, version)
    if target_dir.exists():
        raise TrainingInputError(f"{target_dir} already exists; versions are never overwritten")
    check_store_writable(target_dir)
    queries = _parse_slices(spec)
    estimator = resolve_estimator(
        spec.estimator_class,
        spec.estimator_params,
        spec.task,
        settings.estimator_allowlist,
        validation.random_seed,
    )
    if validation.metric in ("roc_auc", "log_loss") and not hasattr(
        estimator.cls(**estimator.params), "predict_proba"
    ):
        raise TrainingInputError(
            f"spec.training.validation.metric {validation.metric} needs class probabilities, "
            f"which {estimator.class_path} with these params does not give; choose another"
        )
    progress(f"training {spec.namespace}/{spec.name} v{version} with {estimator.class_path}")

    progress(f"reading {redact_uri(spec.data.uri)}")
    loaded = load_data(spec.data, settings)
    raw = loaded.frame.reset_index(drop=True)
    progress(f"read {len(raw)} rows x {len(raw.columns)} columns ({loaded.format})")
    checked = check_quality(raw, spec.data, spec.quality, spec.task)
    _check_slice_columns(spec, queries, list(raw.columns))
    schema = infer_schema(checked.frame, checked.features)
    inputs = model_inputs(checked.frame, schema)
    y = checked.frame[checked.target].to_numpy()
    train_pos, test_pos, stratified = holdout_split(
        y, spec.task, validation.test_fraction, validation.random_seed
    )
    masks = _slice_masks(spec, queries, raw.loc[checked.frame.index[test_pos]])
    numeric = sum(f["kind"] == "numeric" for f in schema)
    progress(
        f"quality ok: {len(checked.features)} features ({numeric} numeric, "
        f"{len(schema) - numeric} categorical), {len(train_pos)} train / {len(test_pos)} "
        f"test rows{' (stratified)' if stratified else ''}"
    )

    model = build_pipeline(schema, estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(inputs[train_pos], y[train_pos])
        except (ValueError, TypeError) as error:
            message = " ".join(str(error).split())
            raise TrainingInputError(f"fitting {estimator.class_path} failed: {message}") from None
        progress("fitted; validating on the holdout")
        holdout = predict(model, inputs[test_pos], y[test_pos], spec.task)
    fit_warnings = _report_warnings(caught, progress)
    metrics = standard_metrics(spec.task, validation.metric, holdout)
    score = metrics.get(validation.metric)
    if score is None:
        raise TrainingInputError(
            f"metric {validation.metric} is undefined for {estimator.class_path} on this data "
            "(it needs predict_proba or more than one class in the holdout); choose another"
        )
    slice_results = _slice_results(spec, masks, holdout)
    cross = None
    if validation.folds >= 2:
        progress(f"{validation.folds}-fold cross-validation")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cross = cross_validate(
                lambda: build_pipeline(schema, estimator),
                inputs,
                y,
                task=spec.task,
                metric=validation.metric,
                folds=validation.folds,
                seed=validation.random_seed,
            )
        fit_warnings += _report_warnings(caught, progress)
    profile = _reference_profile(checked.frame.iloc[train_pos], schema, settings, validation)
    trained_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    target_schema: dict[str, Any] = {"name": checked.target}
    if spec.task == "classification":
        target_schema["classes"] = np.asarray(model.classes_).tolist()
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "version": version,
        "task": spec.task,
        "estimator": {"class": estimator.class_path, "params": estimator.params},
        "features": schema,
        "input": input_layout(schema),
        "target": target_schema,
        "metric": validation.metric,
        "higherIsBetter": spec.higher_is_better,
        "score": score,
        "metrics": metrics,
        "slices": slice_results,
        "profile": profile,
        "data": {
            "uri": redact_uri(spec.data.uri),
            "format": loaded.format,
            "sha256": loaded.sha256,
            "rows": len(checked.frame),
            "droppedRows": checked.dropped_rows,
            "trainRows": len(train_pos),
            "testRows": len(test_pos),
            "stratified": stratified,
        },
        "lineage": {
            "trigger": request.trigger,
            "reason": request.reason,
            "trainingJob": request.training_job,
        },
        "warnings": fit_warnings[:20],
        "libraries": _libraries(),
        "trainedAt": trained_at,
        "durationSeconds": round(progress.elapsed(), 3),
    }
    if cross is not None:
        metadata["crossValidation"] = cross
    written = write_version(target_dir, model, metadata)
    progress(f"wrote {target_dir} (sha256 {written['artifact']['sha256'][:12]}…)")
    summary: dict[str, Any] = {
        "version": version,
        "metric": validation.metric,
        "higherIsBetter": spec.higher_is_better,
        "score": score,
        "metrics": metrics,
        "slices": [
            {k: s[k] for k in ("name", "score", "rows", "minScore", "passed")}
            for s in slice_results
        ],
        "artifact": {
            "uri": f"{request.store_uri.rstrip('/')}/"
            f"{version_dir(spec.namespace, spec.name, version)}",
            "sha256": written["artifact"]["sha256"],
        },
        "rows": {"train": len(train_pos), "test": len(test_pos)},
        "durationSeconds": round(progress.elapsed(), 3),
    }
    if cross is not None:
        summary["crossValidation"] = {k: cross[k] for k in ("folds", "mean", "std")}
    return summary


def default_store_uri(store: Path) -> str:
    return os.path.abspath(store)

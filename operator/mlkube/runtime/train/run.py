"""One training run, from a parsed spec to a version in the store and its summary.

The order is chosen so that bad input fails cheaply and leaves nothing behind: the
spec, the version number, the store's writability, the slice queries and the estimator
are all checked before the data is read; the data is checked before the fit; slices
must select rows of the holdout before the fit; and the version directory appears in
one rename at the very end (``artifact.write_version``), after everything succeeded.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from mlkube.api.status import TrainerSummary
from mlkube.runtime.artifact import FeatureSchema, write_version
from mlkube.runtime.compiled import ONNX_FILE, Compiled, compile_pipeline
from mlkube.runtime.profile import PREDICTION_PROFILE, prediction_profile
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.data import load_data
from mlkube.runtime.train.fetch import redact_uri
from mlkube.runtime.train.helper import WRITER_MODULES, WriterHelper, start_helper, usable_cpus
from mlkube.runtime.train.liverows import add_live_rows
from mlkube.runtime.train.localstore import check_store_writable, next_version
from mlkube.runtime.train.pipeline import (
    EstimatorChoice,
    build_pipeline,
    infer_schema,
    model_inputs,
    resolve_estimator,
)
from mlkube.runtime.train.quality import check_quality, unknown_column_message
from mlkube.runtime.train.record import (
    Dataset,
    Fitted,
    Mask,
    Prepared,
    RunRequest,
    run_summary,
    version_metadata,
)
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


def _parse_slices(spec: TrainingSpec) -> list[Node]:
    parsed = []
    for item in spec.validation.slices:
        try:
            parsed.append(parse_query(item.query))
        except SliceError as error:
            raise SliceError(f"slice {item.name!r}: syntax error: {error}") from None
    return parsed


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


def reference_profile(
    train_rows: pd.DataFrame,
    schema: list[FeatureSchema],
    settings: TrainSettings,
    validation: ValidationSpec,
) -> dict[str, Any]:
    """The drift reference, from a seeded sample so its cost stays flat on large data."""
    from mlkube.runtime.profile import build_reference_profile

    source = len(train_rows)
    if source > settings.profile_sample_rows:
        train_rows = train_rows.sample(
            n=settings.profile_sample_rows, random_state=validation.random_seed
        )
    return build_reference_profile(train_rows, schema, source_rows=source)


def _prefetch_writers() -> threading.Thread:
    """Imports what runs after the fit (skops, the ONNX converter: seconds) on a thread
    while the data is read and the model fitted, where one core is all there is (with
    two, ``helper`` does that in a process); a failed import fails again where used."""

    def load() -> None:
        for name in WRITER_MODULES:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="prefetch-imports", daemon=True)
    thread.start()
    return thread


def train_model(request: RunRequest, settings: TrainSettings, progress: Progress) -> TrainerSummary:
    """Runs training and writes the version; returns the summary (not yet trimmed)."""
    spec = request.spec
    prepared = _prepare(request, settings)
    progress(
        f"training {spec.namespace}/{spec.name} v{prepared.version} "
        f"with {prepared.estimator.class_path}"
    )
    prefetch = _prefetch_writers() if usable_cpus() < 2 else None
    data = _read(spec, settings, prepared.queries, progress, request)
    holdout = data.inputs[data.test_pos]
    helper = None
    if prefetch is None:  # two cores: the writing work goes to a forked helper process
        helper = start_helper(holdout, spec.task, data.schema)
    try:
        fitted = _fit(spec, prepared.estimator, data, progress)
        if helper is not None:
            helper.submit(fitted.model, (fitted.holdout.y_pred, fitted.holdout.proba))
        profile = reference_profile(
            data.checked.frame.iloc[data.train_pos], data.schema, settings, spec.validation
        )
        if prefetch is not None:
            prefetch.join()
        artifact, compiled = _compiled(
            helper, fitted, progress, task=spec.task, holdout=holdout, features=data.schema
        )
    finally:
        if helper is not None:
            helper.close()
    metadata = version_metadata(
        request, prepared, data, fitted, profile=profile, elapsed=progress.elapsed()
    )
    metadata["compiled"] = compiled.record
    metadata[PREDICTION_PROFILE] = prediction_profile(fitted.holdout.y_pred, spec.task)
    extra = {ONNX_FILE: compiled.onnx} if compiled.onnx is not None else None
    written = write_version(prepared.target_dir, fitted.model, metadata, extra, artifact)
    sha256 = written["artifact"]["sha256"]
    progress(f"wrote {prepared.target_dir} (sha256 {sha256[:12]}…)")
    summary = run_summary(
        request, prepared.version, data, fitted, sha256=sha256, elapsed=progress.elapsed()
    )
    if compiled.record["verified"]:
        # the operator pins it for the predictor, as it pins model.skops's digest
        summary["artifact"]["onnxSha256"] = str(compiled.record["sha256"])
    return summary


def _compiled(
    helper: WriterHelper | None,
    fitted: Fitted,
    progress: Progress,
    *,
    task: str,
    holdout: Any,
    features: list[Any],
) -> tuple[bytes | None, Compiled]:
    """The skops bytes (None: write_version dumps the pipeline) and the compiled model:
    the helper's answer, or made here when there is none."""
    answer = helper.result() if helper is not None else None
    if answer is None:
        expected = (fitted.holdout.y_pred, fitted.holdout.proba)
        compiled = compile_pipeline(
            fitted.model, holdout, task, features=features, expected=expected
        )
        artifact = None
    else:
        artifact, compiled = answer
    record = compiled.record
    if record["verified"]:
        progress(
            f"compiled to ONNX: verified on {record['rows']} holdout rows "
            f"(max difference {record['maxDifference']:.2g})"
        )
    else:
        progress(f"not compiled to ONNX ({record['verdict']}): {record['reason']}")
    return artifact, compiled


def _prepare(request: RunRequest, settings: TrainSettings) -> Prepared:
    """The version number, a writable store, the slice queries and the estimator."""
    spec = request.spec
    validation = spec.validation
    version = request.version or next_version(request.model_dir)
    target_dir = request.model_dir / f"v{version}"
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
    return Prepared(version, target_dir, queries, estimator)


def _read(
    spec: TrainingSpec,
    settings: TrainSettings,
    queries: list[Node],
    progress: Progress,
    request: RunRequest | None = None,
) -> Dataset:
    """Reads and checks the data (plus any labelled live rows), infers the schema,
    splits off the holdout."""
    validation = spec.validation
    progress(f"reading {redact_uri(spec.data.uri)}")
    loaded = load_data(spec.data, settings)
    raw = loaded.frame.reset_index(drop=True)
    progress(f"read {len(raw)} rows x {len(raw.columns)} columns ({loaded.format})")
    live = None
    if request is not None:
        raw, live = add_live_rows(raw, request, progress)
    checked = check_quality(raw, spec.data, spec.quality, spec.task)
    _check_slice_columns(spec, queries, list(raw.columns))
    schema = infer_schema(checked.frame, checked.features)
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
    inputs = model_inputs(checked.frame, schema)
    return Dataset(loaded, checked, schema, inputs, y, train_pos, test_pos, stratified, masks, live)


def _fit(
    spec: TrainingSpec, estimator: EstimatorChoice, data: Dataset, progress: Progress
) -> Fitted:
    """Fits on the training rows, scores the holdout and the slices, cross-validates."""
    validation = spec.validation
    model = build_pipeline(data.schema, estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(data.inputs[data.train_pos], data.y[data.train_pos])
        except (ValueError, TypeError) as error:
            message = " ".join(str(error).split())
            raise TrainingInputError(f"fitting {estimator.class_path} failed: {message}") from None
    fitted = evaluate_fitted(spec, model, estimator, data, progress)
    fitted.warnings[:0] = _report_warnings(caught, progress)
    if validation.folds >= 2:
        progress(f"{validation.folds}-fold cross-validation")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted.cross = cross_validate(
                lambda: build_pipeline(data.schema, estimator),
                data.inputs,
                data.y,
                task=spec.task,
                metric=validation.metric,
                folds=validation.folds,
                seed=validation.random_seed,
            )
        fitted.warnings += _report_warnings(caught, progress)
    return fitted


def evaluate_fitted(
    spec: TrainingSpec, model: Any, estimator: EstimatorChoice, data: Dataset, progress: Progress
) -> Fitted:
    """Scores a pipeline fitted on the training rows on the holdout and its slices
    (a search's winner comes here from the store, a single run from ``_fit``)."""
    progress("fitted; validating on the holdout")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        holdout = predict(model, data.inputs[data.test_pos], data.y[data.test_pos], spec.task)
    metrics = standard_metrics(spec.task, spec.validation.metric, holdout)
    score = metrics.get(spec.validation.metric)
    if score is None:
        raise TrainingInputError(
            f"metric {spec.validation.metric} is undefined for {estimator.class_path} on this "
            "data (it needs predict_proba or more than one class in the holdout); choose another"
        )
    slice_results = _slice_results(spec, data.masks, holdout)
    fit_warnings = _report_warnings(caught, progress)
    return Fitted(model, estimator, score, metrics, slice_results, None, fit_warnings, holdout)


def default_store_uri(store: Path) -> str:
    return os.path.abspath(store)

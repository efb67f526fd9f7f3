"""A model search: numbered trials on the same folds, then the best one as the version.

The same functions run a search on a laptop (every trial in this process or in
``--parallel`` worker processes) and in a cluster (index K of an Indexed Job runs trial
K; a separate select step picks the winner), so both give the same version from the
same spec and seed. Every trial is scored on the same folds of the same training rows
and the holdout is never seen until the winner is chosen, so the winner is the one
``GridSearchCV`` would choose on those folds.

The store holds the search, not any process: each trial writes its result
(``trial-K.json``: params, fold scores, fit time) and only then decides whether to fit
its pipeline on all training rows (``trial-K/``, written like a version so it is loaded
only after its sha256 checks). Only a trial that can still win fits it: one that a
result already recorded ranks above (a better mean, or the same mean at a lower index)
cannot, since recorded scores never change, so it records ``pipeline: false`` and
stops. The eventual winner ranks above every result it can read, so it always keeps
its pipeline, in whatever order the trials end; the select step fits the winner itself
only when its final fit never ended. That is how ``GridSearchCV`` spends its fits (k
per trial, one refit), instead of k + 1 for every trial.

A trial that is rerun (its pod was killed) finds what it had written: an ended trial
does nothing, a scored one goes straight to the decision. The select step reads
whatever the trials left, so a restarted operator loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path, PurePosixPath
from typing import Any, Final

import numpy as np

from mlkube.api.names import search_dir
from mlkube.api.search import LOWER_IS_BETTER
from mlkube.api.status import TrialCounts, TrialResult, TrialStatus
from mlkube.runtime.artifact import ArtifactError, read_metadata, write_version
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.pipeline import (
    EstimatorChoice,
    build_pipeline,
    resolve_estimator,
    scoring_model,
)
from mlkube.runtime.train.record import (
    Dataset,
    RunRequest,
    libraries,
)
from mlkube.runtime.train.search_spec import SearchSpec, TrialPlan, expand_trials
from mlkube.runtime.train.settings import TrainSettings
from mlkube.runtime.train.spec import TrainingSpec
from mlkube.runtime.train.validate import fold_splits, metric_value, predict

DEFAULT_SEARCH_FOLDS: Final = 5
Folds = list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]


def search_of(spec: TrainingSpec) -> SearchSpec:
    if spec.search is None:
        raise TrainingInputError("spec.training.search is not set; this run is not a search")
    return spec.search


def search_root(request: RunRequest, version: int) -> Path:
    """``search-v<N>`` beside the version, in the Model's directory (which, in a pod, is
    all of the store the trial can see: ``--model-root``)."""
    relative = search_dir(request.spec.namespace, request.spec.name, version)
    return request.model_dir / PurePosixPath(relative).name


def result_path(root: Path, index: int) -> Path:
    return root / f"trial-{index:04d}.json"


def pipeline_dir(root: Path, index: int) -> Path:
    return root / f"trial-{index:04d}"


def search_folds(spec: TrainingSpec, data: Dataset) -> tuple[Folds, int]:
    """The folds every trial is scored on, as positions into the whole data: k-fold over
    the training rows only (``validation.folds``, or 5 when it is 0)."""
    folds = spec.validation.folds if spec.validation.folds >= 2 else DEFAULT_SEARCH_FOLDS
    splits, _ = fold_splits(
        data.y[data.train_pos], task=spec.task, folds=folds, seed=spec.validation.random_seed
    )
    train = data.train_pos
    return [(train[a], train[b]) for a, b in splits], folds


def _fold_scores(spec: TrainingSpec, estimator: Any, data: Dataset, folds: Folds) -> list[float]:
    metric = search_of(spec).metric
    complete = _numeric_and_finite(data)
    scores = []
    for number, (train, test) in enumerate(folds):
        model = scoring_model(data.schema, estimator, complete=complete)
        model.fit(data.inputs[train], data.y[train])
        value = metric_value(metric, predict(model, data.inputs[test], data.y[test], spec.task))
        if value is None:
            raise ValueError(f"{metric} is undefined on fold {number}")
        scores.append(value)
    return scores


def _numeric_and_finite(data: Dataset) -> bool:
    """Whether every training row (so every fold's rows) is numeric with no missing or
    infinite value: ``scoring_model`` may then leave the imputer out."""
    inputs = data.inputs[data.train_pos]
    return inputs.dtype.kind == "f" and bool(np.isfinite(inputs).all())


def _result(plan: TrialPlan, metric: str, status: TrialStatus, **fields: Any) -> TrialResult:
    result: TrialResult = {
        "trial": plan.index,
        "estimator": plan.class_path,
        "params": plan.params,
        "status": status,
        "metric": metric,
        "foldScores": fields.get("scores", []),
        "score": None,
        "std": None,
        "fitSeconds": round(fields.get("seconds", 0.0), 3),
    }
    if fields.get("scores"):
        result["score"] = float(np.mean(fields["scores"]))
        result["std"] = float(np.std(fields["scores"]))
    if "error" in fields:
        result["error"] = " ".join(str(fields["error"]).split())[:500]
    return result


def run_trial(
    spec: TrainingSpec, settings: TrainSettings, data: Dataset, plan: TrialPlan, root: Path
) -> TrialResult:
    """Scores one trial on the folds and writes its result, then keeps its fitted
    pipeline if it can still win.

    A trial whose params cannot work (an impossible combination, a fold where the metric
    is undefined) is recorded as failed and returns normally: the search goes on.
    """
    done = read_result(root, plan)
    if done is not None and _ended(done):
        return done  # a rerun of a trial that had ended (its pod was killed after)
    metric = search_of(spec).metric
    started = time.monotonic()
    try:
        estimator = resolve_estimator(
            plan.class_path,
            plan.params,
            spec.task,
            settings.estimator_allowlist,
            spec.validation.random_seed,
        )
        if done is None:  # a scored rerun keeps its recorded scores
            folds, _ = search_folds(spec, data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = _fold_scores(spec, estimator, data, folds)
    except (TrainingInputError, ValueError, TypeError, ArithmeticError) as error:
        failed = _result(plan, metric, TrialStatus.FAILED, error=error, seconds=_since(started))
        _write_json(result_path(root, plan.index), failed)
        return failed
    if done is None:
        done = _result(plan, metric, TrialStatus.COMPLETED, scores=scores, seconds=_since(started))
        _write_json(result_path(root, plan.index), done)  # first: a kill loses no score
    return _keep_if_it_may_win(spec, data, plan, root, result=done, estimator=estimator)


def _ended(result: TrialResult) -> bool:
    """Failed, or decided about its pipeline (kept with its sha256, or skipped)."""
    return (
        result["status"] == TrialStatus.FAILED
        or "sha256" in result
        or result.get("pipeline") is False
    )


def _keep_if_it_may_win(
    spec: TrainingSpec,
    data: Dataset,
    plan: TrialPlan,
    root: Path,
    *,
    result: TrialResult,
    estimator: EstimatorChoice,
) -> TrialResult:
    """Fits and writes the trial's pipeline on all training rows unless a recorded
    result ranks above it; either way the result says which, in one more write."""
    started = time.monotonic()
    target = pipeline_dir(root, plan.index)
    kept = _kept_pipeline(target, plan)
    rival = ranked_above(spec, root, result) if kept is None else None
    if rival is not None:
        result["pipeline"] = False
        result["beatenBy"] = rival["trial"]
        _write_json(result_path(root, plan.index), result)
        return result
    if kept is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_pipeline(data.schema, estimator)
            model.fit(data.inputs[data.train_pos], data.y[data.train_pos])
        written = write_version(target, model, {"trial": result, "libraries": libraries()})
        kept = str(written["artifact"]["sha256"])
    result["pipeline"] = True
    result["sha256"] = kept
    result["fitSeconds"] = round(result["fitSeconds"] + _since(started), 3)  # and the final fit
    _write_json(result_path(root, plan.index), result)
    return result


def ranked_above(spec: TrainingSpec, root: Path, mine: TrialResult) -> TrialResult | None:
    """The best result recorded so far if it ranks above ``mine`` (as ``best_trial``
    ranks: the better mean, then the lower index), else None: ``mine`` may still win."""
    recorded = [mine]
    for plan in expand_trials(search_of(spec)):
        if plan.index != mine["trial"]:
            try:
                other = read_result(root, plan)
            except TrainingInputError:
                other = None  # unreadable: counts as not recorded, so this trial fits
            if other is not None:
                recorded.append(other)
    best = best_trial(recorded, mine["metric"])
    return None if best is None or best["trial"] == mine["trial"] else best


def _kept_pipeline(target: Path, plan: TrialPlan) -> str | None:
    """The sha256 of this trial's pipeline if an earlier attempt wrote it (its pod died
    before the result said so); a pipeline of another trial is removed."""
    if not target.exists():
        return None
    try:
        kept: dict[str, Any] = dict(read_metadata(target))
    except ArtifactError:
        kept = {}
    trial: dict[str, Any] = kept.get("trial") or {}
    if trial.get("estimator") == plan.class_path and trial.get("params") == plan.params:
        return str(kept["artifact"]["sha256"])
    shutil.rmtree(target)
    return None


def _since(started: float) -> float:
    return time.monotonic() - started


def _write_json(path: Path, document: Any) -> None:
    """Replaces ``path`` in one rename, so a reader sees the old result or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, sort_keys=True)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def read_result(root: Path, plan: TrialPlan) -> TrialResult | None:
    """Trial ``plan.index``'s result, if one was written for this very trial (a result
    left by an interrupted search of another spec under the same version is ignored)."""
    try:
        document: TrialResult = json.loads(result_path(root, plan.index).read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise TrainingInputError(f"cannot read trial {plan.index}'s result: {error}") from None
    same = document.get("estimator") == plan.class_path and document.get("params") == plan.params
    return document if same else None


def read_results(spec: TrainingSpec, root: Path) -> list[TrialResult]:
    """Every trial's result; a trial that left none counts as failed. A scored trial
    stays completed with or without its pipeline: its scores are what rank it."""
    metric = search_of(spec).metric
    results = []
    for plan in expand_trials(search_of(spec)):
        result = read_result(root, plan)
        if result is None:
            result = _result(plan, metric, TrialStatus.FAILED, error="no result: its pod failed")
        results.append(result)
    return results


def best_trial(results: list[TrialResult], metric: str) -> TrialResult | None:
    """The completed trial with the best mean score; the lowest index wins a tie."""
    completed = [r for r in results if r["status"] == TrialStatus.COMPLETED]
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    ranked = sorted(completed, key=lambda r: (sign * float(r["score"] or 0.0), r["trial"]))
    return ranked[0] if ranked else None


def trial_counts(results: list[TrialResult]) -> TrialCounts:
    succeeded = sum(r["status"] == TrialStatus.COMPLETED for r in results)
    return {"total": len(results), "succeeded": succeeded, "failed": len(results) - succeeded}

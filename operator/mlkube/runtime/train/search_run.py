"""The three ways a search runs: whole on a laptop, one trial per pod, and the select step.

Each starts like a single run (``run._prepare`` checks the version and the store before
any data is read, ``run._read`` reads and splits the data) so a search fails as early
and as cleanly as one fit. The select step is the only writer of the version: it picks
the best completed trial from the store, loads that trial's pipeline after its sha256
checks (or fits it on the training rows, when the winner's own final fit never ended:
the trials that ranked below it kept none to fall back on), scores it on the holdout
like any version and writes the whole trials table into ``metadata.json``, so the
version faces the promotion gate as any other would.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mlkube.api.status import SearchSummary, TrainerSummary, TrialResult
from mlkube.runtime.artifact import load_pipeline, write_version
from mlkube.runtime.train import TrainingInputError
from mlkube.runtime.train.pipeline import EstimatorChoice, build_pipeline, resolve_estimator
from mlkube.runtime.train.record import Dataset, Prepared, RunRequest, run_summary, version_metadata
from mlkube.runtime.train.run import Progress, _prepare, _read, evaluate_fitted, reference_profile
from mlkube.runtime.train.search import (
    best_trial,
    pipeline_dir,
    read_results,
    run_trial,
    search_folds,
    search_of,
    search_root,
    trial_counts,
)
from mlkube.runtime.train.search_spec import expand_trials
from mlkube.runtime.train.settings import TrainSettings


def _start(
    request: RunRequest, settings: TrainSettings, progress: Progress
) -> tuple[Prepared, Dataset]:
    search_of(request.spec)
    prepared = _prepare(request, settings)
    return prepared, _read(request.spec, settings, prepared.queries, progress, request)


def search_model(
    request: RunRequest, settings: TrainSettings, progress: Progress, parallel: int
) -> TrainerSummary:
    """The whole search in this process, or ``parallel`` worker processes, then the
    select step: what ``mlkube train -f model.yaml --store DIR`` does with a search."""
    prepared, data = _start(request, settings, progress)
    request = dataclasses.replace(request, version=prepared.version)
    search = search_of(request.spec)
    plans = expand_trials(search)
    root = search_root(request, prepared.version)
    progress(f"searching: {len(plans)} trials, {max(1, parallel)} at a time")
    if parallel <= 1:
        for plan in plans:
            _report(progress, run_trial(request.spec, settings, data, plan, root))
    else:
        # spawn: a worker starts clean and reads the data itself, as a trial pod does.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            parallel, mp_context=context, initializer=_worker_start, initargs=(request, settings)
        ) as pool:
            for result in pool.map(_worker_trial, [plan.index for plan in plans]):
                _report(progress, result)
    return select_best(request, settings, progress, prepared, data)


def _report(progress: Progress, result: TrialResult) -> None:
    outcome = f"{result['metric']}={result['score']:.6f}" if result["score"] is not None else ""
    if result.get("pipeline") is False:
        outcome += f", no pipeline (trial {result.get('beatenBy')} ranks above)"
    progress(
        f"trial {result['trial']} {result['status']} {outcome}{result.get('error', '')} "
        f"({result['estimator'].rsplit('.', 1)[-1]} {result['params']}, {result['fitSeconds']}s)"
    )


_WORKER: dict[str, Any] = {}


def _worker_start(request: RunRequest, settings: TrainSettings) -> None:
    progress = Progress()
    prepared, data = _start(request, settings, progress)
    _WORKER.update(request=request, settings=settings, data=data, prepared=prepared)


def _worker_trial(index: int) -> TrialResult:
    request: RunRequest = _WORKER["request"]
    plan = expand_trials(search_of(request.spec))[index]
    root = search_root(request, _WORKER["prepared"].version)
    return run_trial(request.spec, _WORKER["settings"], _WORKER["data"], plan, root)


def trial_command(
    request: RunRequest, settings: TrainSettings, progress: Progress, index: int
) -> TrialResult:
    """Trial ``index`` of the search, as index K of the Indexed Job runs it."""
    if request.version is None:
        raise TrainingInputError("--trial needs --version: every trial writes under one version")
    plans = expand_trials(search_of(request.spec))
    if not 0 <= index < len(plans):
        raise TrainingInputError(f"--trial {index} is outside the search's {len(plans)} trials")
    prepared, data = _start(request, settings, progress)
    result = run_trial(
        request.spec, settings, data, plans[index], search_root(request, prepared.version)
    )
    _report(progress, result)
    return result


def select_command(
    request: RunRequest, settings: TrainSettings, progress: Progress
) -> TrainerSummary:
    """The step after the trials: the best completed trial becomes the version."""
    if request.version is None:
        raise TrainingInputError("--select needs --version: the version the trials wrote under")
    prepared, data = _start(request, settings, progress)
    return select_best(request, settings, progress, prepared, data)


def _winner(results: list[TrialResult], metric: str, progress: Progress) -> TrialResult:
    best = best_trial(results, metric)
    if best is None:
        errors = sorted({str(r.get("error", "")) for r in results})
        raise TrainingInputError(f"every trial of the search failed: {'; '.join(errors)[:400]}")
    progress(f"trial {best['trial']} wins: {metric}={best['score']}")
    return best


def select_best(
    request: RunRequest,
    settings: TrainSettings,
    progress: Progress,
    prepared: Prepared,
    data: Dataset,
) -> TrainerSummary:
    """Loads the winner's pipeline (sha256 checked) or fits it, scores it, writes the
    version."""
    spec = request.spec
    search = search_of(spec)
    root = search_root(request, prepared.version)
    results = read_results(spec, root)
    best = _winner(results, search.metric, progress)
    estimator = resolve_estimator(
        best["estimator"],
        best["params"],
        spec.task,
        settings.estimator_allowlist,
        spec.validation.random_seed,
    )
    model = _winner_pipeline(root, best, estimator, data, progress)
    fitted = evaluate_fitted(spec, model, estimator, data, progress)
    _, folds = search_folds(spec, data)
    fitted.cross = {
        "folds": folds,
        "metric": search.metric,
        "scores": [round(s, 6) for s in best["foldScores"] if s is not None],
        "mean": round(float(best["score"] or 0.0), 6),
        "std": round(float(best["std"] or 0.0), 6),
    }
    profile = reference_profile(
        data.checked.frame.iloc[data.train_pos], data.schema, settings, spec.validation
    )
    metadata = version_metadata(
        request, prepared, data, fitted, profile=profile, elapsed=progress.elapsed()
    )
    counts = trial_counts(results)
    metadata["search"] = {
        "method": search.method,
        "seed": search.seed,
        "metric": search.metric,
        "folds": folds,
        "bestTrial": best["trial"],
        "refit": "sha256" not in best,
        "counts": counts,
        "trials": results,
    }
    sha256 = write_version(prepared.target_dir, model, metadata)["artifact"]["sha256"]
    progress(f"wrote {prepared.target_dir} (sha256 {sha256[:12]}…)")
    summary = run_summary(
        request, prepared.version, data, fitted, sha256=sha256, elapsed=progress.elapsed()
    )
    summary["search"] = SearchSummary(
        trials=counts, bestTrial=best["trial"], estimator=best["estimator"], params=best["params"]
    )
    return summary


def _winner_pipeline(
    root: Path, best: TrialResult, estimator: EstimatorChoice, data: Dataset, progress: Progress
) -> Any:
    """The winner's own pipeline from the store, or (it kept none) the same pipeline
    fitted here on the same training rows: estimators are seeded, so it is the same."""
    if "sha256" in best:
        return load_pipeline(pipeline_dir(root, best["trial"]), best["sha256"])
    progress(f"trial {best['trial']} kept no pipeline: fitting it on the training rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_pipeline(data.schema, estimator)
        return model.fit(data.inputs[data.train_pos], data.y[data.train_pos])

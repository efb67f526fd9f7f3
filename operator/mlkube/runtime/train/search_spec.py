"""``spec.training.search`` parsed, and expanded into its numbered trials.

Trial K must be the same trial in every process that expands the spec (a laptop's
worker, index K of the Indexed Job, the step that picks the winner), so the expansion
depends on nothing but the spec and the seed: a grid is enumerated with scikit-learn's
``ParameterGrid`` (candidates in order, the same order ``GridSearchCV`` uses), and a
random search draws from ``ParameterSampler`` with a seed per candidate. The count is
``api.search.search_trial_count``, the number the operator gives the Job.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlkube.api.search import SearchSpecError, search_parallelism, search_trial_count
from mlkube.api.status import SearchMethod
from mlkube.runtime.train import TrainingInputError

_PATH = "spec.training.search"


@dataclass(frozen=True)
class Candidate:
    class_path: str
    params: dict[str, Any]
    grid: dict[str, list[Any]]
    distributions: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class SearchSpec:
    method: SearchMethod
    seed: int
    trials: int
    parallelism: int
    metric: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class TrialPlan:
    """Trial ``index``: one estimator class and its full constructor parameters."""

    index: int
    class_path: str
    params: dict[str, Any]


def _candidate(raw: Any, where: str, method: SearchMethod) -> Candidate:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("class"), str):
        raise TrainingInputError(f"{where} must be a mapping with a class")
    params, grid, distributions = (raw.get(k) or {} for k in ("params", "grid", "distributions"))
    if not all(isinstance(x, Mapping) for x in (params, grid, distributions)):
        raise TrainingInputError(f"{where}: params, grid and distributions must be mappings")
    if "grid" in raw and (not grid or any(not isinstance(v, list) or not v for v in grid.values())):
        raise TrainingInputError(f"{where}.grid must not be empty, nor any of its lists")
    if distributions and method != SearchMethod.RANDOM:
        raise TrainingInputError(f"{where}.distributions need method random")
    for name, dist in distributions.items():
        ok = isinstance(dist, Mapping) and dist.get("kind") in ("uniform", "loguniform", "randint")
        if not ok or not dist.get("low", 0) < dist.get("high", 0):
            raise TrainingInputError(f"{where}.distributions.{name} needs kind and low < high")
    return Candidate(raw["class"], dict(params), dict(grid), dict(distributions))


def parse_search(
    training: Mapping[str, Any], default_metric: str, allowed: tuple[str, ...], seed: int
) -> SearchSpec | None:
    """The search of a training template, or None when it has none."""
    raw = training.get("search")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TrainingInputError(f"{_PATH} must be a mapping")
    try:
        trials = search_trial_count(raw)
    except SearchSpecError as error:
        raise TrainingInputError(str(error)) from None
    method = SearchMethod(raw.get("method", SearchMethod.GRID))
    metric = raw.get("metric", default_metric)
    if metric not in allowed:
        raise TrainingInputError(f"{_PATH}.metric {metric!r} is not one of {', '.join(allowed)}")
    candidates = tuple(
        _candidate(c, f"{_PATH}.candidates[{i}]", method) for i, c in enumerate(raw["candidates"])
    )
    return SearchSpec(
        method=method,
        seed=int(raw.get("seed", seed)),
        trials=trials,
        parallelism=search_parallelism(raw, trials),
        metric=str(metric),
        candidates=candidates,
    )


def _distribution(spec: Mapping[str, Any]) -> Any:
    from scipy import stats

    low, high = spec["low"], spec["high"]
    if spec["kind"] == "randint":
        return stats.randint(int(low), int(high))
    if spec["kind"] == "loguniform":
        return stats.loguniform(low, high)
    return stats.uniform(low, high - low)


def expand_trials(search: SearchSpec) -> list[TrialPlan]:
    """Every trial of the search, numbered from 0; the same list in every process."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    plans: list[TrialPlan] = []
    if search.method == SearchMethod.GRID:
        for candidate in search.candidates:
            for point in ParameterGrid(candidate.grid):
                params = {**candidate.params, **point}
                plans.append(TrialPlan(len(plans), candidate.class_path, params))
        return plans
    count = len(search.candidates)
    for position, candidate in enumerate(search.candidates):
        draws = len(range(position, search.trials, count))
        space = {**candidate.grid}
        space.update({k: _distribution(v) for k, v in candidate.distributions.items()})
        with warnings.catch_warnings():
            # Lists only, smaller than the draws: the sampler gives each point once.
            warnings.simplefilter("ignore", UserWarning)
            sampled = list(
                ParameterSampler(space, n_iter=draws, random_state=search.seed + position)
            )
        for k in range(draws):
            point = sampled[k % len(sampled)] if sampled else {}
            values = {name: _plain(value) for name, value in point.items()}
            params = {**candidate.params, **values}
            plans.append(TrialPlan(position + k * count, candidate.class_path, params))
    return sorted(plans, key=lambda plan: plan.index)


def _plain(value: Any) -> Any:
    """numpy scalars from a sampler as Python numbers, so params serialise as JSON."""
    return value.item() if hasattr(value, "item") else value

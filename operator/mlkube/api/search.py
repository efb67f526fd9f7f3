"""How many trials a ``spec.training.search`` makes: the one count both sides agree on.

The operator needs the number before any pod runs (it is the Indexed Job's
``completions``), and the trainer expands exactly that many trials from the same spec;
so the count is computed here once, from the plain manifest, without scikit-learn.
A grid makes one trial per point of each candidate's grid (a candidate without a grid
is one trial); a random search makes ``trials``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from mlkube.api.status import SearchMethod

MAX_TRIALS: Final = 1000
# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER: Final = frozenset({"rmse", "mae", "log_loss"})
MAX_CANDIDATES: Final = 16
MAX_GRID_VALUES: Final = 100


class SearchSpecError(ValueError):
    """A search the API server accepted but that cannot run (a grid too large, say)."""


def grid_points(candidate: Mapping[str, Any]) -> int:
    """Points of one candidate's grid: the product of its lists' lengths (1 for none)."""
    grid = candidate.get("grid") or {}
    return math.prod(len(values) for values in grid.values())


def search_trial_count(search: Mapping[str, Any]) -> int:
    """The number of trials; raises ``SearchSpecError`` when the search cannot run."""
    candidates = search.get("candidates") or []
    if not candidates:
        raise SearchSpecError("spec.training.search.candidates must name at least one estimator")
    method = search.get("method", SearchMethod.GRID)
    trials = search.get("trials")
    if method == SearchMethod.RANDOM:
        if not isinstance(trials, int) or trials < 1:
            raise SearchSpecError("spec.training.search.trials is required for a random search")
        count = trials
    else:
        count = sum(grid_points(c) for c in candidates)
        if trials is not None and trials != count:
            raise SearchSpecError(
                f"spec.training.search.trials is {trials} but the grid has {count} points; "
                "leave trials out of a grid search or make it match"
            )
    if count < 1:
        raise SearchSpecError("spec.training.search has an empty grid")
    if count > MAX_TRIALS:
        raise SearchSpecError(
            f"spec.training.search makes {count} trials, more than the {MAX_TRIALS} allowed"
        )
    return count


def search_parallelism(search: Mapping[str, Any], trials: int) -> int:
    """Trials running at once: the spec's parallelism (default 1), at most the trials."""
    wanted = search.get("parallelism", 1)
    return max(1, min(int(wanted), trials))

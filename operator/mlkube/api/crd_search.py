"""Schema of ``spec.training.search``: the candidates and how many trials run at once.

Kept apart from ``crd_model`` because a search is its own small language (grids, lists,
distributions) with its own CEL rules; the Model and TrainingJob overrides both embed it.
The rules bound what the API server can check cheaply (trials, which method takes
distributions; empty grids by minProperties and minItems); the grid's full size is
checked by ``api.search``.
"""

from __future__ import annotations

from mlkube.api.crd_common import CLASSIFICATION_METRICS, REGRESSION_METRICS
from mlkube.api.openapi import (
    Schema,
    array,
    free_object,
    integer,
    map_of,
    number,
    obj,
    rule,
    string,
)
from mlkube.api.search import MAX_CANDIDATES, MAX_GRID_VALUES, MAX_TRIALS
from mlkube.api.status import SearchMethod

_PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _distribution() -> Schema:
    return obj(
        "A distribution to sample one parameter from (random search only).",
        {
            "kind": string(
                "uniform (floats), loguniform (floats, low > 0) or randint (integers, "
                "high excluded).",
                enum=["uniform", "loguniform", "randint"],
            ),
            "low": number("Smallest value."),
            "high": number("Largest value (excluded for randint)."),
        },
        required=["kind", "low", "high"],
        rules=[
            rule("self.low < self.high", "a distribution's low must be below its high"),
            rule(
                "self.kind != 'loguniform' || self.low > 0.0",
                "a loguniform distribution needs low > 0",
            ),
        ],
    )


def _candidate() -> Schema:
    any_value = {
        "description": "One value of the parameter (number, string, boolean or null).",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return obj(
        "One estimator class and the parameter values to try with it.",
        {
            "class": string(
                "Import path of the estimator; must be inside the operator's allow-list.",
                pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
            ),
            "params": free_object("Parameters fixed for every trial of this candidate."),
            "grid": _grid(any_value),
            "distributions": map_of(
                "Distributions by parameter, sampled by a random search.",
                _distribution(),
                max_properties=16,
            ),
        },
        required=["class"],
    )


def _grid(any_value: Schema) -> Schema:
    """Lists of values by parameter. Not empty, nor any list: by ``minProperties`` and
    ``minItems``, since CEL cannot see a map whose values are untyped."""
    values = array("Values to try.", any_value, max_items=MAX_GRID_VALUES)
    values["minItems"] = 1
    grid = map_of(
        "Lists of values by parameter: a grid search tries every combination, a "
        "random search picks from each list.",
        values,
        max_properties=16,
    )
    grid["minProperties"] = 1
    return grid


def search_schema() -> Schema:
    """``spec.training.search``: one Indexed Job whose index K runs trial K."""
    metrics = [*CLASSIFICATION_METRICS, *REGRESSION_METRICS]
    return obj(
        "A model search: each trial fits one candidate with one set of parameters on the "
        "same folds; the best completed trial becomes the version.",
        {
            "candidates": array(
                "Estimators to compare, each with the parameters to try.",
                _candidate(),
                max_items=MAX_CANDIDATES,
                list_type="atomic",
            ),
            "method": string(
                "grid: every combination, in order; random: trials seeded samples.",
                enum=[m.value for m in SearchMethod],
                default=SearchMethod.GRID.value,
            ),
            "seed": integer("Seed of a random search (default: validation.randomSeed).", minimum=0),
            "trials": integer(
                "Number of trials: required for random; for grid, the grid's size if given.",
                minimum=1,
                maximum=MAX_TRIALS,
            ),
            "parallelism": integer(
                "Trials running at once (pods of the Indexed Job).",
                minimum=1,
                maximum=MAX_TRIALS,
                default=1,
            ),
            "metric": string(
                "Metric that ranks the trials, the mean over the folds (default: "
                "validation.metric).",
                enum=metrics,
            ),
        },
        required=["candidates"],
        rules=[
            rule(
                "size(self.candidates) > 0",
                "spec.training.search.candidates must name at least one estimator",
                field_path=".candidates",
            ),
            rule(
                "!has(self.method) || self.method != 'random' || has(self.trials)",
                "spec.training.search.trials is required for a random search",
                field_path=".trials",
            ),
            rule(
                "(has(self.method) && self.method == 'random') || "
                "self.candidates.all(c, !has(c.distributions))",
                "spec.training.search.candidates[].distributions need method random",
                field_path=".candidates",
            ),
            rule(
                "!has(self.trials) || !has(self.parallelism) || self.parallelism <= self.trials",
                "spec.training.search.parallelism must not exceed trials",
                field_path=".parallelism",
            ),
        ],
    )

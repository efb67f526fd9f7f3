"""Schemas of the ground-truth fields: a Monitor's ``spec.performance`` and its results,
a Model's opt-in to learn from labelled live rows, and the rows a TrainingJob adds.

Kept apart from ``crd_jobs`` and ``crd_model`` so the live-performance contract reads in
one place, beside its enums and limits in ``performance``.
"""

from __future__ import annotations

from mlkube.api.crd_common import DURATION_PATTERN, live_rows_fields
from mlkube.api.openapi import Schema, array, boolean, integer, number, obj, string
from mlkube.api.performance import (
    DEFAULT_LIVE_MAX_ROWS,
    DEFAULT_MIN_LABELS,
    LIVE_CLASSIFICATION_METRICS,
    LIVE_REGRESSION_METRICS,
    STATUS_HISTORY,
    STATUS_SLICES,
    PerformanceVerdict,
    RetrainOn,
)
from mlkube.api.status import Verdict


def _slice() -> Schema:
    return obj(
        "A segment of the labelled live rows scored on its own.",
        {
            "name": string(
                "Name of the slice (use the training slice's name to compare the two).",
                pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
                max_length=63,
            ),
            "query": string(
                "Filter over the logged inputs, in the language of training's slices.",
                min_length=1,
                max_length=1024,
            ),
            "minScore": number(
                "Smallest acceptable live score on this slice (largest for errors)."
            ),
        },
        required=["name", "query"],
    )


def performance_spec() -> Schema:
    """``Monitor.spec.performance``: the live score from labels, and when it is too low."""
    return obj(
        "Live performance from ground-truth labels joined with the logged predictions.",
        {
            "metric": string(
                "Metric of the live score (default: the Model's validation metric; "
                "roc_auc and log_loss need probabilities, which are not logged).",
                enum=[*LIVE_CLASSIFICATION_METRICS, *LIVE_REGRESSION_METRICS],
                max_length=32,
            ),
            "minScore": number("Smallest acceptable live score (largest for rmse and mae)."),
            "maxDrop": number(
                "Largest acceptable drop below the serving version's validation score.",
                minimum=0,
            ),
            "slices": array(
                "Slices scored on the live rows (default: the Model's validation slices).",
                _slice(),
                max_items=STATUS_SLICES,
                map_keys=["name"],
            ),
            "minLabels": integer(
                "Fewest labelled predictions for a verdict; below it the verdict is "
                "insufficient-labels and nothing is triggered.",
                minimum=1,
                default=DEFAULT_MIN_LABELS,
            ),
            "window": string(
                "How far back predictions are joined (default: spec.window.duration).",
                pattern=DURATION_PATTERN,
                max_length=32,
            ),
            "labels": obj(
                "Late labels from a batch pipeline, besides the feedback route.",
                {
                    "uri": string(
                        "store://<path> of a CSV/Parquet/JSONL file or a directory of them, "
                        "with columns id, label (and row for a batch request).",
                        pattern=r"^store://[^.][^ ]*$",
                        max_length=2048,
                    )
                },
                required=["uri"],
            ),
        },
    )


def retrain_on() -> Schema:
    return string(
        "Which signals open a TrainingJob when action is retrain: input drift, live "
        "performance, or both. Data quality only ever alerts.",
        enum=[r.value for r in RetrainOn],
        default=RetrainOn.DRIFT.value,
    )


def performance_status() -> Schema:
    score = obj(
        "The live score on one slice.",
        {
            "name": string("Slice (overall for every labelled row).", max_length=63),
            "score": number("Live score."),
            "labels": integer("Labelled predictions in the slice.", minimum=0, fmt="int64"),
        },
    )
    counts = {
        key: integer(text, minimum=0, fmt="int64")
        for key, text in (
            ("received", "Label records read."),
            ("matched", "Labels joined with a logged prediction of the window."),
            ("unmatched", "Labels with no logged prediction (unknown id or sampled out)."),
            ("duplicates", "Labels replaced by a later label for the same prediction."),
            ("invalid", "Labels of the wrong type or an unknown class."),
        )
    }
    return obj(
        "The last live-performance check (labels joined with logged predictions).",
        {
            "verdict": string("Outcome.", enum=[v.value for v in PerformanceVerdict]),
            "checkedAt": string("When this check ran.", fmt="date-time", max_length=64),
            "metric": string("Metric of the score.", max_length=32),
            "score": number("Live score over every labelled prediction."),
            "validationScore": number("The serving version's validation score."),
            "minScore": number("The Monitor's minimum."),
            "maxDrop": number("The Monitor's largest drop."),
            "labels": integer("Labelled predictions joined.", minimum=0, fmt="int64"),
            "predictions": integer("Logged predictions in the window.", minimum=0, fmt="int64"),
            "coverage": number("Share of the window's predictions with a label.", minimum=0),
            "medianLabelDelaySeconds": number("Median time from prediction to label."),
            "slices": array("Live score per slice.", score, max_items=STATUS_SLICES + 1),
            "counts": obj("What happened to the labels.", counts),
            "message": string("The verdict in words.", max_length=1024),
            "history": array(
                "Earlier verdicts, newest first (bounded).",
                obj(
                    "One earlier check.",
                    {
                        "time": string("When.", fmt="date-time", max_length=64),
                        "verdict": string("Verdict.", max_length=32),
                        "score": number("Live score."),
                        "labels": integer("Labels joined.", minimum=0, fmt="int64"),
                    },
                ),
                max_items=STATUS_HISTORY,
            ),
        },
    )


def prediction_drift_status() -> Schema:
    return obj(
        "The model's outputs in the window against its validation predictions.",
        {
            "verdict": string("Outcome.", enum=[v.value for v in Verdict]),
            "method": string("Test used.", max_length=32),
            "score": number("Test statistic or distance."),
            "threshold": number("Threshold it was compared with."),
            "predictions": integer("Logged predictions compared.", minimum=0, fmt="int64"),
        },
    )


def live_data_spec() -> Schema:
    """``Model.spec.training.liveData``: the opt-in to learn from labelled live rows."""
    return obj(
        "Add the labelled live rows of a performance-triggered window to the training data.",
        {
            "include": boolean("Opt in.", default=False),
            "maxRows": integer(
                "Most live rows added (the newest win; duplicates dropped first).",
                minimum=1,
                maximum=1_000_000,
                default=DEFAULT_LIVE_MAX_ROWS,
            ),
        },
    )


def live_rows_spec() -> Schema:
    """``TrainingJob.spec.liveRows``: written by the checker on a performance retrain."""
    return obj(
        "Labelled live rows to add to the training data (when the Model opts in).",
        live_rows_fields(),
        required=["path"],
    )

"""The contracts of monitoring with ground truth: labels in, live scores out.

Four programs meet here. The predictor writes labels sent to its feedback route; the
drift checker joins them with the logged predictions, writes ``Monitor.status.performance``
and ``status.predictionDrift``, and (on a performance-triggered retrain) a file of the
labelled live rows; the operator passes that file to the trainer and exports the live
score as a metric; the trainer adds the rows and records them in the version's lineage.
The verdict words, status shapes, file layout and limits are defined once, here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NotRequired, TypedDict

# The feedback route's path segment and its limits (a 4xx above them, nothing written).
FEEDBACK_ROUTE: Final = "feedback"
MAX_FEEDBACK_LABELS: Final = 10_000
MAX_LABEL_CHARS: Final = 256
# Labels are logged under the inference log, in this subdirectory (the same
# ``YYYY-MM-DD/HH/<writer>-<seq>.jsonl`` layout), so the predictor's one writable
# mount holds both streams and the drift reader, which lists date directories only,
# never mistakes a label for a prediction.
LABELS_SUBDIR: Final = "labels"
# Labelled live rows a performance-triggered retrain may add: written by the checker
# under the Model's drift directory, read by the trainer from its Model's mount.
DRIFT_DIR_PREFIX: Final = "drift/"
LIVE_ROWS_PREFIX: Final = "live-rows-"
LIVE_ROWS_PATTERN: Final = r"^drift/live-rows-[0-9]{8}T[0-9]{6}Z\.jsonl$"
DEFAULT_LIVE_MAX_ROWS: Final = 50_000
LIVE_ROWS_KEEP: Final = 10  # newest live-rows files kept in the drift directory
DEFAULT_MIN_LABELS: Final = 100
# Metrics the live check can compute from logged labels (no probabilities are logged).
LIVE_CLASSIFICATION_METRICS: Final = ("accuracy", "f1", "f1_macro", "precision", "recall")
LIVE_REGRESSION_METRICS: Final = ("r2", "rmse", "mae")
ERROR_METRICS: Final = frozenset({"rmse", "mae"})
STATUS_SLICES: Final = 16
STATUS_HISTORY: Final = 10
OVERALL_SLICE: Final = "overall"


class PerformanceVerdict(StrEnum):
    """``Monitor.status.performance.verdict``: the live score against the Monitor's bounds."""

    OK = "ok"
    DEGRADED = "degraded"
    INSUFFICIENT_LABELS = "insufficient-labels"


class RetrainOn(StrEnum):
    """Which signals of a Monitor may open a TrainingJob (``spec.retrainOn``)."""

    DRIFT = "drift"
    PERFORMANCE = "performance"
    BOTH = "both"


class LabelCounts(TypedDict):
    """How the labels of a window fared in the join."""

    received: int  # label records read (feedback route and labels file)
    matched: int  # joined with a logged prediction in the window
    unmatched: int  # no logged prediction: unknown id, sampled out, or outside the window
    duplicates: int  # a later label for the same prediction replaced an earlier one
    invalid: int  # not a usable label (wrong type, unknown class)


class SliceScore(TypedDict):
    """The live score on one slice (``overall`` for every labelled row)."""

    name: str
    score: float | None
    labels: int


class PerformanceStatus(TypedDict):
    """``Monitor.status.performance``: the last live check and the verdicts before it."""

    verdict: PerformanceVerdict
    checkedAt: str
    metric: str
    score: float | None
    validationScore: float | None
    minScore: float | None
    maxDrop: float | None
    labels: int
    predictions: int
    coverage: float
    medianLabelDelaySeconds: float | None
    slices: list[SliceScore]
    counts: LabelCounts
    message: str
    history: list[HistoryEntry]


class HistoryEntry(TypedDict):
    """One earlier verdict, newest first, at most ``STATUS_HISTORY``."""

    time: str
    verdict: str
    score: float | None
    labels: int


class PredictionDriftStatus(TypedDict):
    """``Monitor.status.predictionDrift``: the outputs against the validation predictions."""

    verdict: str  # a ``status.Verdict`` word
    method: str
    score: float | None
    threshold: float
    predictions: int


class LiveRowsLineage(TypedDict):
    """What a retrain added from live traffic, kept in the version's lineage."""

    path: str
    rows: int
    windowStart: str
    windowEnd: str
    monitor: NotRequired[str]

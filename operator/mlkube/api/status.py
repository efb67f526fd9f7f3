"""The words and shapes that cross the boundary between the operator and its pods.

The trainer writes a summary the operator reads; the operator writes TrainingJob and
Model status the drift checker and the kubectl plugin read; the drift checker writes
Monitor status the operator keeps. Each of those is defined here once, as an enum or a
TypedDict, so a change to a contract happens in one file and mypy finds every user.

The enums are ``StrEnum``: their members are the strings on the wire, compare equal
to what comes back from the API server, and serialise as plain JSON strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, NotRequired, TypedDict

from mlkube.api.performance import LiveRowsLineage, PerformanceStatus, PredictionDriftStatus


class Phase(StrEnum):
    """``TrainingJob.status.phase``."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REJECTED = "Rejected"


class ResourcePhase(StrEnum):
    """``status.phase`` of a Model or Monitor: a one-word summary of its conditions."""

    READY = "Ready"
    ACTIVE = "Active"
    TRAINING = "Training"
    PROGRESSING = "Progressing"
    PENDING = "Pending"
    FAILED = "Failed"
    INVALID = "Invalid"


class PodPhase(StrEnum):
    """The Kubernetes pod phases the operator reads (of a trainer's pod)."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# A run in one of these phases never changes again.
TERMINAL_PHASES: Final = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.REJECTED})


class Decision(StrEnum):
    """``Model.status.versions[].decision``: what the promotion gate made of a version."""

    PROMOTED = "Promoted"
    REJECTED = "Rejected"
    PENDING = "Pending"
    FAILED = "Failed"


class Trigger(StrEnum):
    """``TrainingJob.spec.trigger``: why a run exists."""

    INITIAL = "initial"
    MANUAL = "manual"
    SCHEDULE = "schedule"
    DRIFT = "drift"
    SPEC_CHANGE = "spec-change"
    PERFORMANCE = "performance"
    DATA_CHANGE = "data-change"


class Verdict(StrEnum):
    """``Monitor.status.verdict``: the outcome of the last drift check."""

    DRIFT = "drift"
    NO_DRIFT = "no-drift"
    INSUFFICIENT_DATA = "insufficient-data"


class ConditionType(StrEnum):
    """Condition types; ``Ready`` is the roll-up, ``Drifted`` is the drift checker's."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    TRAINED = "Trained"
    SERVING = "Serving"
    DRIFTED = "Drifted"
    LIVE_PERFORMANCE = "LivePerformance"


class Reason(StrEnum):
    """The fixed set of condition and Event reasons (CamelCase, stable: alerts match them)."""

    INVALID_SPEC = "InvalidSpec"
    MODEL_NOT_FOUND = "ModelNotFound"
    TRAINING = "Training"
    SUCCEEDED = "Succeeded"
    TRAINING_FAILED = "TrainingFailed"
    POD_CONFIG_ERROR = "PodConfigError"
    # The kernel killed the trainer over its memory limit (the kubelet's terminated reason).
    OOM_KILLED = "OOMKilled"
    NO_VERSION = "NoVersion"
    ROLLING_OUT = "RollingOut"
    AVAILABLE = "Available"
    INVALID_PIN = "InvalidPin"
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    RECONCILED = "Reconciled"
    APPLY_FAILED = "ApplyFailed"
    NOT_OWNED = "NotOwned"
    VERSION_REJECTED = "VersionRejected"
    SPEC_CHANGED = "SpecChanged"
    SPEC_REJECTED = "SpecRejected"
    VERSION_PROMOTED = "VersionPromoted"
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_PROMOTED = "CanaryPromoted"
    CANARY_ROLLED_BACK = "CanaryRolledBack"
    # Written by the drift checker on the Drifted condition.
    DATASET_DRIFT = "DatasetDrift"
    NO_DRIFT = "NoDrift"
    INSUFFICIENT_DATA = "InsufficientData"
    NO_SERVING_VERSION = "NoServingVersion"
    CHECK_FAILED = "CheckFailed"
    # Written by the drift checker on the LivePerformance condition.
    LIVE_SCORE_OK = "LiveScoreOk"
    LIVE_SCORE_DEGRADED = "LiveScoreDegraded"
    INSUFFICIENT_LABELS = "InsufficientLabels"


class Artifact(TypedDict, total=False):
    """Where a version lives, the sha256 of its model file and of its verified ONNX form."""

    uri: str
    sha256: str
    onnxSha256: str


class SliceResult(TypedDict):
    """One slice's score against its minimum, as the trainer measured it."""

    name: str
    score: float | None
    rows: int
    minScore: float | None
    passed: bool


class DataLineage(TypedDict, total=False):
    """The data a version was trained on: its URI (credentials redacted) and digest."""

    uri: str
    sha256: str


class Lineage(TypedDict, total=False):
    """Where a version came from, carried from the trainer's summary into the registry."""

    data: DataLineage
    paramsDigest: str
    libraries: dict[str, str]
    image: str
    liveRows: LiveRowsLineage


class TrainerSummary(TypedDict):
    """The trainer's one JSON line: stdout and the pod's termination message."""

    version: int
    metric: str
    higherIsBetter: bool
    score: float
    metrics: dict[str, float]
    slices: list[SliceResult]
    artifact: Artifact
    rows: NotRequired[dict[str, int]]
    durationSeconds: NotRequired[float]
    crossValidation: NotRequired[dict[str, Any]]
    lineage: NotRequired[Lineage]
    search: NotRequired[SearchSummary]
    truncated: NotRequired[bool]


class SearchMethod(StrEnum):
    """``spec.training.search.method``: every grid point in order, or seeded samples."""

    GRID = "grid"
    RANDOM = "random"


class TrialStatus(StrEnum):
    """``TrialResult.status``: a trial either scored on every fold or did not."""

    COMPLETED = "Completed"
    FAILED = "Failed"


class TrialResult(TypedDict):
    """One trial of a search, as its pod writes it to the store and the plugin shows it.

    ``score`` is the mean of ``foldScores`` (the search metric on the same folds of the
    same training rows for every trial); a failed trial has ``error`` and no score.

    ``pipeline`` says whether the trial kept its pipeline fitted on all training rows:
    ``True`` with its ``sha256`` (``trial-K/``), ``False`` when a result already recorded
    ranked above it, so it could not win (``beatenBy``: that trial). A completed trial
    without the key was stopped before its final fit ended; the select step fits the
    winner itself when it kept no pipeline.
    """

    trial: int
    estimator: str
    params: dict[str, Any]
    status: TrialStatus
    metric: str
    foldScores: list[float | None]
    score: float | None
    std: float | None
    fitSeconds: float
    error: NotRequired[str]
    pipeline: NotRequired[bool]
    beatenBy: NotRequired[int]
    sha256: NotRequired[str]


class TrialCounts(TypedDict):
    """``TrainingJob.status.trials``: how a search's trials ended so far."""

    total: int
    succeeded: int
    failed: int


class TrialRow(TypedDict, total=False):
    """One row of ``TrainingJob.status.trialResults``: a trial as the table shows it
    (params rendered as ``name=value`` text, so the status keeps a schema)."""

    trial: int
    estimator: str
    params: str
    status: TrialStatus
    score: float
    fitSeconds: float
    pipeline: bool
    error: str


class SearchSummary(TypedDict):
    """The search part of a trainer summary: the counts and which trial won."""

    trials: TrialCounts
    bestTrial: int
    estimator: str
    params: dict[str, Any]


class ErrorSummary(TypedDict):
    """What a failed trainer leaves in its termination message instead of a summary."""

    error: str


class Condition(TypedDict):
    """A status condition as the Kubernetes API conventions define it."""

    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class TrainingJobStatus(TypedDict, total=False):
    """``TrainingJob.status``: written by the TrainingJob reconciler, the version by the Model's."""

    observedGeneration: int
    phase: Phase
    version: int
    jobName: str
    attempts: int
    startTime: str
    completionTime: str
    metric: str
    higherIsBetter: bool
    score: float
    metrics: dict[str, float]
    slices: list[SliceResult]
    artifact: Artifact
    message: str
    conditions: list[Condition]
    modelGeneration: int
    specDigest: str
    lineage: Lineage
    trials: TrialCounts
    bestTrial: int
    bestScore: float
    trialResults: list[TrialRow]


class VersionEntry(TypedDict, total=False):
    """One entry of ``Model.status.versions``: a finished run and the gate's decision."""

    version: int
    trainingJob: str
    trigger: str
    trainedAt: str
    metric: str
    higherIsBetter: bool
    score: float
    metrics: dict[str, float]
    slices: list[SliceResult]
    uri: str
    sha256: str
    onnxSha256: str
    decision: Decision
    reason: str
    promoted: bool
    generation: int
    specDigest: str
    lineage: Lineage
    parent: int


class FeatureDrift(TypedDict):
    """One feature's test in ``Monitor.status.features``."""

    method: str
    score: float | None
    threshold: float | None
    drifted: bool


class QualityFinding(TypedDict):
    """One data-quality violation of the live window (missing share, unseen category, …)."""

    feature: str
    finding: str
    value: float
    limit: float | None


class DataQualityStatus(TypedDict):
    """``Monitor.status.dataQuality``: how many violations the last window had, and which."""

    violations: int
    findings: list[QualityFinding]


class MonitorStatus(TypedDict, total=False):
    """``Monitor.status``: ``Ready``, ``cronJobName`` by the operator; the rest by the checker."""

    observedGeneration: int
    conditions: list[Condition]
    cronJobName: str
    lastCheckTime: str
    checkedVersion: int
    verdict: Verdict
    samples: int
    datasetDrift: bool
    driftShare: float
    features: dict[str, FeatureDrift | None]
    lastReport: str
    lastTrainingJob: str
    lastRetrainTime: str
    dataQuality: DataQualityStatus
    performance: PerformanceStatus
    predictionDrift: PredictionDriftStatus

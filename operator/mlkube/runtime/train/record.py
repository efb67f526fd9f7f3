"""What a run leaves behind: the version's ``metadata.json`` and the trainer's summary.

The metadata is the full record in the store (schema, profile, data digest, lineage,
libraries); the summary is its short form in the shape of ``api.status.TrainerSummary``,
which the operator reads from the pod's termination message.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlkube import __version__
from mlkube.api.names import version_dir
from mlkube.api.performance import LiveRowsLineage
from mlkube.api.status import Lineage, SliceResult, TrainerSummary
from mlkube.runtime.artifact import FeatureSchema
from mlkube.runtime.train.data import LoadedData
from mlkube.runtime.train.fetch import redact_uri
from mlkube.runtime.train.pipeline import EstimatorChoice, input_layout
from mlkube.runtime.train.quality import CheckedData
from mlkube.runtime.train.slices import Node
from mlkube.runtime.train.spec import TrainingSpec
from mlkube.runtime.train.validate import Predictions

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
    # In a pod only this Model's directory of the store is mounted (writable), here.
    model_root: Path | None = None
    # Labelled live rows to add (a performance-triggered run of a Model that opts in).
    live_rows: LiveRowsLineage | None = None

    @property
    def model_dir(self) -> Path:
        """Where this Model's versions go: ``<store>/<ns>/<model>`` unless mounted alone."""
        if self.model_root is not None:
            return self.model_root
        return self.store / self.spec.namespace / self.spec.name


@dataclass
class Prepared:
    """What is checked before any data is read: where the version goes, what fits it."""

    version: int
    target_dir: Path
    queries: list[Node]
    estimator: EstimatorChoice


@dataclass
class Dataset:
    """The checked data, its schema, the model's inputs and the holdout split."""

    loaded: LoadedData
    checked: CheckedData
    schema: list[FeatureSchema]
    inputs: Any
    y: np.ndarray[Any, Any]
    train_pos: np.ndarray[Any, Any]
    test_pos: np.ndarray[Any, Any]
    stratified: bool
    masks: list[Mask]
    live: LiveRowsLineage | None = None


@dataclass
class Fitted:
    """The fitted pipeline and how it scored."""

    model: Any
    estimator: EstimatorChoice
    score: float
    metrics: dict[str, float]
    slices: list[dict[str, Any]]
    cross: dict[str, Any] | None
    warnings: list[str]
    # the holdout's predictions, computed once for the metrics and reused by the ONNX
    # check and the prediction profile (each pass over a forest costs as much as this one)
    holdout: Predictions


def libraries() -> dict[str, str]:
    """The versions a fitted model depends on; a loader refuses another scikit-learn."""
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


def version_metadata(
    request: RunRequest,
    prepared: Prepared,
    data: Dataset,
    fitted: Fitted,
    *,
    profile: Any,
    elapsed: float,
) -> dict[str, Any]:
    """``metadata.json``: everything a server, a drift check or a person needs later."""
    spec = request.spec
    target: dict[str, Any] = {"name": data.checked.target}
    if spec.task == "classification":
        target["classes"] = np.asarray(fitted.model.classes_).tolist()
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "version": prepared.version,
        "task": spec.task,
        "estimator": {"class": fitted.estimator.class_path, "params": fitted.estimator.params},
        "features": data.schema,
        "input": input_layout(data.schema),
        "target": target,
        "metric": spec.validation.metric,
        "higherIsBetter": spec.higher_is_better,
        "score": fitted.score,
        "metrics": fitted.metrics,
        "slices": fitted.slices,
        "profile": profile,
        "data": _data_record(request, data),
        "lineage": {
            "trigger": request.trigger,
            "reason": request.reason,
            "trainingJob": request.training_job,
            **({"liveRows": data.live} if data.live is not None else {}),
        },
        "warnings": fitted.warnings[:20],
        "libraries": libraries(),
        "trainedAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "durationSeconds": round(elapsed, 3),
    }
    if fitted.cross is not None:
        metadata["crossValidation"] = fitted.cross
    return metadata


def _data_record(request: RunRequest, data: Dataset) -> dict[str, Any]:
    return {
        "uri": redact_uri(request.spec.data.uri),
        "format": data.loaded.format,
        "sha256": data.loaded.sha256,
        "rows": len(data.checked.frame),
        "droppedRows": data.checked.dropped_rows,
        "trainRows": len(data.train_pos),
        "testRows": len(data.test_pos),
        "stratified": data.stratified,
    }


def run_summary(
    request: RunRequest, version: int, data: Dataset, fitted: Fitted, *, sha256: str, elapsed: float
) -> TrainerSummary:
    """The summary the operator reads: score, slices and where the version is."""
    spec = request.spec
    slices: list[SliceResult] = [
        {
            "name": s["name"],
            "score": s["score"],
            "rows": s["rows"],
            "minScore": s["minScore"],
            "passed": s["passed"],
        }
        for s in fitted.slices
    ]
    summary: TrainerSummary = {
        "version": version,
        "metric": spec.validation.metric,
        "higherIsBetter": spec.higher_is_better,
        "score": fitted.score,
        "metrics": fitted.metrics,
        "slices": slices,
        "artifact": {
            "uri": f"{request.store_uri.rstrip('/')}/"
            f"{version_dir(spec.namespace, spec.name, version)}",
            "sha256": sha256,
        },
        "rows": {"train": len(data.train_pos), "test": len(data.test_pos)},
        "durationSeconds": round(elapsed, 3),
    }
    if fitted.cross is not None:
        summary["crossValidation"] = {k: fitted.cross[k] for k in ("folds", "mean", "std")}
    summary["lineage"] = lineage(request, data, fitted)
    return summary


def lineage(request: RunRequest, data: Dataset, fitted: Fitted) -> Lineage:
    """What a version came from, short enough for the termination message."""
    params = {"class": fitted.estimator.class_path, "params": fitted.estimator.params}
    encoded = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    versions = libraries()
    found: Lineage = {
        "data": {"uri": redact_uri(request.spec.data.uri)[:512], "sha256": data.loaded.sha256},
        "paramsDigest": hashlib.sha256(encoded.encode()).hexdigest(),
        "libraries": {k: versions[k] for k in ("scikit-learn", "mlkube")},
    }
    if data.live is not None:
        found["liveRows"] = data.live
    return found

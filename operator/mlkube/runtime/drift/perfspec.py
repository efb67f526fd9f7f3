"""A Monitor's ``spec.performance`` and ``spec.retrainOn``, read once and checked.

Defaults that depend on the Model (the metric, the slices, the target column, whether
live rows may be added to training) are filled in by ``resolve`` when the checker has
the Model and the serving version's metadata in hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from mlkube.api.performance import (
    DEFAULT_LIVE_MAX_ROWS,
    DEFAULT_MIN_LABELS,
    ERROR_METRICS,
    LIVE_CLASSIFICATION_METRICS,
    LIVE_REGRESSION_METRICS,
    RetrainOn,
)
from mlkube.runtime.drift.spec import SpecError
from mlkube.runtime.drift.window import parse_duration


@dataclass(frozen=True)
class LiveSlice:
    name: str
    query: str
    min_score: float | None = None


@dataclass(frozen=True)
class PerformanceSettings:
    metric: str | None = None  # None: the Model's validation metric
    min_score: float | None = None
    max_drop: float | None = None
    slices: tuple[LiveSlice, ...] | None = None  # None: the Model's validation slices
    min_labels: int = DEFAULT_MIN_LABELS
    window: timedelta | None = None  # None: the Monitor's spec.window.duration
    labels_uri: str | None = None
    retrain_on: RetrainOn = RetrainOn.DRIFT
    # From the Model: add the labelled rows of a triggering window to training.
    include_live: bool = False
    live_max_rows: int = DEFAULT_LIVE_MAX_ROWS

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in ERROR_METRICS

    def retrains_on(self, signal: RetrainOn) -> bool:
        return self.retrain_on in (signal, RetrainOn.BOTH)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _slices(raw: Any, where: str) -> tuple[LiveSlice, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise SpecError(f"{where}: expected a list of {{name, query}}")
    found = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not item.get("name") or not item.get("query"):
            raise SpecError(f"{where}[{index}]: needs a name and a query")
        found.append(
            LiveSlice(
                str(item["name"]),
                str(item["query"]),
                _number(item.get("minScore"), f"{where}[{index}].minScore"),
            )
        )
    return tuple(found)


def performance_from_monitor(manifest: Mapping[str, Any]) -> PerformanceSettings | None:
    """The Monitor's performance settings, or None when it has no ``spec.performance``."""
    spec = manifest.get("spec") or {}
    raw = spec.get("performance")
    retrain = spec.get("retrainOn", RetrainOn.DRIFT.value)
    if retrain not in {r.value for r in RetrainOn}:
        raise SpecError(f"spec.retrainOn: expected drift, performance or both, got {retrain!r}")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("spec.performance: expected a mapping")
    metric = raw.get("metric")
    if metric is not None and metric not in (
        *LIVE_CLASSIFICATION_METRICS,
        *LIVE_REGRESSION_METRICS,
    ):
        raise SpecError(
            f"spec.performance.metric: {metric!r} cannot be computed from labels alone "
            f"(use one of {', '.join((*LIVE_CLASSIFICATION_METRICS, *LIVE_REGRESSION_METRICS))})"
        )
    min_labels = raw.get("minLabels", DEFAULT_MIN_LABELS)
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise SpecError(
            f"spec.performance.minLabels: expected a positive integer, got {min_labels!r}"
        )
    window = None
    if raw.get("window") is not None:
        try:
            window = parse_duration(str(raw["window"]))
        except ValueError as error:
            raise SpecError(f"spec.performance.window: {error}") from None
    labels = raw.get("labels") or {}
    max_drop = _number(raw.get("maxDrop"), "spec.performance.maxDrop")
    if max_drop is not None and max_drop < 0:
        raise SpecError(f"spec.performance.maxDrop: must be at least 0, got {max_drop}")
    return PerformanceSettings(
        metric=None if metric is None else str(metric),
        min_score=_number(raw.get("minScore"), "spec.performance.minScore"),
        max_drop=max_drop,
        slices=_slices(raw.get("slices"), "spec.performance.slices"),
        min_labels=min_labels,
        window=window,
        labels_uri=str(labels["uri"])
        if isinstance(labels, Mapping) and labels.get("uri")
        else None,
        retrain_on=RetrainOn(retrain),
    )


def resolve(
    settings: PerformanceSettings,
    metadata: Mapping[str, Any],
    model: Mapping[str, Any] | None,
    window: timedelta,
) -> PerformanceSettings:
    """Fills the defaults from the serving version's metadata and the Model's spec."""
    task = metadata["task"]
    live = LIVE_CLASSIFICATION_METRICS if task == "classification" else LIVE_REGRESSION_METRICS
    metric = settings.metric or str(metadata.get("metric") or live[0])
    if metric not in live:
        # roc_auc and log_loss need probabilities; the log holds labels only.
        metric = live[0] if task == "classification" else "rmse"
    slices = settings.slices
    if slices is None:
        slices = tuple(
            LiveSlice(str(s["name"]), str(s["query"])) for s in metadata.get("slices") or []
        )
    training = ((model or {}).get("spec") or {}).get("training") or {}
    live_data = training.get("liveData") or {}
    return replace(
        settings,
        metric=metric,
        slices=slices,
        window=settings.window or window,
        include_live=bool(live_data.get("include", False)),
        live_max_rows=int(live_data.get("maxRows", DEFAULT_LIVE_MAX_ROWS)),
    )

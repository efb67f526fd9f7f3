"""Live scores from joined rows: counts per slice, then the metric from scikit-learn.

Each joined row adds to the overall counts and to those of every slice its logged
inputs fall in (slices use training's filter language, evaluated on a chunk of rows at
a time). Classification keeps a confusion count per slice, regression a few sums, so
the state is bounded by the classes whatever the number of rows. The metric is then
scikit-learn's own on the distinct (label, prediction) pairs weighted by their counts,
which equals what it gives on the expanded rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from mlkube.api.performance import ERROR_METRICS, OVERALL_SLICE, PerformanceVerdict
from mlkube.runtime.drift.perfspec import PerformanceSettings
from mlkube.runtime.drift.spec import SpecError
from mlkube.runtime.profile import category_key
from mlkube.runtime.train.slices import Node, SliceError, columns_used, evaluate, parse_query

CHUNK_ROWS: Final = 16_384


@dataclass
class Counts:
    confusion: Counter[tuple[Any, Any]] = field(default_factory=Counter)
    n: int = 0
    sse: float = 0.0
    sae: float = 0.0
    sy: float = 0.0
    syy: float = 0.0


def check_slices(settings: PerformanceSettings, metadata: Mapping[str, Any]) -> list[Node]:
    """Parses the slices; a syntax error or a column not in the inputs is a SpecError."""
    names = {f["name"] for f in metadata.get("features") or []}
    nodes = []
    for item in settings.slices or ():
        try:
            node = parse_query(item.query)
        except SliceError as error:
            raise SpecError(f"spec.performance slice {item.name!r}: {error}") from None
        unknown = sorted(columns_used(node) - names)
        if unknown:
            raise SpecError(
                f"spec.performance slice {item.name!r}: {', '.join(unknown)} is not a logged "
                f"input (the inputs are {', '.join(sorted(names)[:20])})"
            )
        nodes.append(node)
    return nodes


class SliceAccumulator:
    """Counts for ``overall`` and each slice, fed row by row, evaluated chunk by chunk."""

    def __init__(self, settings: PerformanceSettings, metadata: Mapping[str, Any]) -> None:
        self.settings = settings
        self.classification = metadata["task"] == "classification"
        classes = (metadata.get("target") or {}).get("classes") or []
        self.positive = category_key(classes[1]) if len(classes) == 2 else None
        self.nodes = check_slices(settings, metadata)
        self.names = [OVERALL_SLICE, *(s.name for s in settings.slices or ())]
        self.counts = [Counts() for _ in self.names]
        self.truth: list[Any] = []
        self.predicted: list[Any] = []
        self.inputs: list[dict[str, Any]] = []

    def add(self, truth: Any, predicted: Any, inputs: dict[str, Any]) -> None:
        self.truth.append(truth)
        self.predicted.append(predicted)
        if self.nodes:
            self.inputs.append(inputs)
        if len(self.truth) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.truth:
            return
        masks = [np.ones(len(self.truth), dtype=bool)]
        if self.nodes:
            import pandas as pd

            frame = pd.DataFrame.from_records(self.inputs)
            for item, node in zip(self.settings.slices or (), self.nodes, strict=True):
                try:
                    masks.append(evaluate(node, frame))
                except SliceError as error:
                    raise SpecError(f"spec.performance slice {item.name!r}: {error}") from None
        for counts, mask in zip(self.counts, masks, strict=True):
            self._add(counts, mask)
        self.truth, self.predicted, self.inputs = [], [], []

    def _add(self, counts: Counts, mask: np.ndarray[Any, Any]) -> None:
        chosen = np.flatnonzero(mask)
        if self.classification:
            counts.confusion.update((self.truth[i], self.predicted[i]) for i in chosen)
            counts.n += len(chosen)
            return
        y = np.asarray(self.truth, dtype=np.float64)[chosen]
        p = np.asarray(self.predicted, dtype=np.float64)[chosen]
        error = y - p
        counts.n += len(chosen)
        counts.sse += float(np.dot(error, error))
        counts.sae += float(np.abs(error).sum())
        counts.sy += float(y.sum())
        counts.syy += float(np.dot(y, y))

    def scores(self) -> list[tuple[str, float | None, int]]:
        return [
            (name, self.score(counts), counts.n)
            for name, counts in zip(self.names, self.counts, strict=True)
        ]

    def score(self, counts: Counts) -> float | None:
        if counts.n == 0:
            return None
        value = (
            self._classification(counts)
            if self.classification
            else _regression(self.settings, counts)
        )
        return None if value is None or not math.isfinite(value) else round(value, 6)

    def _classification(self, counts: Counts) -> float | None:
        from sklearn import metrics as m

        pairs = list(counts.confusion.items())
        truth = np.array([str(t) for (t, _), _ in pairs])
        predicted = np.array([str(p) for (_, p), _ in pairs])
        weight = np.array([c for _, c in pairs], dtype=np.float64)
        metric = self.settings.metric
        if metric == "accuracy":
            return float(m.accuracy_score(truth, predicted, sample_weight=weight))
        scorer = {"f1": m.f1_score, "f1_macro": m.f1_score}.get(
            str(metric), {"precision": m.precision_score, "recall": m.recall_score}.get(str(metric))
        )
        if scorer is None:
            return None
        if self.positive is not None and metric != "f1_macro":
            return float(
                scorer(truth, predicted, pos_label=str(self.positive), zero_division=0,
                       sample_weight=weight)
            )  # fmt: skip
        return float(
            scorer(truth, predicted, average="macro", zero_division=0, sample_weight=weight)
        )


def _regression(settings: PerformanceSettings, counts: Counts) -> float | None:
    if settings.metric == "rmse":
        return math.sqrt(counts.sse / counts.n)
    if settings.metric == "mae":
        return counts.sae / counts.n
    total = counts.syy - counts.sy * counts.sy / counts.n
    if counts.n < 2 or total <= 0:
        return None
    return 1.0 - counts.sse / total


def _worse(score: float, bound: float, metric: str) -> bool:
    return score > bound if metric in ERROR_METRICS else score < bound


def verdict_of(
    settings: PerformanceSettings,
    scores: list[tuple[str, float | None, int]],
    validation: Any,
) -> tuple[PerformanceVerdict, str]:
    """The verdict and why: too few labels, a bound broken (which), or within bounds."""
    metric = str(settings.metric)
    _, score, labels = scores[0]
    if labels < settings.min_labels or score is None:
        return PerformanceVerdict.INSUFFICIENT_LABELS, (
            f"{labels} labelled predictions in the window, fewer than minLabels "
            f"{settings.min_labels}; no verdict, nothing triggered"
        )
    broken = []
    if settings.min_score is not None and _worse(score, settings.min_score, metric):
        broken.append(f"live {metric} {score:.4f} is below minScore {settings.min_score:g}")
    if settings.max_drop is not None and isinstance(validation, int | float):
        drop = score - validation if metric in ERROR_METRICS else validation - score
        if drop > settings.max_drop:
            broken.append(
                f"live {metric} {score:.4f} is {drop:.4f} worse than the serving version's "
                f"validation {validation:.4f} (maxDrop {settings.max_drop:g})"
            )
    for item, (name, value, count) in zip(settings.slices or (), scores[1:], strict=True):
        if (
            item.min_score is not None
            and value is not None
            and _worse(value, item.min_score, metric)
        ):
            broken.append(f"slice {name} {value:.4f} below {item.min_score:g} ({count} labels)")
    if broken:
        return PerformanceVerdict.DEGRADED, "; ".join(broken)
    return PerformanceVerdict.OK, f"live {metric} {score:.4f} on {labels} labelled predictions"

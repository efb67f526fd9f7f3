"""Prediction drift: the model's outputs in the window against its validation predictions.

A separate signal beside input drift: the inputs may look as in training while the
outputs move (a feature the profile cannot see, an interaction, a broken upstream
encoding), and outputs can be watched before any label arrives. The trainer records the
holdout predictions of each version as a one-feature reference profile
(``metadata.json`` → ``predictionProfile``, feature ``prediction``: categorical for a
classifier, numeric for a regressor), so the same bounded summary and the same tests as
the input features apply, with the Monitor's drift settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mlkube.api.performance import PredictionDriftStatus
from mlkube.api.status import Verdict
from mlkube.runtime.drift.accumulate import Block, LiveSummary
from mlkube.runtime.drift.evaluate import evaluate, needs_live_sample
from mlkube.runtime.drift.spec import DriftSettings
from mlkube.runtime.profile import (
    PREDICTION_FEATURE as FEATURE,
)
from mlkube.runtime.profile import (
    PREDICTION_PROFILE as PROFILE_KEY,
)
from mlkube.runtime.profile import (
    ProfileError,
    read_reference_profile,
)

CHUNK_ROWS: Final = 65_536


@dataclass
class OutputDriftResult:
    verdict: Verdict
    method: str
    score: float | None
    threshold: float | None
    predictions: int

    def as_status(self) -> PredictionDriftStatus:
        return {
            "verdict": self.verdict.value,
            "method": self.method,
            "score": self.score,
            "threshold": float(self.threshold or 0.0),
            "predictions": self.predictions,
        }


def output_kind(task: str) -> str:
    return "categorical" if task == "classification" else "numeric"


class OutputDrift:
    """Folds logged outputs (``observe``) into a bounded summary; ``result`` tests it."""

    def __init__(self, metadata: Mapping[str, Any], settings: DriftSettings) -> None:
        raw = metadata.get(PROFILE_KEY)
        self.kind = output_kind(str(metadata["task"]))
        self.settings = settings
        self.profile = None
        self.summary: LiveSummary | None = None
        self.buffer: list[Any] = []
        if raw is None:
            return
        try:
            self.profile = read_reference_profile(raw)
        except ProfileError:
            return
        numeric = [FEATURE] if self.kind == "numeric" else []
        categorical = [FEATURE] if self.kind == "categorical" else []
        self.summary = LiveSummary(
            self.profile,
            numeric,
            categorical,
            keep_sample=needs_live_sample(self.profile, numeric, settings),
        )

    @property
    def enabled(self) -> bool:
        return self.summary is not None

    def observe(self, output: Any) -> None:
        if self.summary is None:
            return
        self.buffer.append(output)
        if len(self.buffer) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.summary is not None and self.buffer:
            self.summary.add(Block(len(self.buffer), [{FEATURE: self.buffer}]))
        self.buffer = []

    def result(self) -> OutputDriftResult | None:
        if self.summary is None or self.profile is None:
            return None
        self._flush()
        evaluation = evaluate(self.profile, self.summary, self.settings, {FEATURE: self.kind})
        feature = evaluation.features[FEATURE]
        verdict = Verdict.INSUFFICIENT_DATA
        if evaluation.verdict != Verdict.INSUFFICIENT_DATA and feature.score is not None:
            verdict = Verdict.DRIFT if feature.drifted else Verdict.NO_DRIFT
        return OutputDriftResult(
            verdict, feature.method, feature.score, feature.threshold, self.summary.rows
        )

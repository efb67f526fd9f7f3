"""From a reference profile and a live summary to per-feature results and a verdict.

Pure computation over what ``LiveSummary`` kept: binned tests run once per method over
all the features that use it (one matrix each), sample tests per feature. A feature that
cannot be tested (no live values, or an empty reference) gets a data-quality finding and
method ``none``; it neither drifts nor counts in the drift share. Below ``min_samples``
live rows the verdict is ``insufficient-data``, never ``drift``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mlkube.api.status import Verdict
from mlkube.runtime.drift import stats
from mlkube.runtime.drift.accumulate import LiveSummary
from mlkube.runtime.drift.spec import P_VALUE_METHODS, DriftSettings
from mlkube.runtime.profile import ReferenceProfile, describe_rows

SAMPLE_METHODS: Final = frozenset({"ks", "wasserstein"})


@dataclass
class FeatureResult:
    name: str
    kind: str
    method: str
    threshold: float | None
    score: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    drifted: bool = False
    live_missing_fraction: float = 0.0
    reference_counts: list[float] = field(default_factory=list)
    live_counts: list[float] = field(default_factory=list)
    bin_labels: list[str] = field(default_factory=list)

    def as_report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": self.kind,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "liveMissingFraction": self.live_missing_fraction,
        }
        if self.p_value is not None:
            entry["pValue"] = self.p_value
            entry["statistic"] = self.statistic
        return entry


@dataclass
class Evaluation:
    features: dict[str, FeatureResult]
    findings: list[dict[str, Any]]
    live_rows: int
    reference_rows: int
    reference_note: str
    verdict: str
    dataset_drift: bool
    drift_share: float
    tested: int


def needs_live_sample(
    profile: ReferenceProfile, numeric: Sequence[str], settings: DriftSettings
) -> bool:
    """Whether any numeric feature's test needs values (so the summary keeps a sample)."""
    for name in numeric:
        feature = profile["features"][name]
        method, _ = settings.method_for(name, "numeric", profile["rows"], feature.get("distinct"))
        if method in SAMPLE_METHODS:
            return True
    return False


def _binned(
    profile: ReferenceProfile, live: LiveSummary, name: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    feature: Any = profile["features"][name]
    if feature["kind"] == "numeric":
        j = live.numeric.index(name)
        ref = np.asarray(feature["binCounts"], dtype=np.float64)
        edges = feature["binEdges"]
        labels = [f"<={e:.4g}" for e in edges] + [f">{edges[-1]:.4g}" if edges else "all"]
        return ref, live.bin_counts[j, : ref.size].astype(np.float64), labels
    cats = live.categories[name]
    ref = np.asarray([*feature["frequencies"].values(), feature["otherCount"]], dtype=np.float64)
    return ref, cats.counts.astype(np.float64), [*cats.categories, "(other)"]


def _padded(rows: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    width = max(r.size for r in rows)
    matrix = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        matrix[i, : row.size] = row
    return matrix


def _score_binned(
    method: str,
    results: list[FeatureResult],
    refs: list[NDArray[np.float64]],
    lives: list[NDArray[np.float64]],
) -> None:
    ref, live = _padded(refs), _padded(lives)
    if method == "psi":
        scores = stats.psi(ref, live)
        for result, score in zip(results, scores, strict=True):
            result.score = float(score)
    elif method == "jensenshannon":
        scores = stats.jensen_shannon(ref, live)
        for result, score in zip(results, scores, strict=True):
            result.score = float(score)
    else:
        statistic, p_value = stats.chi2_homogeneity(ref, live)
        for result, chi, p in zip(results, statistic, p_value, strict=True):
            result.statistic, result.p_value, result.score = float(chi), float(p), float(p)


def _score_sample(profile: ReferenceProfile, live: LiveSummary, result: FeatureResult) -> None:
    feature: Any = profile["features"][result.name]
    reference = np.asarray(feature["sample"], dtype=np.float64)
    values = live.numeric_sample(live.numeric.index(result.name))
    if values.size == 0:
        return
    if result.method == "ks":
        statistic, p_value = stats.ks_test(reference, values)
        result.statistic, result.p_value, result.score = statistic, p_value, p_value
    else:
        result.score = stats.normalised_wasserstein(reference, values, feature["std"] or 0.0)


def evaluate(
    profile: ReferenceProfile,
    live: LiveSummary,
    settings: DriftSettings,
    kinds: dict[str, str],
) -> Evaluation:
    """Scores every feature, collects data-quality findings and decides the verdict."""
    results: dict[str, FeatureResult] = {}
    findings: list[dict[str, Any]] = []
    groups: dict[str, list[tuple[FeatureResult, NDArray[np.float64], NDArray[np.float64]]]] = {}
    for name, kind in kinds.items():
        feature: Any = profile["features"][name]
        method, threshold = settings.method_for(
            name, kind, profile["rows"], feature.get("distinct")
        )
        counts = live.summary_for(name)
        result = FeatureResult(
            name, kind, method, threshold, live_missing_fraction=counts["missingFraction"]
        )
        results[name] = result
        findings += _findings(feature, live, settings, name, kind)
        ref, cur, labels = _binned(profile, live, name)
        result.reference_counts, result.live_counts = ref.tolist(), cur.tolist()
        result.bin_labels = labels
        if counts["count"] == 0 or feature["count"] == 0:
            result.method, result.threshold = "none", None
        elif method in SAMPLE_METHODS:
            _score_sample(profile, live, result)
        else:
            groups.setdefault(method, []).append((result, ref, cur))
    for method, members in groups.items():
        _score_binned(
            method, [m[0] for m in members], [m[1] for m in members], [m[2] for m in members]
        )
    return _verdict(profile, live, settings, results, findings)


def _findings(
    feature: Any, live: LiveSummary, settings: DriftSettings, name: str, kind: str
) -> list[dict[str, Any]]:
    """Data-quality findings of one feature: missing values, non-numbers, unseen categories."""
    counts = live.summary_for(name)
    limit = settings.max_missing_fraction
    found: list[dict[str, Any]] = []
    if live.rows and counts["count"] == 0:
        found.append({"feature": name, "finding": "all-missing", "value": 1.0, "limit": limit})
    elif counts["missingFraction"] > limit:
        found.append(
            {
                "feature": name,
                "finding": "missing-fraction",
                "value": counts["missingFraction"],
                "limit": limit,
            }
        )
    if kind == "numeric" and live.invalid[live.numeric.index(name)]:
        invalid = int(live.invalid[live.numeric.index(name)])
        found.append({"feature": name, "finding": "not-a-number", "value": invalid, "limit": 0})
    if kind == "categorical" and live.categories[name].new and counts["count"]:
        new = live.categories[name].new
        found.append(
            {
                "feature": name,
                "finding": "unseen-categories",
                "value": sum(new.values()) / counts["count"],
                "limit": 0.0,
                "examples": [k for k, _ in new.most_common(5)],
            }
        )
    if feature["count"] == 0:
        found.append({"feature": name, "finding": "reference-empty", "value": 0, "limit": None})
    return found


def _verdict(
    profile: ReferenceProfile,
    live: LiveSummary,
    settings: DriftSettings,
    results: dict[str, FeatureResult],
    findings: list[dict[str, Any]],
) -> Evaluation:
    """Which tested features drifted, the share of them, and the dataset's verdict."""
    tested = 0
    drifted = 0
    for result in results.values():
        if result.score is None or result.threshold is None:
            continue
        tested += 1
        if result.method in P_VALUE_METHODS:
            result.drifted = result.score < result.threshold
        else:
            result.drifted = result.score >= result.threshold
        drifted += result.drifted
    share = drifted / tested if tested else 0.0
    enough = live.rows >= settings.min_samples and tested > 0
    dataset_drift = enough and share >= settings.dataset_drift_share
    if not enough:
        for result in results.values():
            result.drifted = False
    verdict = Verdict.INSUFFICIENT_DATA
    if enough:
        verdict = Verdict.DRIFT if dataset_drift else Verdict.NO_DRIFT
    return Evaluation(
        features=results,
        findings=findings,
        live_rows=live.rows,
        reference_rows=profile["rows"],
        reference_note=describe_rows(profile),
        verdict=verdict,
        dataset_drift=dataset_drift,
        drift_share=share,
        tested=tested,
    )

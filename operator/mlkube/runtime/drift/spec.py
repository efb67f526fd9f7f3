"""The drift settings of a Monitor, read from its manifest (``-f``) or from the cluster.

Defaults follow Evidently's data-drift preset, which is what users of drift tooling
expect: method ``auto`` picks KS (numeric) or chi² (categorical) with p < 0.05 when the
reference has at most 1,000 rows, and the Wasserstein distance normalised by the
reference std (numeric) or the Jensen-Shannon distance (categorical) with threshold 0.1
above that; the dataset drifts when at least half of the tested features drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from mlkube.runtime.drift.window import parse_duration

METHODS: Final = ("psi", "ks", "wasserstein", "jensenshannon", "chi2")
P_VALUE_METHODS: Final = frozenset({"ks", "chi2"})
NUMERIC_METHODS: Final = frozenset(METHODS)
CATEGORICAL_METHODS: Final = frozenset({"psi", "jensenshannon", "chi2"})
DEFAULT_THRESHOLDS: Final = {
    "psi": 0.2,
    "ks": 0.05,
    "chi2": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
}
SMALL_REFERENCE_ROWS: Final = 1000
FEW_DISTINCT_VALUES: Final = 5


class SpecError(ValueError):
    """The Monitor spec cannot be used; the message names the field."""


@dataclass(frozen=True)
class FeatureOverride:
    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DriftSettings:
    model: str | None = None
    window: timedelta = timedelta(hours=24)
    min_samples: int = 500
    method: str = "auto"
    numeric: str = "auto"
    categorical: str = "auto"
    threshold: float | None = None
    dataset_drift_share: float = 0.5
    features: Mapping[str, FeatureOverride] = field(default_factory=dict)
    max_missing_fraction: float = 0.05
    action: str = "retrain"
    cooldown: timedelta = timedelta(hours=6)

    def method_for(
        self, name: str, kind: str, reference_rows: int, distinct: int | None
    ) -> tuple[str, float]:
        """The test and threshold for one feature, resolving overrides and ``auto``."""
        override = self.features.get(name, FeatureOverride())
        kind_method = self.numeric if kind == "numeric" else self.categorical
        method = override.method or (kind_method if kind_method != "auto" else self.method)
        if method == "auto":
            few = kind == "numeric" and distinct is not None and distinct <= FEW_DISTINCT_VALUES
            small = reference_rows <= SMALL_REFERENCE_ROWS
            if kind == "numeric" and not few:
                method = "ks" if small else "wasserstein"
            else:
                method = "chi2" if small else "jensenshannon"
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if method not in allowed:
            raise SpecError(
                f"spec.drift: method {method!r} does not apply to {kind} feature {name!r} "
                f"(use one of: {', '.join(sorted(allowed))})"
            )
        threshold = override.threshold if override.threshold is not None else self.threshold
        return method, DEFAULT_THRESHOLDS[method] if threshold is None else threshold


def _method(value: Any, where: str) -> str:
    if value is None:
        return "auto"
    if value not in (*METHODS, "auto"):
        raise SpecError(
            f"{where}: unknown method {value!r} (use auto or one of {', '.join(METHODS)})"
        )
    return str(value)


def _number(value: Any, where: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(f"{where}: must be {bound}, got {value}")
    return float(value)


def _duration(value: Any, where: str) -> timedelta:
    try:
        return parse_duration(str(value))
    except ValueError as error:
        raise SpecError(f"{where}: {error}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def settings_from_monitor(manifest: Mapping[str, Any]) -> DriftSettings:
    """Reads a Monitor object (as YAML gives it, or as the API returns it)."""
    if manifest.get("kind", "Monitor") != "Monitor":
        raise SpecError(f"expected a Monitor manifest, got kind {manifest.get('kind')!r}")
    spec = _mapping(manifest.get("spec"), "spec")
    window = _mapping(spec.get("window"), "spec.window")
    drift = _mapping(spec.get("drift"), "spec.drift")
    quality = _mapping(spec.get("dataQuality"), "spec.dataQuality")
    overrides: dict[str, FeatureOverride] = {}
    for name, raw in _mapping(drift.get("features"), "spec.drift.features").items():
        entry = _mapping(raw, f"spec.drift.features.{name}")
        threshold = entry.get("threshold")
        overrides[str(name)] = FeatureOverride(
            method=None
            if entry.get("method") in (None, "auto")
            else _method(entry.get("method"), f"spec.drift.features.{name}.method"),
            threshold=None
            if threshold is None
            else _number(threshold, f"spec.drift.features.{name}.threshold", 0.0),
        )
    min_samples = window.get("minSamples", 500)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise SpecError(f"spec.window.minSamples: expected a positive integer, got {min_samples!r}")
    action = spec.get("action", "retrain")
    if action not in ("retrain", "alert"):
        raise SpecError(f"spec.action: expected retrain or alert, got {action!r}")
    threshold = drift.get("threshold")
    model_ref = _mapping(spec.get("modelRef"), "spec.modelRef")
    return DriftSettings(
        model=str(model_ref["name"]) if model_ref.get("name") else None,
        window=_duration(window.get("duration", "24h"), "spec.window.duration"),
        min_samples=min_samples,
        method=_method(drift.get("method"), "spec.drift.method"),
        numeric=_method(drift.get("numeric"), "spec.drift.numeric"),
        categorical=_method(drift.get("categorical"), "spec.drift.categorical"),
        threshold=None if threshold is None else _number(threshold, "spec.drift.threshold", 0.0),
        dataset_drift_share=_number(
            drift.get("datasetDriftShare", 0.5), "spec.drift.datasetDriftShare", 0.0, 1.0
        ),
        features=overrides,
        max_missing_fraction=_number(
            quality.get("maxMissingFraction", 0.05), "spec.dataQuality.maxMissingFraction", 0.0, 1.0
        ),
        action=str(action),
        cooldown=_duration(spec.get("cooldown", "6h"), "spec.cooldown"),
    )

"""Folding live chunks into a bounded summary against the reference profile.

Everything kept is bounded by the profile, never by the rows read:

- numeric: counts per reference bin (the profile's edges, same closed-right rule), count,
  missing, values that are not numbers, sum, sum of squares, min, max — one
  ``searchsorted`` per feature and chunk, then one ``bincount`` for all features at once;
- a bottom-k sample of rows (each row gets a seeded random key; the ``sample_size``
  smallest keys win), which is a uniform sample without replacement, shared by all numeric
  features, for the tests that need values (KS, Wasserstein);
- categorical: counts of the reference's kept categories, one pooled "other" count, and
  counts of at most ``MAX_NEW_CATEGORIES`` unseen labels for the data-quality report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mlkube.runtime.profile import NumericProfile, ReferenceProfile, category_keys, numeric_values

MAX_NEW_CATEGORIES: Final = 1000
DEFAULT_LIVE_SAMPLE: Final = 20_000


@dataclass
class CategoricalCounts:
    categories: list[str]  # the reference's kept categories; index len() is "other"
    index: dict[str, int]
    counts: NDArray[np.int64]
    missing: int = 0
    new: Counter[str] = field(default_factory=Counter)


class LiveSummary:
    """Bounded live statistics, built chunk by chunk with ``add``."""

    def __init__(
        self, profile: ReferenceProfile, numeric: Sequence[str], categorical: Sequence[str],
        *, sample_size: int = DEFAULT_LIVE_SAMPLE, keep_sample: bool = True, seed: int = 0,
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.rows = 0
        numeric_profiles: list[NumericProfile] = [
            profile["features"][n] for n in self.numeric  # type: ignore[misc]
        ]
        self.edges = [np.asarray(p["binEdges"], dtype=np.float64) for p in numeric_profiles]
        self.max_bins = max((e.size + 1 for e in self.edges), default=1)
        width = len(self.numeric)
        self.bin_counts = np.zeros((width, self.max_bins), dtype=np.int64)
        self.count = np.zeros(width, dtype=np.int64)
        self.missing = np.zeros(width, dtype=np.int64)
        self.invalid = np.zeros(width, dtype=np.int64)
        self.total = np.zeros(width)
        self.total_sq = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)
        self.sample_size = sample_size if keep_sample and width else 0
        self.sample_keys: NDArray[np.float64] = np.empty(0)
        self.sample: NDArray[np.float64] = np.empty((0, width))
        self.rng = np.random.default_rng(seed)
        self.categories: dict[str, CategoricalCounts] = {}
        for name in self.categorical:
            kept = list(profile["features"][name]["frequencies"])  # type: ignore[typeddict-item]
            self.categories[name] = CategoricalCounts(
                categories=kept, index={k: i for i, k in enumerate(kept)},
                counts=np.zeros(len(kept) + 1, dtype=np.int64),
            )

    def add(self, chunk: pd.DataFrame) -> None:
        rows = len(chunk)
        if rows == 0:
            return
        self.rows += rows
        if self.numeric:
            self._add_numeric(chunk, rows)
        for name in self.categorical:
            self._add_categorical(self.categories[name], chunk[name])

    def _add_numeric(self, chunk: pd.DataFrame, rows: int) -> None:
        matrix = np.empty((rows, len(self.numeric)))
        for j, name in enumerate(self.numeric):
            column = chunk[name]
            values = numeric_values(column)
            matrix[:, j] = values
            if column.dtype == object:
                self.invalid[j] += int((np.isnan(values) & column.notna().to_numpy()).sum())
        present = ~np.isnan(matrix)
        self.count += present.sum(axis=0)
        self.missing += rows - present.sum(axis=0)
        filled = np.where(present, matrix, 0.0)
        self.total += filled.sum(axis=0)
        self.total_sq += np.square(filled).sum(axis=0)
        with np.errstate(invalid="ignore"):
            self.low = np.fmin(self.low, np.where(present, matrix, np.inf).min(axis=0))
            self.high = np.fmax(self.high, np.where(present, matrix, -np.inf).max(axis=0))
        bins = np.empty((rows, len(self.numeric)), dtype=np.int64)
        for j, edges in enumerate(self.edges):
            bins[:, j] = np.searchsorted(edges, matrix[:, j], side="left")
        offsets = np.arange(len(self.numeric), dtype=np.int64) * self.max_bins
        flat = (bins + offsets)[present]
        self.bin_counts += np.bincount(flat, minlength=self.bin_counts.size).reshape(
            self.bin_counts.shape
        )
        if self.sample_size:
            self._add_sample(matrix)

    def _add_sample(self, matrix: NDArray[np.float64]) -> None:
        keys: NDArray[np.float64] = np.asarray(self.rng.random(matrix.shape[0]))
        all_keys = np.concatenate([self.sample_keys, keys])
        if all_keys.size <= self.sample_size:
            self.sample_keys = all_keys
            self.sample = np.concatenate([self.sample, matrix])
            return
        keep = np.argpartition(all_keys, self.sample_size - 1)[: self.sample_size]
        old = keep[keep < self.sample_keys.size]
        new = keep[keep >= self.sample_keys.size] - self.sample_keys.size
        self.sample = np.concatenate([self.sample[old], matrix[new]])
        self.sample_keys = np.concatenate([self.sample_keys[old], keys[new]])

    def _add_categorical(self, target: CategoricalCounts, column: pd.Series[Any]) -> None:
        raw = column.value_counts(dropna=True)
        target.missing += int(len(column) - raw.sum())
        if raw.empty:
            return
        keys = category_keys(pd.Series(raw.index, dtype=object))
        other = len(target.categories)
        for key, count in zip(keys.tolist(), raw.tolist(), strict=True):
            position = target.index.get(key, other) if key is not None else other
            target.counts[position] += count
            if position == other and (key in target.new or len(target.new) < MAX_NEW_CATEGORIES):
                target.new[str(key)] += count

    def numeric_sample(self, j: int) -> NDArray[np.float64]:
        """The sampled non-missing values of numeric feature ``j``."""
        column = self.sample[:, j]
        result: NDArray[np.float64] = column[~np.isnan(column)]
        return result

    def numeric_mean(self) -> NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            result: NDArray[np.float64] = self.total / self.count
        return result

    def summary_for(self, name: str) -> dict[str, Any]:
        """Counts of one feature for the report: count, missing, and a missing fraction."""
        if name in self.categories:
            cats = self.categories[name]
            count = int(cats.counts.sum())
            missing = cats.missing
        else:
            j = self.numeric.index(name)
            count, missing = int(self.count[j]), int(self.missing[j])
        return {"count": count, "missing": missing,
                "missingFraction": missing / self.rows if self.rows else 0.0}

"""Drift statistics: pure numpy functions over counts and samples, no I/O.

Binned tests (PSI, Jensen-Shannon, chi²) take count matrices shaped ``(features, bins)``
and score every feature in one vectorised pass; features with fewer bins are padded with
zero columns, which every one of these tests ignores (a bin empty on both sides adds
nothing). Sample tests (KS, Wasserstein) sort one feature at a time, since samples differ
in length once missing values are dropped.

Each function names the reference implementation it agrees with (the unit tests check
it): ``scipy.stats.ks_2samp``, ``scipy.stats.wasserstein_distance``,
``scipy.spatial.distance.jensenshannon``, ``scipy.stats.chi2_contingency``. Zero shares in
PSI are replaced by ``ZERO_SHARE`` before use, as Evidently does, so a bin or category
new in the live data gives a large but finite score. scipy is imported only by the tests
that need its distributions (KS, chi²): the default large-sample path (Wasserstein,
Jensen-Shannon) is numpy alone, which keeps a check's start-up short.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

ZERO_SHARE: Final = 1e-4
# Up to this many values on the larger side, ks_2samp computes exact p-values.
KS_EXACT_MAX_N: Final = 10_000

FloatArray = NDArray[np.float64]


def shares(counts: NDArray[Any]) -> FloatArray:
    """Row-normalised shares with zero shares replaced by ``ZERO_SHARE`` (per row)."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    result = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    result[result == 0] = ZERO_SHARE
    shaped: FloatArray = result
    return shaped


def psi(reference_counts: NDArray[Any], live_counts: NDArray[Any]) -> FloatArray:
    """Population stability index per row: sum((live - ref) * ln(live / ref)) over bins.

    Padding bins (zero on both sides) contribute (eps - eps) * ln(1) = 0.
    """
    ref = shares(reference_counts)
    live = shares(live_counts)
    result: FloatArray = np.sum((live - ref) * np.log(live / ref), axis=-1)
    return result


def jensen_shannon(reference_counts: NDArray[Any], live_counts: NDArray[Any]) -> FloatArray:
    """Jensen-Shannon distance (natural log) per row, as ``scipy.spatial.distance.jensenshannon``.

    Shares are used as they are (no zero fill), as Evidently does for this test; padding
    bins are zero on both sides and add nothing.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    p = ref / np.maximum(ref.sum(axis=-1, keepdims=True), 1e-300)
    q = live / np.maximum(live.sum(axis=-1, keepdims=True), 1e-300)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    divergence = (left.sum(axis=-1) + right.sum(axis=-1)) / 2.0
    result: FloatArray = np.sqrt(np.maximum(divergence, 0.0))
    return result


def chi2_homogeneity(
    reference_counts: NDArray[Any], live_counts: NDArray[Any]
) -> tuple[FloatArray, FloatArray]:
    """Chi² test of homogeneity per row on the 2 x bins table, as ``chi2_contingency``.

    Bins empty on both sides are dropped (that is what makes the table valid for scipy);
    with one degree of freedom Yates' correction applies, as in scipy's default. Rows with
    fewer than two used bins get statistic 0 and p-value 1 (nothing to compare).
    Returns (statistic, p-value).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    column_totals = ref + live
    used = column_totals > 0
    ref_total = ref.sum(axis=-1, keepdims=True)
    live_total = live.sum(axis=-1, keepdims=True)
    grand = ref_total + live_total
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_ref = np.where(used, column_totals * ref_total / grand, 1.0)
        expected_live = np.where(used, column_totals * live_total / grand, 1.0)
    dof = used.sum(axis=-1) - 1
    yates = (dof == 1)[:, None] if ref.ndim == 2 else np.asarray(dof == 1)

    def term(observed: FloatArray, expected: FloatArray) -> FloatArray:
        diff = expected - observed
        corrected = observed + np.sign(diff) * np.minimum(0.5, np.abs(diff))
        observed = np.where(yates, corrected, observed)
        value: FloatArray = np.where(used, (observed - expected) ** 2 / expected, 0.0)
        return value

    from scipy import special

    statistic = term(ref, expected_ref).sum(axis=-1) + term(live, expected_live).sum(axis=-1)
    valid = (dof >= 1) & (ref_total[..., 0] > 0) & (live_total[..., 0] > 0)
    statistic = np.where(valid, statistic, 0.0)
    p_value = np.where(valid, special.chdtrc(np.maximum(dof, 1), statistic), 1.0)
    return np.asarray(statistic, dtype=np.float64), np.asarray(p_value, dtype=np.float64)


def ks_statistic(reference: FloatArray, live: FloatArray) -> float:
    """Two-sided Kolmogorov-Smirnov statistic, computed as ``scipy.stats.ks_2samp`` does."""
    ref_sorted = np.sort(reference)
    live_sorted = np.sort(live)
    both = np.concatenate([ref_sorted, live_sorted])
    cdf_ref = np.searchsorted(ref_sorted, both, side="right") / ref_sorted.size
    cdf_live = np.searchsorted(live_sorted, both, side="right") / live_sorted.size
    diffs = cdf_ref - cdf_live
    return float(max(np.clip(-diffs.min(), 0.0, 1.0), diffs.max()))


def ks_test(reference: FloatArray, live: FloatArray) -> tuple[float, float]:
    """(statistic, p-value) equal to ``scipy.stats.ks_2samp(reference, live)``.

    Large samples use Smirnov's asymptotic distribution directly (``kstwo``, as scipy's
    'asymp' mode); small ones defer to scipy's exact computation, which is cheap there.
    """
    from scipy import stats as scipy_stats

    if max(reference.size, live.size) <= KS_EXACT_MAX_N:
        result = scipy_stats.ks_2samp(reference, live)
        return float(result.statistic), float(result.pvalue)
    statistic = ks_statistic(reference, live)
    m, n = sorted([float(reference.size), float(live.size)], reverse=True)
    effective = np.round(m * n / (m + n))
    p_value = float(np.clip(scipy_stats.kstwo.sf(statistic, effective), 0.0, 1.0))
    return statistic, p_value


def wasserstein(reference: FloatArray, live: FloatArray) -> float:
    """First Wasserstein distance between two samples (``scipy.stats.wasserstein_distance``).

    The integral of |F_ref - F_live| over the merged sorted support.
    """
    ref_sorted = np.sort(reference)
    live_sorted = np.sort(live)
    both = np.sort(np.concatenate([ref_sorted, live_sorted]))
    deltas = np.diff(both)
    cdf_ref = np.searchsorted(ref_sorted, both[:-1], side="right") / ref_sorted.size
    cdf_live = np.searchsorted(live_sorted, both[:-1], side="right") / live_sorted.size
    return float(np.sum(np.abs(cdf_ref - cdf_live) * deltas))


def normalised_wasserstein(reference: FloatArray, live: FloatArray, reference_std: float) -> float:
    """Wasserstein distance divided by the reference std (floored at 0.001, as Evidently)."""
    return wasserstein(reference, live) / max(reference_std, 0.001)

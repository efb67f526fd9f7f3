"""Drift statistics agree with their references on the same data: scipy's ks_2samp (1e-9),
wasserstein_distance, jensenshannon and chi2_contingency, and a loop-per-bin PSI (1e-6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial import distance

from mlkube.runtime.drift import stats


@pytest.mark.parametrize(
    ("n_ref", "n_live", "shift"),
    [
        (300, 400, 0.0),
        (800, 5000, 0.2),
        (5000, 20_000, 0.05),
        (1000, 60_000, 0.1),
        (20_000, 20_000, 0.0),
    ],
)
def test_ks_matches_scipy_exact_and_asymptotic(n_ref: int, n_live: int, shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_live)
    reference = rng.normal(size=n_ref)
    live = rng.normal(shift, 1.0, n_live)
    expected = scipy_stats.ks_2samp(reference, live)
    statistic, p_value = stats.ks_test(reference, live)
    assert statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert p_value == pytest.approx(expected.pvalue, abs=1e-9)
    assert stats.ks_statistic(reference, live) == pytest.approx(expected.statistic, abs=1e-12)


def test_ks_statistic_handles_ties_like_scipy() -> None:
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 10, 30_000).astype(float)
    live = rng.integers(0, 11, 25_000).astype(float)
    expected = scipy_stats.ks_2samp(reference, live)
    assert stats.ks_test(reference, live) == pytest.approx(
        (expected.statistic, expected.pvalue), abs=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wasserstein_matches_scipy_with_the_same_normalisation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.lognormal(size=5000)
    live = rng.lognormal(0.3, 1.2, 17_000)
    std = float(reference.std())
    expected = scipy_stats.wasserstein_distance(reference, live)
    assert stats.wasserstein(reference, live) == pytest.approx(expected, rel=1e-12)
    assert stats.normalised_wasserstein(reference, live, std) == pytest.approx(
        expected / std, rel=1e-12
    )
    assert stats.normalised_wasserstein(reference, reference + 1.0, 0.0) == pytest.approx(1000.0)


def _counts(rng: np.random.Generator, features: int, bins: int) -> np.ndarray:
    return rng.integers(0, 500, size=(features, bins)).astype(float)


def test_psi_matches_a_loop_over_bins() -> None:
    rng = np.random.default_rng(4)
    reference, live = _counts(rng, 12, 20), _counts(rng, 12, 20)
    reference[0, 3] = 0
    live[1, 5] = 0
    scores = stats.psi(reference, live)
    for row in range(12):
        ref_share = reference[row] / reference[row].sum()
        live_share = live[row] / live[row].sum()
        total = 0.0
        for ref_value, live_value in zip(ref_share, live_share, strict=True):
            r = ref_value or 1e-4
            c = live_value or 1e-4
            total += (c - r) * math.log(c / r)
        assert scores[row] == pytest.approx(total, abs=1e-6)


def test_jensen_shannon_matches_scipy_and_ignores_padding() -> None:
    rng = np.random.default_rng(5)
    reference, live = _counts(rng, 10, 8), _counts(rng, 10, 8)
    reference[2, 1] = 0
    live[3, 4] = 0
    padded_ref = np.hstack([reference, np.zeros((10, 4))])
    padded_live = np.hstack([live, np.zeros((10, 4))])
    scores = stats.jensen_shannon(padded_ref, padded_live)
    for row in range(10):
        assert scores[row] == pytest.approx(
            distance.jensenshannon(reference[row], live[row]), abs=1e-12
        )


@pytest.mark.parametrize("bins", [2, 3, 7])
def test_chi2_matches_chi2_contingency_with_yates_on_one_dof(bins: int) -> None:
    rng = np.random.default_rng(bins)
    reference, live = _counts(rng, 9, bins), _counts(rng, 9, bins)
    reference[0, 0] = live[0, 0] = 0  # a bin empty on both sides is dropped
    padded_ref = np.hstack([reference, np.zeros((9, 2))])
    padded_live = np.hstack([live, np.zeros((9, 2))])
    statistic, p_value = stats.chi2_homogeneity(padded_ref, padded_live)
    for row in range(9):
        used = (reference[row] + live[row]) > 0
        if used.sum() < 2:
            assert (statistic[row], p_value[row]) == (0.0, 1.0)
            continue
        expected = scipy_stats.chi2_contingency(np.vstack([reference[row], live[row]])[:, used])
        assert statistic[row] == pytest.approx(expected.statistic, rel=1e-10)
        assert p_value[row] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_identical_distributions_score_as_no_drift() -> None:
    counts = np.array([[10.0, 20.0, 30.0]])
    assert stats.psi(counts, counts * 3)[0] == pytest.approx(0.0, abs=1e-12)
    assert stats.jensen_shannon(counts, counts * 3)[0] == pytest.approx(0.0, abs=1e-7)
    assert stats.chi2_homogeneity(counts, counts * 3)[1][0] == pytest.approx(1.0)

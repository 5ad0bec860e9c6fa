"""The graded exceedance test: several nested quantile levels in one e-process."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from coalmine.analysis.judge import sequential as seq
from coalmine.analysis.judge.metrics import DISTRIBUTION_LEVELS


def _factor(grade: int, canary: bool, s: float, rho: np.ndarray) -> float:
    """Likelihood-ratio factor of one request (grade 0 carries none)."""
    if grade == 0:
        return 1.0
    q = float(seq.share_prob(rho[grade - 1], s))
    return q / s if canary else (1 - q) / (1 - s)


def test_one_grade_is_the_conditional_test() -> None:
    rng = np.random.default_rng(3)
    k = rng.integers(0, 6, 40).astype(float)
    x = rng.binomial(k.astype(int), 0.2).astype(float)
    share = rng.uniform(0.05, 0.3, 40)
    mult = [1.5, 2.0, 5.0]
    graded = seq.graded_log_e(x[None], k[None], share, np.log(mult)[:, None])
    plain = seq.conditional_log_e(x, k, share, 1.0, mult)
    assert np.allclose(graded, plain)


def test_two_grades_by_hand() -> None:
    # One step, share 0.25: a canary request of grade 1 and a baseline request of grade 2.
    rho = np.array([2.0, 4.0])
    s = 0.25
    got = seq.graded_log_e([[1], [0]], [[1], [1]], [s], np.log(rho)[None, :])
    q1, q2 = 2 * s / (2 * s + 1 - s), 4 * s / (4 * s + 1 - s)
    want = math.log(q1 / s) + math.log((1 - q2) / (1 - s))
    assert got[-1] == pytest.approx(want)


def test_rejects_alternatives_that_are_not_monotone() -> None:
    with pytest.raises(ValueError, match="nondecreasing"):
        seq.graded_log_e([[0], [1]], [[1], [1]], [0.5], [[0.5, 0.2]])
    with pytest.raises(ValueError, match="nondecreasing"):
        seq.graded_log_e([[0], [1]], [[1], [1]], [0.5], [[-0.1, 0.2]])


def test_expected_factor_closed_form_and_null_bound() -> None:
    """E[factor] = 1 + sum_l (q_l - q_{l-1})(A_l - B_l), <= 1 whenever A_l <= B_l."""
    rng = np.random.default_rng(11)
    levels = 5
    for _ in range(500):
        s = float(rng.uniform(0.02, 0.6))
        b = rng.dirichlet(np.ones(levels + 1))
        # a canary distribution whose tails never exceed the baseline's: move mass down
        a = b.copy()
        for g in range(levels, 0, -1):
            move = a[g] * rng.uniform(0, 1)
            a[g] -= move
            a[rng.integers(0, g)] += move
        tails_a, tails_b = np.cumsum(a[::-1])[::-1][1:], np.cumsum(b[::-1])[::-1][1:]
        assert np.all(tails_a <= tails_b + 1e-12)
        rho = np.exp(np.cumsum(rng.exponential(0.7, levels)))
        expected = sum(
            s * a[g] * _factor(g, True, s, rho) + (1 - s) * b[g] * _factor(g, False, s, rho)
            for g in range(levels + 1)
        )
        q = np.concatenate([[s], seq.share_prob(rho, s)])
        closed = 1 + float(np.sum(np.diff(q) * (tails_a - tails_b)))
        assert expected == pytest.approx(closed, abs=1e-12)
        assert expected <= 1 + 1e-12


def test_exchangeable_labels_inside_a_bucket_do_not_inflate() -> None:
    """With the bucket's own share, every way to label n_c of n requests as the canary's is
    equally likely under identical versions; the average product of factors is <= 1."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(2, 9))
        n_c = int(rng.integers(1, n))
        s = n_c / n
        grades = rng.integers(0, 4, n)
        rho = np.exp(np.cumsum(rng.exponential(0.8, 3)))
        total = 0.0
        subsets = list(itertools.combinations(range(n), n_c))
        for chosen in subsets:
            total += math.prod(_factor(int(g), i in chosen, s, rho) for i, g in enumerate(grades))
        assert total / len(subsets) <= 1 + 1e-9


def _graded_counts(
    rng: np.random.Generator, steps: int, a: np.ndarray, b: np.ndarray, share: float, rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step canary and total counts of grades 1..L, and the realised share."""
    nc = rng.poisson(rate * share, steps)
    nb = rng.poisson(rate * (1 - share), steps)
    gc = np.array([rng.multinomial(m, a) for m in nc]).T[1:]
    gb = np.array([rng.multinomial(m, b) for m in nb]).T[1:]
    tot = nc + nb
    s = np.where(tot > 0, nc / np.maximum(tot, 1), 0.0)
    return gc.astype(float), (gc + gb).astype(float), s


def _grade_probs(scale: float, tol: float = 1.2) -> np.ndarray:
    """Grade probabilities of lognormal latency (sigma 0.57) times ``scale`` against the
    baseline's p50..p99 thresholds times ``tol``."""
    from scipy.stats import norm

    z = norm.ppf(DISTRIBUTION_LEVELS)
    tails = norm.sf(z - math.log(scale / tol) / 0.57)
    return -np.diff(np.concatenate([[1.0], tails, [0.0]]))


def test_a_a_simulation_stays_below_alpha() -> None:
    rng = np.random.default_rng(2024)
    log_rho, w = seq.graded_prior(len(DISTRIBUTION_LEVELS))
    alpha = 0.1
    b = _grade_probs(1.0, tol=1.0)
    a = _grade_probs(1.0, tol=1.0)
    runs, crossed = 300, 0
    for _ in range(runs):
        x, k, s = _graded_counts(rng, 120, a, b, 0.1, 40.0)
        crossed += bool(seq.graded_log_e(x, k, s, log_rho, w).max() >= math.log(1 / alpha))
    # Ville: at most alpha; the mixture is conservative, so far fewer in practice.
    assert crossed / runs <= alpha


def test_combining_levels_detects_a_broad_slowdown_sooner_than_bonferroni() -> None:
    """Canary latency x1.5 against tolerance 1.2: one graded test at alpha beats the best of
    five single-level tests at alpha/5 (the previous split), run by run in the median."""
    rng = np.random.default_rng(8)
    levels = len(DISTRIBUTION_LEVELS)
    log_rho, w = seq.graded_prior(levels)
    alpha = 0.002
    b = _grade_probs(1.0, tol=1.0)
    a = _grade_probs(1.5, tol=1.2)
    graded_t, split_t = [], []
    for _ in range(20):
        x, k, s = _graded_counts(rng, 900, a, b, 0.1, 50.0)
        g = seq.graded_log_e(x, k, s, log_rho, w)
        hit = np.flatnonzero(g >= math.log(1 / alpha))
        graded_t.append(int(hit[0]) if hit.size else 900)
        best = 900
        for lv in range(levels):
            le = seq.conditional_log_e(
                x[lv:].sum(0), k[lv:].sum(0), s, 1.0, list(seq.DEFAULT_MULTIPLIERS)
            )
            hit = np.flatnonzero(le >= math.log(levels / alpha))
            best = min(best, int(hit[0]) if hit.size else 900)
        split_t.append(best)
    assert np.median(split_t) < 900  # both detect within the window
    assert np.median(graded_t) < 0.85 * np.median(split_t)

"""The sequential tests against closed forms, Ville's bound, scipy, and their properties."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from coalmine.analysis.judge import JudgeData, JudgeMetric, JudgeSpec, Request, Sample, judge
from coalmine.analysis.judge import sequential as seq

# --------------------------------------------------------------- closed forms


def test_conditional_mixture_equals_hand_computation() -> None:
    # Two steps: 1 event (the canary's) at share 0.2, then 2 baseline events at share 0.5.
    # rho=2: pi(0.2)=1/3, pi(0.5)=2/3; rho=4: pi(0.2)=1/2, pi(0.5)=4/5; null pi = share.
    log_e = seq.conditional_log_e([1, 0], [1, 2], [0.2, 0.5], 1.0, [2.0, 4.0], [0.5, 0.5])
    e1 = 0.5 * (1 / 3) / 0.2 + 0.5 * 0.5 / 0.2
    e2 = 0.5 * (1 / 3) / 0.2 * ((1 / 3) / 0.5) ** 2 + 0.5 * 0.5 / 0.2 * (0.2 / 0.5) ** 2
    assert np.allclose(np.exp(log_e), [e1, e2])
    assert math.isclose(e1, 25 / 12)


def test_conditional_test_with_tolerance_uses_pi_at_tau() -> None:
    # rho0 = 2 at share 0.5: pi0 = 2/3; alternative 6: pi1 = 6/7. One canary event.
    log_e = seq.conditional_log_e([1], [1], [0.5], 2.0, [6.0])
    assert math.isclose(float(np.exp(log_e[0])), (6 / 7) / (2 / 3))


def test_share_zero_or_one_carries_no_evidence() -> None:
    log_e = seq.conditional_log_e([0, 3], [5, 3], [0.0, 1.0], 1.0, [2.0, 10.0])
    assert np.allclose(log_e, 0.0)


def test_bernoulli_mixture_equals_hand_computation() -> None:
    # p0 = 0.1, odds x3 -> p1 = 0.25: LR of a success 2.5, of a failure 0.75/0.9.
    log_e = seq.bernoulli_log_e([1, 1, 0], [1, 1, 1], 0.1, multipliers=(3.0,))
    assert np.allclose(np.exp(log_e), [2.5, 6.25, 6.25 * 0.75 / 0.9])
    # Batched counts give the same product.
    batched = seq.bernoulli_log_e([2, 0], [2, 1], 0.1, multipliers=(3.0,))
    assert math.isclose(float(batched[-1]), float(log_e[-1]))


def test_betting_equals_hand_computation() -> None:
    log_e = seq.betting_log_e([0.5, -0.5], bets=(0.2, 0.4))
    expected = 0.5 * (1.1 * 0.9) + 0.5 * (1.2 * 0.8)
    assert math.isclose(float(np.exp(log_e[-1])), expected)


# --------------------------------------------------------------- Ville's inequality


def test_ville_bound_for_null_bernoulli_streams() -> None:
    # 2,000 null streams (p = p0) of 2,000 draws, looked at after every draw.
    rng = np.random.default_rng(0)
    alpha, p0 = 0.05, 0.05
    x = (rng.random((2000, 2000)) < p0).astype(float)
    crossed = 0
    for row in x:
        log_e = seq.bernoulli_log_e(row, np.ones_like(row), p0)
        crossed += bool(log_e.max() >= math.log(1 / alpha))
    rate = crossed / 2000
    # Binomial(2000, 0.05) sd is 0.005; 3 sd of margin.
    assert rate <= alpha + 0.015, rate


def test_ville_bound_for_conditional_test_with_varying_share() -> None:
    rng = np.random.default_rng(1)
    alpha = 0.05
    crossed = 0
    for _ in range(2000):
        share = rng.uniform(0.02, 0.5, 300)
        k = rng.poisson(2.0, 300)
        x = rng.binomial(k, share)  # null: rho = 1
        log_e = seq.conditional_log_e(x, k, share, 1.0, [m for m in seq.DEFAULT_MULTIPLIERS])
        crossed += bool(log_e.max() >= math.log(1 / alpha))
    assert crossed / 2000 <= alpha + 0.015


def test_cap_windows_hand_computation() -> None:
    # Window 0: running sums 1, 2, 3 capped at 1.5; window 1 restarts: -1, 1; window 2: 2, 2.5
    # capped at 1.5. Completed windows carry their capped totals.
    c = np.array([[1.0, 1.0, 1.0, -1.0, 2.0, 2.0, 0.5]])
    out = seq.cap_windows(c, np.array([0, 0, 0, 1, 1, 2, 2]), 1.5)
    assert np.allclose(out, [[1.0, 1.5, 1.5, 0.5, 2.5, 4.0, 4.0]])
    # A cap no window reaches changes nothing.
    assert np.allclose(seq.cap_windows(c, np.arange(7), 10.0), np.cumsum(c, axis=1))


def test_capped_conditional_test_keeps_ville_bound_and_never_exceeds_uncapped_windows() -> None:
    rng = np.random.default_rng(11)
    alpha = 0.05
    crossed = 0
    window = np.arange(300) // 20
    for _ in range(1000):
        share = rng.uniform(0.05, 0.5, 300)
        k = rng.poisson(3.0, 300)
        x = rng.binomial(k, share)  # null: rho = 1
        alts = list(seq.DEFAULT_MULTIPLIERS)
        capped = seq.conditional_log_e(x, k, share, 1.0, alts, None, window, 3.0)
        crossed += bool(capped.max() >= math.log(1 / alpha))
    assert crossed / 1000 <= alpha + 0.02
    # Within one window the capped statistic is the uncapped one, clipped.
    x, k, share = [2, 3, 1], [2, 3, 1], [0.1, 0.1, 0.1]
    free = seq.conditional_log_e(x, k, share, 1.0, [10.0])
    capped = seq.conditional_log_e(x, k, share, 1.0, [10.0], None, [0, 0, 0], 3.0)
    assert np.allclose(capped, np.minimum(free, 3.0))


def test_focused_prior_is_a_distribution_with_most_mass_near_the_tolerance() -> None:
    m = np.asarray(seq.FOCUSED_MULTIPLIERS)
    w = np.asarray(seq.FOCUSED_WEIGHTS)
    assert m.shape == w.shape and np.all(m > 1.0) and np.all(np.diff(m) >= 0)
    assert math.isclose(float(w.sum()), 1.0) and np.all(w > 0)
    assert w[m <= 3.0].sum() > 0.75 and set(seq.DEFAULT_MULTIPLIERS) <= set(m.tolist())


def test_inside_the_null_is_even_safer() -> None:
    # True rho = 0.5 with tolerance 1: crossing must be rarer still.
    rng = np.random.default_rng(2)
    crossed = 0
    for _ in range(500):
        share = np.full(300, 0.1)
        k = rng.poisson(2.0, 300)
        x = rng.binomial(k, seq.share_prob(0.5, share))
        crossed += bool(seq.conditional_log_e(x, k, share, 1.0, [2.0, 5.0]).max() >= math.log(20))
    assert crossed / 500 <= 0.01


def test_quantile_upper_bound_covers_anytime() -> None:
    rng = np.random.default_rng(3)
    alpha, q = 0.05, 0.9
    true_q = -math.log(1 - q)  # exponential(1)
    ns = np.array([20, 40, 80, 160, 320, 640, 1280])
    ranks = seq.quantile_ucb_rank(ns, q, alpha)
    misses = 0
    for _ in range(1000):
        y = rng.exponential(size=int(ns[-1]))
        for n, r in zip(ns, ranks, strict=True):
            if r > 0 and np.sort(y[:n])[n - r] < true_q:
                misses += 1
                break
    assert misses / 1000 <= alpha + 0.02
    assert ranks[0] == 0 or ranks[0] < 20  # n=20 may have no bound at all
    assert ranks[-1] > 0


def test_bernoulli_upper_bound_covers_anytime() -> None:
    rng = np.random.default_rng(4)
    alpha, p = 0.05, 0.02
    misses = 0
    for _ in range(1000):
        s = np.cumsum(rng.random(3000) < p)
        n = np.arange(1, 3001)
        misses += bool(np.any(seq.bernoulli_ucb(s[::50], n[::50], alpha) < p))
    assert misses / 1000 <= alpha + 0.02


# --------------------------------------------------------------- against scipy


def _first_rejection(n: int, p0: float, alpha: float) -> tuple[int, int]:
    """Smallest success count at which binomtest / the e-value rejects, at a single look."""
    x_b = next(x for x in range(n + 1) if binomtest(x, n, p0, "greater").pvalue <= alpha)
    x_e = next(
        x for x in range(n + 1) if seq.bernoulli_log_e([x], [n], p0)[-1] >= math.log(1 / alpha)
    )
    return x_b, x_e


def test_single_look_e_value_is_more_conservative_than_binomtest() -> None:
    for n, p0 in ((500, 0.01), (2000, 0.05), (200, 0.2)):
        x_b, x_e = _first_rejection(n, p0, 0.01)
        assert x_e >= x_b, (n, p0, x_b, x_e)
    # ... but not absurdly so: within a factor 1.6 of the excess over the mean.
    x_b, x_e = _first_rejection(2000, 0.05, 0.01)
    assert (x_e - 100) <= 1.6 * (x_b - 100)


def test_repeated_fixed_tests_inflate_but_the_e_process_does_not() -> None:
    rng = np.random.default_rng(5)
    alpha, p0 = 0.05, 0.1
    looks = np.arange(20, 1001, 20)
    fixed = eproc = 0
    runs = 400
    # Critical counts of the one-sided binomial test at each look (exact, from scipy).
    crit = np.array(
        [
            next(x for x in range(n + 1) if binomtest(x, n, p0, "greater").pvalue <= alpha)
            for n in looks
        ]
    )
    for _ in range(runs):
        draws = rng.random(1000) < p0
        cum = np.cumsum(draws)[looks - 1]
        fixed += bool(np.any(cum >= crit))
        eproc += bool(
            seq.bernoulli_log_e(draws.astype(float), np.ones(1000), p0).max() >= math.log(1 / alpha)
        )
    assert fixed / runs > 2 * alpha  # Kayenta-style re-testing: inflated
    assert eproc / runs <= alpha + 0.02


# --------------------------------------------------------------- properties (via judge)


def _ratio_data(flags: list[tuple[bool, bool]], t_step: float = 0.05) -> JudgeData:
    return JudgeData(
        requests=tuple(
            Request(i * t_step, "canary" if c else "baseline", 10.0, 500 if e else 200)
            for i, (c, e) in enumerate(flags)
        )
    )


RATIO = JudgeSpec(metrics=(JudgeMetric("errors", "ratio", min_samples=1),))
flags_strategy = st.lists(
    st.tuples(st.booleans(), st.booleans().map(lambda b: b and True)), min_size=2, max_size=200
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(flags=flags_strategy, which=st.integers(min_value=0))
def test_more_canary_errors_never_decrease_the_e_value(
    flags: list[tuple[bool, bool]], which: int
) -> None:
    ok_canary = [i for i, (c, e) in enumerate(flags) if c and not e]
    if not ok_canary or not any(not c for c, _ in flags):
        return
    before = judge(RATIO, _ratio_data(flags)).metrics[0]
    j = ok_canary[which % len(ok_canary)]
    worse = list(flags)
    worse[j] = (True, True)
    after = judge(RATIO, _ratio_data(worse)).metrics[0]
    assert before.value is not None and after.value is not None
    assert after.value >= before.value * (1 - 1e-12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(flags=flags_strategy, tol=st.sampled_from([None, 1.5, 3.0]))
def test_swapping_roles_with_worse_lower_mirrors_the_ratio_verdict(
    flags: list[tuple[bool, bool]], tol: float | None
) -> None:
    spec_hi = JudgeSpec(
        metrics=(JudgeMetric("errors", "ratio", min_samples=1, relative_tolerance=tol),)
    )
    spec_lo = JudgeSpec(
        metrics=(
            JudgeMetric("errors", "ratio", min_samples=1, relative_tolerance=tol, worse="lower"),
        )
    )
    a = judge(spec_hi, _ratio_data(flags)).metrics[0]
    b = judge(spec_lo, _ratio_data([(not c, e) for c, e in flags])).metrics[0]
    assert a.verdict == b.verdict
    if a.value is not None and b.value is not None:
        assert math.isclose(a.value, b.value, rel_tol=1e-9)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    shift=st.sampled_from([0.0, 0.5, 3.0, 8.0]),
    tol=st.sampled_from([0.0, 1.0]),
)
def test_swapping_roles_with_worse_lower_mirrors_the_gauge_verdict(
    seed: int, shift: float, tol: float
) -> None:
    rng = np.random.default_rng(seed)
    ts = np.arange(0.0, 300.0, 1.0)
    c = 50 + shift + rng.normal(0, 2, ts.size)
    b = 50 + rng.normal(0, 2, ts.size)

    def data(canary: np.ndarray, baseline: np.ndarray) -> JudgeData:
        return JudgeData(
            samples=tuple(
                Sample(float(t), "canary", "cpu", float(v)) for t, v in zip(ts, canary, strict=True)
            )
            + tuple(
                Sample(float(t), "baseline", "cpu", float(v))
                for t, v in zip(ts, baseline, strict=True)
            )
        )

    def spec(worse: str) -> JudgeSpec:
        m = JudgeMetric("cpu", "gauge", worse=worse, absolute_tolerance=tol)  # type: ignore[arg-type]
        return JudgeSpec(metrics=(m,))

    a = judge(spec("higher"), data(c, b)).metrics[0]
    m = judge(spec("lower"), data(b, c)).metrics[0]
    assert a.verdict == m.verdict
    assert a.value is not None and m.value is not None
    assert math.isclose(a.value, m.value, rel_tol=1e-9)
    if shift >= 3.0:
        assert a.verdict == "fail"


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), rho=st.sampled_from([1.0, 8.0]))
def test_duplicating_the_baseline_does_not_change_the_conditional_verdict(
    seed: int, rho: float
) -> None:
    rng = np.random.default_rng(seed)
    n = 6000
    t = np.sort(rng.uniform(0, 300, n))
    can = rng.random(n) < 0.1
    err = rng.random(n) < np.where(can, 0.01 * rho, 0.01)
    reqs = [
        Request(float(a), "canary" if c else "baseline", 10.0, 500 if e else 200)
        for a, c, e in zip(t, can, err, strict=True)
    ]
    doubled = reqs + [
        Request(r.t + 1e-6, r.version, r.latency_ms, r.status)
        for r in reqs
        if r.version != "canary"
    ]
    spec = JudgeSpec(metrics=(JudgeMetric("errors", "ratio"),))
    a = judge(spec, JudgeData(tuple(reqs))).metrics[0]
    b = judge(spec, JudgeData(tuple(doubled))).metrics[0]
    assert a.verdict == b.verdict
    assert a.value is not None and b.value is not None
    # The evidence barely moves: within a factor e^3 (tiny next to the 1/alpha = 100 scale
    # that separates "fail" from "continue" only when the effect is borderline).
    if rho == 1.0:
        assert abs(math.log(a.value) - math.log(b.value)) <= 3.0

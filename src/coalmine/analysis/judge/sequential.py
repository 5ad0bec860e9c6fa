"""Anytime-valid sequential tests: e-processes, mixture likelihood ratios, confidence sequences.

Every test here produces the *running log e-value* of a nonnegative supermartingale under its
null hypothesis, one value per step (a step is a time bucket or a batch). By Ville's inequality,
``P(sup_t E_t >= 1/alpha) <= alpha`` under the null, so the test may be looked at after every
step — or at any data-dependent time — without inflating its error probability.

Conventions: arrays are numpy float arrays indexed by step; "log" is the natural logarithm;
weights of a mixture are nonnegative and sum to one (they are normalised here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln

FloatArray = NDArray[np.float64]

#: Multipliers of the tolerated effect that make up the mixture's alternatives.
DEFAULT_MULTIPLIERS: tuple[float, ...] = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)
#: Bet sizes (fractions of the largest admissible bet) of the betting e-processes.
DEFAULT_BETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)


def focused_prior(
    share: float = 0.8, step: float = 0.15, lowest: float = 1.1, decay: float = 2.0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Multipliers and weights of a mixture that puts most of its mass on effects just beyond
    the tolerance.

    ``share`` of the mass lies on a geometric grid from ``lowest`` to 100 (``step`` apart on the
    log scale) with weights proportional to ``m**-decay``; the rest is spread evenly over
    :data:`DEFAULT_MULTIPLIERS`, so gross regressions keep a sizeable weight. A mixture pays
    ``log(1/weight)`` once: for a large effect the evidence grows so fast that this costs
    seconds, for an effect near the tolerance it decides whether the run is long enough.
    """
    grid = np.exp(np.arange(np.log(lowest), np.log(100.0) + 1e-9, step))
    w_grid = grid**-decay
    w_grid = share * w_grid / w_grid.sum()
    base = np.asarray(DEFAULT_MULTIPLIERS, dtype=float)
    w_base = np.full(base.size, (1.0 - share) / base.size)
    mult = np.concatenate([grid, base])
    weights = np.concatenate([w_grid, w_base])
    order = np.argsort(mult, kind="stable")
    return (
        tuple(float(round(m, 6)) for m in mult[order]),
        tuple(float(w) for w in weights[order]),
    )


#: Prior of the share-aware rate-ratio test of error ratios (see :func:`focused_prior`).
FOCUSED_MULTIPLIERS, FOCUSED_WEIGHTS = focused_prior()


def logsumexp(a: FloatArray, axis: int = 0) -> FloatArray:
    """log(sum(exp(a))) along ``axis``, stable (a lean replacement for scipy's)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.asarray(np.squeeze(out, axis=axis), dtype=float)


def _log_weights(k: int, weights: Sequence[float] | None) -> FloatArray:
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (k,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be nonnegative, one per alternative, not all zero")
    with np.errstate(divide="ignore"):
        return np.log(w / w.sum())


def share_prob(rho: ArrayLike, share: ArrayLike) -> FloatArray:
    """Probability that an event is the canary's, given the canary's traffic share ``share``
    and the ratio ``rho`` of the canary's event rate to the baseline's:
    ``pi = rho*s / (rho*s + 1 - s)``."""
    r = np.asarray(rho, dtype=float)
    s = np.asarray(share, dtype=float)
    num = r * s
    den = num + (1.0 - s)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.asarray(out, dtype=float)


def conditional_log_e(
    x: ArrayLike,
    k: ArrayLike,
    share: ArrayLike,
    rho0: float,
    alternatives: Sequence[float],
    weights: Sequence[float] | None = None,
    window: ArrayLike | None = None,
    log_cap: float | ArrayLike | None = None,
) -> FloatArray:
    """Running log e-value of the share-aware conditional test, per step.

    In step ``i`` there were ``k[i]`` events (errors, threshold exceedances) of which ``x[i]``
    were the canary's, and the canary had share ``share[i]`` of the requests. Each event is the
    canary's with probability ``pi(rho) = share_prob(rho, share)``. The statistic is the
    mixture over ``alternatives`` (values of rho) of the likelihood ratios against ``rho0``::

        E_t = sum_j w_j prod_{i<=t} (pi_j/pi_0)^x_i ((1-pi_j)/(1-pi_0))^(k_i-x_i)

    With every alternative above ``rho0`` this is a supermartingale whenever the true ratio is
    at most ``rho0`` (test of "rho <= rho0"); with every alternative below ``rho0`` whenever the
    true ratio is at least ``rho0`` (test of "rho >= rho0"). Steps with share 0 or 1 carry no
    information and contribute a factor of one.

    **Evidence cap.** With ``window`` (a nondecreasing window index per step) and ``log_cap``,
    each alternative's likelihood ratio is accumulated window by window, and inside a window
    it is replaced by ``min(LR so far in the window, exp(log_cap))``. ``min(M, c)`` of a
    nonnegative supermartingale ``M`` is again one (a nondecreasing concave function, Jensen),
    and every window starts again from ``min(1, c) = 1``, so the capped product is still a
    supermartingale under the null: the guarantee is unchanged. What changes is that no single
    window can contribute more than ``exp(log_cap)``, so a crossing needs evidence that
    persists over several windows (see :func:`cap_windows`).
    """
    xs = np.asarray(x, dtype=float)
    ks = np.asarray(k, dtype=float)
    s = np.asarray(share, dtype=float)
    alts = np.asarray(alternatives, dtype=float)[:, None]
    logw = _log_weights(alts.shape[0], weights)
    if xs.size == 0:
        return np.zeros(0)
    valid = (s > 0.0) & (s < 1.0) & (ks > 0)
    s_safe = np.where(valid, s, 0.5)
    p0 = share_prob(rho0, s_safe)[None, :]
    p1 = share_prob(alts, s_safe[None, :])
    contrib = xs * (np.log(p1) - np.log(p0)) + (ks - xs) * (np.log1p(-p1) - np.log1p(-p0))
    contrib = np.where(valid[None, :], contrib, 0.0)
    if window is None or log_cap is None:
        cum = np.cumsum(contrib, axis=1)
    else:
        cum = cap_windows(contrib, np.asarray(window), log_cap)
    return np.asarray(logsumexp(cum + logw[:, None], axis=0), dtype=float)


def graded_prior(
    levels: int,
) -> tuple[FloatArray, FloatArray]:
    """Alternatives and weights of the graded exceedance test (:func:`graded_log_e`).

    A request's *grade* is the number of tested quantile levels it exceeds (1..``levels``;
    grade 0 carries no evidence). An alternative gives every grade g a log rate ratio
    ``theta * h_g`` with a nondecreasing *shape* h (``h_levels = 1``):

    - ramps from each level l but the last: ``h_g ∝ max(0, g - l + 1)``, the pattern of a
      slowdown of the whole distribution, whose rate ratios grow towards the tail;
    - the top level alone (``h = 1`` only at the highest grade): a tail-only regression.

    The shapes share the mass equally; the top multiplier ``exp(theta)`` follows
    :func:`focused_prior`. Returns ``log_rho`` (components × grades) and the weights.
    """
    if levels < 1:
        raise ValueError("levels must be >= 1")
    g = np.arange(1, levels + 1, dtype=float)
    shapes = [np.maximum(0.0, g - lvl + 1.0) / (levels - lvl + 1.0) for lvl in range(1, levels)]
    shapes.append((g == levels).astype(float))
    mult, w_mult = focused_prior()
    log_m = np.log(np.asarray(mult))
    log_rho = np.concatenate([np.outer(log_m, h) for h in shapes])
    weights = np.concatenate([np.asarray(w_mult) / len(shapes)] * len(shapes))
    return log_rho, weights / weights.sum()


def graded_log_e(
    x: ArrayLike,
    k: ArrayLike,
    share: ArrayLike,
    log_rho: ArrayLike,
    weights: Sequence[float] | None = None,
    window: ArrayLike | None = None,
    log_cap: float | ArrayLike | None = None,
) -> FloatArray:
    """Running log e-value of the graded exceedance test, per step: one test for several
    nested exceedance events at once (a request of grade g exceeded levels 1..g).

    ``x[g, i]``/``k[g, i]``: canary/all requests of grade ``g + 1`` in step ``i``;
    ``log_rho[j, g]``: alternative j's log rate ratio at grade ``g + 1``, which must be
    >= 0 and nondecreasing in g. Each request of grade g is the canary's with probability
    ``pi(rho_g) = share_prob(rho_g, s)`` under alternative j and ``s`` under the null, so

        E_t = sum_j w_j prod_{i<=t} prod_g (pi_jg/s)^x_gi ((1-pi_jg)/(1-s))^(k_gi-x_gi)

    **Validity.** A request is the canary's with probability s; its grade then has
    distribution a (canary) or b (baseline). With ``q_g = pi(rho_g)`` and ``q_0 = s`` (grade 0
    has factor one), its expected factor is ``sum_g s a_g q_g/s + (1-s) b_g (1-q_g)/(1-s) =
    1 + sum_g (a_g - b_g) q_g``, and by summation by parts
    ``= 1 + sum_l (q_l - q_{l-1}) (A_l - B_l)`` with ``A_l, B_l = P(grade >= l)``. The
    increments are >= 0 (rho nondecreasing), and the null "the canary exceeds each level no
    more often than the baseline" is ``A_l <= B_l`` for every l: every factor has mean <= 1,
    a supermartingale, whatever the two distributions do between the levels. With one grade
    this is
    :func:`conditional_log_e` with ``rho0 = 1``. ``window``/``log_cap`` cap each alternative's
    evidence per window as there.
    """
    xs = np.atleast_2d(np.asarray(x, dtype=float))
    ks = np.atleast_2d(np.asarray(k, dtype=float))
    s = np.asarray(share, dtype=float)
    lr = np.atleast_2d(np.asarray(log_rho, dtype=float))
    if xs.shape != ks.shape or xs.shape[1] != s.size or lr.shape[1] != xs.shape[0]:
        raise ValueError("x and k must be grades × steps, log_rho components × grades")
    if np.any(lr < 0) or np.any(np.diff(lr, axis=1) < 0):
        raise ValueError("log_rho must be >= 0 and nondecreasing across grades")
    logw = _log_weights(lr.shape[0], weights)
    if s.size == 0:
        return np.zeros(0)
    valid = (s > 0.0) & (s < 1.0) & (ks.sum(axis=0) > 0)
    s_safe = np.where(valid, s, 0.5)
    p1 = share_prob(np.exp(lr)[:, :, None], s_safe[None, None, :])  # components × grades × steps
    a = np.log(p1) - np.log(s_safe)
    b = np.log1p(-p1) - np.log1p(-s_safe)
    contrib = np.einsum("gi,jgi->ji", xs, a) + np.einsum("gi,jgi->ji", ks - xs, b)
    contrib = np.where(valid[None, :], contrib, 0.0)
    if window is None or log_cap is None:
        cum = np.cumsum(contrib, axis=1)
    else:
        cum = cap_windows(contrib, np.asarray(window), log_cap)
    return np.asarray(logsumexp(cum + logw[:, None], axis=0), dtype=float)


def cap_windows(
    contrib: FloatArray, window: NDArray[np.int64], log_cap: float | ArrayLike
) -> FloatArray:
    """Cumulative sums of log factors (rows: alternatives, columns: steps) where, inside each
    window, the running sum since the window's start is capped at ``log_cap`` (>= 0) and each
    window adds its capped total to the following ones.

    ``log_cap`` is one cap for every window or one per window index (``log_cap[w]`` for
    window ``w``). A per-window cap keeps the guarantee when it is *predictable*: fixed from
    data before the window starts (``min(M, c)`` with ``c`` known in advance is still a
    supermartingale)."""
    caps = np.asarray(log_cap, dtype=float)
    if np.any(caps < 0) or np.any(np.isnan(caps)):
        raise ValueError("log_cap must be >= 0")
    n = contrib.shape[1]
    if n == 0:
        return np.zeros_like(contrib)
    w = np.asarray(window).reshape(-1)
    if w.shape != (n,) or np.any(np.diff(w) < 0):
        raise ValueError("window must give one nondecreasing index per step")
    if caps.ndim == 1 and (w.min() < 0 or w.max() >= caps.size):
        raise ValueError("log_cap must give one cap per window index")
    step_cap = caps if caps.ndim == 0 else caps[w]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(w)) + 1])
    ends = np.concatenate([starts[1:] - 1, [n - 1]])
    seg = np.repeat(np.arange(starts.size), np.diff(np.concatenate([starts, [n]])))
    cum = np.cumsum(contrib, axis=1)
    before = np.concatenate([np.zeros((contrib.shape[0], 1)), cum[:, :-1]], axis=1)
    within = np.minimum(cum - before[:, starts][:, seg], step_cap)
    done = np.cumsum(within[:, ends], axis=1)
    carried = np.concatenate([np.zeros((contrib.shape[0], 1)), done[:, :-1]], axis=1)
    return np.asarray(carried[:, seg] + within, dtype=float)


def conditional_log_e_final(
    x: ArrayLike,
    k: ArrayLike,
    share: ArrayLike,
    rho0: ArrayLike,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    greater: bool = True,
) -> FloatArray:
    """Final log e-value of :func:`conditional_log_e` for many null values ``rho0`` at once
    (alternatives ``rho0 * m`` if ``greater`` else ``rho0 / m``, uniform weights). Used to
    invert the test into a confidence set for rho."""
    xs = np.asarray(x, dtype=float)
    ks = np.asarray(k, dtype=float)
    s = np.asarray(share, dtype=float)
    valid = (s > 0.0) & (s < 1.0) & (ks > 0)
    xs, ks, s = xs[valid], ks[valid], s[valid]
    r0 = np.asarray(rho0, dtype=float)[:, None, None]
    m = np.asarray(multipliers, dtype=float)[None, :, None]
    r1 = r0 * m if greater else r0 / m
    p0 = share_prob(r0, s[None, None, :])
    p1 = share_prob(r1, s[None, None, :])
    contrib = xs * (np.log(p1) - np.log(p0)) + (ks - xs) * (np.log1p(-p1) - np.log1p(-p0))
    tot = contrib.sum(axis=2)
    logw = _log_weights(len(multipliers), None)[None, :]
    return logsumexp(tot + logw, axis=1)


def odds_alternatives(p0: ArrayLike, multipliers: Sequence[float], greater: bool) -> FloatArray:
    """Alternatives to a Bernoulli probability ``p0`` obtained by multiplying (``greater``) or
    dividing its odds by each multiplier; shape ``(len(multipliers),) + p0.shape``."""
    p = np.asarray(p0, dtype=float)
    m = np.asarray(multipliers, dtype=float).reshape((-1,) + (1,) * p.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = p / (1.0 - p)
        odds1 = odds * m if greater else odds / m
        return np.asarray(odds1 / (1.0 + odds1), dtype=float)


def bernoulli_log_e(
    x: ArrayLike,
    n: ArrayLike,
    p0: ArrayLike,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    weights: Sequence[float] | None = None,
    greater: bool = True,
) -> FloatArray:
    """Running log e-value of the one-sample mixture SPRT for a Bernoulli stream.

    Step ``i`` holds ``x[i]`` successes in ``n[i]`` trials. ``p0`` is a scalar or a per-step
    *predictable* null probability (fixed before the step's data). ``greater=True`` tests
    "p <= p0" against odds-multiplied alternatives; ``greater=False`` tests "p >= p0".
    The product of likelihood ratios of a single alternative p1 > p0 has conditional mean
    ``p/p0 * p1 + (1-p)/(1-p0) * (1-p1) <= 1`` for every p <= p0, hence a supermartingale;
    a fixed-weight mixture of supermartingales is one too.
    """
    xs = np.asarray(x, dtype=float)
    ns = np.asarray(n, dtype=float)
    if xs.size == 0:
        return np.zeros(0)
    p = np.broadcast_to(np.asarray(p0, dtype=float), xs.shape)
    logw = _log_weights(len(multipliers), weights)
    # A null probability of 0 or 1 cannot be tested on the side it sits on: p0 >= 1 (greater)
    # or p0 <= 0 (not greater) means the null holds trivially; clamp the other extreme.
    informative = (p < 1.0) if greater else (p > 0.0)
    p_safe = np.clip(np.where(informative, p, 0.5), 1e-12, 1.0 - 1e-12)
    p1 = odds_alternatives(p_safe, multipliers, greater)
    contrib = xs * (np.log(p1) - np.log(p_safe)) + (ns - xs) * (np.log1p(-p1) - np.log1p(-p_safe))
    contrib = np.where(informative[None, :], contrib, 0.0)
    cum = np.cumsum(contrib, axis=1)
    return np.asarray(logsumexp(cum + logw[:, None], axis=0), dtype=float)


def betting_log_e(
    z: ArrayLike,
    bets: Sequence[float] = DEFAULT_BETS,
    weights: Sequence[float] | None = None,
) -> FloatArray:
    """Running log e-value of a mixture of constant-bet capital processes ``prod (1 + c z_i)``.

    Valid (a supermartingale) when ``E[z_i | past] <= 0`` and ``z_i >= -1``; each bet ``c`` must
    lie in [0, 1). ``z`` may be 2-D (independent rows, steps along the last axis). Used on
    bounded, batch-level statistics, which keeps the test valid whatever
    the dependence *within* a batch.
    """
    zs = np.asarray(z, dtype=float)
    if zs.shape[-1] == 0:
        return np.zeros(zs.shape)
    c = np.asarray(bets, dtype=float).reshape((-1,) + (1,) * zs.ndim)
    if np.any(c < 0) or np.any(c >= 1):
        raise ValueError("bets must lie in [0, 1)")
    if np.any(zs < -1.0):
        raise ValueError("betting statistics must be >= -1")
    logw = _log_weights(c.shape[0], weights).reshape(c.shape)
    cum = np.cumsum(np.log1p(c * zs[None, ...]), axis=-1)
    return logsumexp(cum + logw, axis=0)


def running_max(log_e: FloatArray) -> FloatArray:
    """Running maximum (the statistic Ville's inequality controls), starting from log 1 = 0."""
    if log_e.size == 0:
        return log_e
    return np.maximum.accumulate(np.maximum(log_e, 0.0))


def bernoulli_ucb(
    successes: ArrayLike,
    trials: ArrayLike,
    alpha: float,
    prior: tuple[float, float] = (0.5, 0.5),
    iterations: int = 60,
) -> FloatArray:
    """Anytime-valid upper confidence bound of a Bernoulli mean (Robbins' beta-binomial mixture).

    ``E_n(p) = B(a+S, b+n-S) / B(a, b) / (p^S (1-p)^(n-S))`` is a martingale under mean p,
    so ``{p : E_n(p) < 1/alpha}`` is a confidence sequence; the bound is its upper end, found by
    bisection (``E_n`` increases in p above S/n). Trials of 0 give 1.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    a, b = prior
    log_mix = betaln(a + s, b + n - s) - betaln(a, b)
    thr = np.log(1.0 / alpha)
    lo = np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0)
    hi = np.ones_like(lo)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            loglik = s * np.log(mid) + (n - s) * np.log1p(-mid)
        inside = (log_mix - loglik) < thr
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return np.asarray(np.where(n > 0, hi, 1.0), dtype=float)


def quantile_ucb_rank(
    n: ArrayLike,
    q: float,
    alpha: float,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
) -> NDArray[np.int64]:
    """Anytime-valid upper confidence bound for the q-quantile from n i.i.d. observations,
    as a count ``l``: the ``l``-th largest observation is >= the q-quantile for all n
    simultaneously with probability >= 1 - alpha. 0 means "no bound yet" (+infinity).

    The count ``E_n`` of observations above the quantile is Binomial(n, 1-q) (continuous
    distribution); the mixture SPRT of "p >= 1-q" against smaller alternatives is a martingale,
    decreasing in ``E_n``; ``l_n`` is the smallest count at which it is still below 1/alpha, so
    ``E_n >= l_n`` for every n outside an event of probability <= alpha.
    """
    ns = np.atleast_1d(np.asarray(n, dtype=np.int64))
    p0 = 1.0 - q
    p1 = odds_alternatives(np.asarray(p0), multipliers, greater=False).reshape(-1, 1)
    logw = _log_weights(len(multipliers), None)[:, None]
    thr = np.log(1.0 / alpha)
    la, lb = np.log(p1 / p0), np.log1p(-p1) - np.log1p(-p0)

    def loglr(e: NDArray[np.int64]) -> FloatArray:
        val = e[None, :] * la + (ns - e)[None, :] * lb
        return np.asarray(logsumexp(val + logw, axis=0), dtype=float)

    # The answer lies in [0, ceil(n p0)]: at E >= n p0 every alternative's LR is <= 1.
    lo = np.zeros_like(ns)
    hi = np.minimum(np.ceil(ns * p0).astype(np.int64) + 1, ns)
    zero_ok = loglr(lo) < thr
    for _ in range(64):
        if np.all(hi - lo <= 1):
            break
        mid = (lo + hi) // 2
        below = loglr(mid) < thr
        hi = np.where(below, mid, hi)
        lo = np.where(below, lo, mid)
    return np.asarray(np.where(zero_ok, 0, hi), dtype=np.int64)


def log_threshold(alpha: float) -> float:
    """log(1/alpha): Ville's threshold on the log scale."""
    return float(np.log(1.0 / alpha))

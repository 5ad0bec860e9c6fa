"""Per-metric evaluation from raw data.

Each ``evaluate_*`` function turns the run's data so far into a :class:`MetricVerdict`. The
work is vectorised: requests are sorted once (:func:`prepare_requests`), aggregated into time
buckets, and every test is a cumulative sum over buckets, so the result after N looks equals
that of a sequential procedure that had evaluated every bucket as it closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import sequential as seq
from .model import BASELINE, CANARY, JudgeData, JudgeMetric, JudgeSpec, MetricVerdict, Verdict

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Quantile levels tested when a latency metric judges the whole distribution.
DISTRIBUTION_LEVELS: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999)
#: Baseline counts at which latency thresholds are recomputed: MIN_EPOCH * GROWTH**k.
EPOCH_GROWTH = 1.25
MIN_EPOCH = 20
#: Evidence cap of the latency exceedance tests: inside each window of the spec's
#: ``cap_window_seconds``, an alternative's likelihood ratio counts for at most
#: exp(LATENCY_LOG_CAP) (see ``sequential.conditional_log_e``). A version that wanders on its
#: own (per-version autocorrelated latency) is locally slower for tens of seconds at a time;
#: the cap makes a failure need evidence that persists over several windows (two at alpha
#: 0.5%: e^6 > 200).
LATENCY_LOG_CAP = 3.0
#: The cap adapts to how much the *baseline's* latency wanders on its own: each window is cut
#: into this many blocks, and the wander variance (of the log latency, beyond sampling noise)
#: at which a window's cap is halved. A stationary baseline keeps the full cap.
WANDER_BLOCKS_PER_WINDOW = 4
WANDER_HALF_CAP_VAR = 0.05**2


@dataclass(frozen=True)
class Prepared:
    """Requests sorted by time (stable), as arrays, with bucket indices."""

    t0: float
    canary: BoolArray
    latency: FloatArray
    error: BoolArray
    bucket: IntArray
    batch: IntArray
    n_buckets: int
    n_batches: int
    canary_per_bucket: FloatArray
    total_per_bucket: FloatArray
    bucket_seconds: float = 1.0
    cap_window_seconds: float = 20.0

    @property
    def n_canary(self) -> int:
        return int(self.canary.sum())

    @property
    def n_baseline(self) -> int:
        return int(self.canary.size - self.canary.sum())

    @property
    def share(self) -> FloatArray:
        tot = self.total_per_bucket
        return np.where(tot > 0, self.canary_per_bucket / np.where(tot > 0, tot, 1.0), 0.0)


def data_start(data: JudgeData) -> float:
    times = [r.t for r in data.requests] + [s.t for s in data.samples]
    return min(times) if times else 0.0


def prepare_requests(data: JudgeData, spec: JudgeSpec, t0: float) -> Prepared:
    reqs = [r for r in data.requests if r.version in (CANARY, BASELINE)]
    t = np.fromiter((r.t for r in reqs), dtype=float, count=len(reqs))
    canary = np.fromiter((r.version == CANARY for r in reqs), dtype=bool, count=len(reqs))
    lat = np.fromiter((r.latency_ms for r in reqs), dtype=float, count=len(reqs))
    err = np.fromiter((r.status >= 500 for r in reqs), dtype=bool, count=len(reqs))
    order = np.argsort(t, kind="stable")
    t, canary, lat, err = t[order], canary[order], lat[order], err[order]
    bucket = np.floor((t - t0) / spec.bucket_seconds).astype(np.int64)
    batch = np.floor((t - t0) / spec.batch_seconds).astype(np.int64)
    nb = int(bucket.max()) + 1 if bucket.size else 0
    nbt = int(batch.max()) + 1 if batch.size else 0
    cpb = np.bincount(bucket, weights=canary.astype(float), minlength=nb).astype(float)
    tpb = np.bincount(bucket, minlength=nb).astype(float)
    return Prepared(
        t0,
        canary,
        lat,
        err,
        bucket,
        batch,
        nb,
        nbt,
        cpb,
        tpb,
        spec.bucket_seconds,
        spec.cap_window_seconds,
    )


# --------------------------------------------------------------------------- sub-tests


@dataclass
class SubTest:
    """One anytime-valid test inside a metric: its running-max log e-value and threshold."""

    label: str
    log_e_max: float
    alpha: float
    early_pass: bool = False  # the reverse test proved "within tolerance"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def log_threshold(self) -> float:
        return seq.log_threshold(self.alpha)

    @property
    def crossed(self) -> bool:
        return self.log_e_max >= self.log_threshold

    @property
    def progress(self) -> float:
        """How far towards its threshold the statistic has come (1 = crossed)."""
        return self.log_e_max / self.log_threshold


def _max_log(log_e: FloatArray) -> float:
    return float(seq.running_max(log_e)[-1]) if log_e.size else 0.0


def _reverse_crossed(log_e: FloatArray, alpha: float) -> bool:
    return bool(log_e.size) and float(log_e.max()) >= seq.log_threshold(alpha)


def _conditional_subtest(
    label: str,
    x: FloatArray,
    k: FloatArray,
    share: FloatArray,
    rho0: float,
    alpha: float,
    *,
    multipliers: tuple[float, ...] = seq.DEFAULT_MULTIPLIERS,
    weights: tuple[float, ...] | None = None,
    window: IntArray | None = None,
    log_cap: float | FloatArray | None = None,
) -> SubTest:
    up = seq.conditional_log_e(
        x, k, share, rho0, [rho0 * m for m in multipliers], weights, window, log_cap
    )
    down = seq.conditional_log_e(x, k, share, rho0, [rho0 / m for m in seq.DEFAULT_MULTIPLIERS])
    return SubTest(label, _max_log(up), alpha, early_pass=_reverse_crossed(down, alpha))


def ratio_interval(
    x: FloatArray, k: FloatArray, share: FloatArray, alpha: float
) -> tuple[float, float] | None:
    """Confidence set (at the current time) for the ratio rho of event rates: the values of
    rho that neither one-sided test rejects at alpha/2 each, on a log grid from 1e-3 to 1e3."""
    if not np.any((k > 0) & (share > 0) & (share < 1)):
        return None
    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 121))
    thr = seq.log_threshold(alpha / 2)
    up = seq.conditional_log_e_final(x, k, share, grid, greater=True)
    dn = seq.conditional_log_e_final(x, k, share, grid, greater=False)
    idx = np.flatnonzero((up < thr) & (dn < thr))
    if idx.size == 0:
        return None
    lo = 0.0 if idx[0] == 0 else float(grid[idx[0]])
    hi = math.inf if idx[-1] == grid.size - 1 else float(grid[idx[-1]])
    return (lo, hi)


# --------------------------------------------------------------------------- formatting


def fmt_num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_e(log_e: float) -> str:
    if log_e > 690:
        return f"e^{log_e:.0f}"
    return fmt_num(math.exp(log_e))


def fmt_pct(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{100 * p:.2f}%"


def _value(log_e: float) -> float:
    return math.exp(min(log_e, 690.0))


def _finish(
    metric: JudgeMetric,
    *,
    alpha: float,
    subtests: list[SubTest],
    fail_groups: list[list[SubTest]],
    n_c: int,
    n_b: int,
    canary_value: float | None,
    baseline_value: float | None,
    describe: str,
    statistic: str,
    unit_of_n: str,
    interval: tuple[float, float] | None,
    final_look: bool,
    early_pass_allowed: bool,
) -> MetricVerdict:
    """Shared verdict logic. ``fail_groups``: the metric fails when, for some group, every
    sub-test of the group crossed (a group with several tests is an intersection of nulls,
    e.g. relative AND absolute tolerance)."""
    common: dict[str, Any] = {
        "name": metric.name,
        "critical": metric.critical,
        "group": metric.group,
        "canary": canary_value,
        "baseline": baseline_value,
        "n_canary": n_c,
        "n_baseline": n_b,
        "statistic": statistic,
        "alpha": alpha,
        "dry_run": metric.dry_run,
        "no_data_policy": metric.no_data,
        "weight": metric.weight,
    }
    if n_c < metric.min_samples or n_b < metric.min_samples:
        reason = (
            f"only {n_c:,} canary and {n_b:,} baseline {unit_of_n} "
            f"(need {metric.min_samples:,} each) → no data"
        )
        return MetricVerdict(
            verdict="no-data", value=None, threshold=None, interval=None, reason=reason, **common
        )
    failed_groups = [g for g in fail_groups if g and all(t.crossed for t in g)]
    if failed_groups:
        # Report the weakest crossing in an intersection group (the one that decided).
        decisive = min(failed_groups[0], key=lambda t: t.progress)
    else:
        decisive = max(subtests, key=lambda t: t.progress)
    value = _value(decisive.log_e_max)
    threshold = 1.0 / decisive.alpha
    head = f"{describe}: {decisive.label} e-value {fmt_e(decisive.log_e_max)}"
    verdict: Verdict
    if failed_groups:
        verdict = "fail"
        labels = "; ".join(t.label for g in failed_groups for t in g)
        reason = f"{head} ≥ {fmt_num(threshold)} → worse than tolerated ({labels})"
    elif final_look:
        verdict = "pass"
        reason = (
            f"{head} < {fmt_num(threshold)} at the final look → no evidence of regression "
            "at the planned horizon"
        )
    elif early_pass_allowed and all(any(t.early_pass for t in g) for g in fail_groups if g):
        verdict = "pass"
        reason = (
            f"{head} < {fmt_num(threshold)}, and the confidence sequence shows the canary "
            "within tolerance → early pass"
        )
    else:
        verdict = "continue"
        reason = f"{head} < {fmt_num(threshold)} → no evidence of regression yet"
    return MetricVerdict(
        verdict=verdict,
        value=value,
        threshold=threshold,
        interval=interval,
        reason=reason,
        **common,
    )


# --------------------------------------------------------------------------- ratio


def evaluate_ratio(
    metric: JudgeMetric, prep: Prepared, alpha: float, final_look: bool, early_pass: bool
) -> MetricVerdict:
    n_c, n_b = prep.n_canary, prep.n_baseline
    nb = prep.n_buckets
    c_err = prep.canary & prep.error
    b_err = ~prep.canary & prep.error
    e_c, e_b = int(c_err.sum()), int(b_err.sum())
    rate_c = e_c / n_c if n_c else None
    rate_b = e_b / n_b if n_b else None
    higher = metric.worse == "higher"

    xc = np.bincount(prep.bucket[c_err], minlength=nb).astype(float)
    xb = np.bincount(prep.bucket[b_err], minlength=nb).astype(float)
    k = xc + xb
    share = prep.share
    nc_b = prep.canary_per_bucket
    nb_b = prep.total_per_bucket - nc_b

    rel, ab = metric.relative_tolerance, metric.absolute_tolerance
    comparative = rel is not None or ab is not None or metric.bound is None
    n_parts = int(comparative) + int(metric.bound is not None)
    a_part = alpha / max(n_parts, 1)
    subtests: list[SubTest] = []
    groups: list[list[SubTest]] = []
    interval = None
    tol_text: list[str] = []

    if comparative:
        group: list[SubTest] = []
        if rel is not None or ab is None:
            tau = rel if rel is not None else 1.0
            # worse="lower" mirrors the test: the baseline plays the canary (share 1 - s).
            x_, s_ = (xc, share) if higher else (xb, 1.0 - share)
            st = _conditional_subtest(
                "share-aware rate-ratio",
                x_,
                k,
                s_,
                tau,
                a_part,
                multipliers=seq.FOCUSED_MULTIPLIERS,
                weights=seq.FOCUSED_WEIGHTS,
            )
            group.append(st)
            interval = ratio_interval(xc, k, share, a_part)
            tol_text.append(f"{fmt_num(tau)}× baseline" if higher else f"1/{fmt_num(tau)}×")
        if ab is not None:
            # Null p_c <= p_b + delta: spend half on an anytime upper bound of p_b from the
            # buckets *before* each bucket (predictable), half on a one-sample SPRT of the
            # canary's stream against that bound + delta. worse="lower" uses successes.
            bx = xb if higher else nb_b - xb
            cx = xc if higher else nc_b - xc
            cum_bx = np.concatenate([[0.0], np.cumsum(bx)[:-1]])
            cum_bn = np.concatenate([[0.0], np.cumsum(nb_b)[:-1]])
            ucb = seq.bernoulli_ucb(cum_bx, cum_bn, a_part / 2)
            p0 = np.minimum(ucb + ab, 1.0)
            le = seq.bernoulli_log_e(cx, nc_b, p0, greater=True)
            group.append(SubTest("absolute-difference", _max_log(le), a_part / 2))
            tol_text.append(f"+{fmt_pct(ab)}")
        subtests.extend(group)
        groups.append(group)
    if metric.bound is not None:
        pb = metric.bound if higher else 1.0 - metric.bound
        cx = xc if higher else nc_b - xc
        up = seq.bernoulli_log_e(cx, nc_b, pb, greater=True)
        down = seq.bernoulli_log_e(cx, nc_b, pb, greater=False)
        st = SubTest(
            f"bound {fmt_pct(metric.bound)}",
            _max_log(up),
            a_part,
            early_pass=_reverse_crossed(down, a_part),
        )
        subtests.append(st)
        groups.append([st])

    describe = (
        f"canary error rate {fmt_pct(rate_c)} (n={n_c:,}) vs baseline {fmt_pct(rate_b)} "
        f"(n={n_b:,}), tolerance {' or '.join(tol_text) or 'none'}"
        + (f", bound {fmt_pct(metric.bound)}" if metric.bound is not None else "")
    )
    return _finish(
        metric,
        alpha=alpha,
        subtests=subtests,
        fail_groups=groups,
        n_c=n_c,
        n_b=n_b,
        canary_value=rate_c,
        baseline_value=rate_b,
        describe=describe,
        statistic="e-value (mixture likelihood ratio, share-aware conditional test)",
        unit_of_n="requests",
        interval=interval,
        final_look=final_look,
        early_pass_allowed=early_pass,
    )


# --------------------------------------------------------------------------- latency


def cap_windows_of(prep: Prepared) -> IntArray:
    """The evidence-cap window of each bucket."""
    per_window = prep.bucket_seconds / prep.cap_window_seconds
    return np.floor(np.arange(prep.n_buckets) * per_window + 1e-9).astype(np.int64)


def wander_caps(prep: Prepared, window: IntArray) -> FloatArray:
    """Evidence cap of each latency window, from how much the baseline wanders on its own.

    Versions whose latency wanders independently (a noisy neighbour, a cache that warms and
    cools) make the canary locally slower than the baseline for tens of seconds at a time,
    even when the two are identical. Such wander shows in the baseline alone: consecutive
    blocks (a quarter of a window each) of its log latency differ by more than sampling noise
    explains. The excess variance ``v`` estimated from the blocks *before* a window sets that
    window's cap, ``LATENCY_LOG_CAP / (1 + v / WANDER_HALF_CAP_VAR)``: a wandering service
    needs evidence that persists over more windows before a failure. The cap is predictable
    (fixed before the window's data), so the test stays valid; a slow drift shared by both
    versions moves consecutive blocks too little to matter.
    """
    n_win = int(window[-1]) + 1 if window.size else 0
    caps = np.full(n_win, LATENCY_LOG_CAP)
    base = ~prep.canary & (prep.latency > 0)
    if n_win < 2 or not np.any(base):
        return caps
    block_seconds = prep.cap_window_seconds / WANDER_BLOCKS_PER_WINDOW
    per_block = max(1, round(block_seconds / prep.bucket_seconds))
    block = prep.bucket[base] // per_block
    ly = np.log(prep.latency[base])
    nbk = int(prep.n_buckets // per_block) + 1
    cnt = np.bincount(block, minlength=nbk).astype(float)
    s1 = np.bincount(block, weights=ly, minlength=nbk)
    s2 = np.bincount(block, weights=ly * ly, minlength=nbk)
    ok = cnt >= 2
    safe = np.where(ok, cnt, 1.0)
    mean = s1 / safe
    noise = np.where(ok, np.maximum(s2 / safe - mean**2, 0.0) * cnt / np.maximum(cnt - 1, 1), 0)
    noise = noise / safe  # sampling variance of the block mean
    pair = ok[1:] & ok[:-1]
    excess = np.where(pair, (mean[1:] - mean[:-1]) ** 2 - noise[1:] - noise[:-1], 0.0) / 2
    # Pair (b-1, b) is complete once block b has ended: at second (b + 1) * block seconds.
    pair_end = (np.arange(1, nbk) + 1) * per_block * prep.bucket_seconds
    win_start = np.arange(n_win) * prep.cap_window_seconds
    done = np.searchsorted(pair_end, win_start, side="right")  # pairs ended by the start
    cum_ex = np.concatenate([[0.0], np.cumsum(excess)])
    cum_n = np.concatenate([[0.0], np.cumsum(pair.astype(float))])
    # Under no wander, each pair's excess is noise with variance (sampling variance sum)^2 / 2;
    # two standard errors of the mean are taken off, so sampling noise alone rarely lowers a cap.
    null_sq = np.where(pair, (noise[1:] + noise[:-1]) ** 2 / 2, 0.0)
    cum_sq = np.concatenate([[0.0], np.cumsum(null_sq)])
    n_pairs = np.maximum(cum_n[done], 1.0)
    var = (cum_ex[done] - 2.0 * np.sqrt(cum_sq[done])) / n_pairs
    return np.asarray(LATENCY_LOG_CAP / (1.0 + np.maximum(var, 0.0) / WANDER_HALF_CAP_VAR))


def _epochs(baseline_index: IntArray, n_b: int) -> list[int]:
    counts: list[int] = []
    c = float(MIN_EPOCH)
    while math.ceil(c) <= n_b:
        v = math.ceil(c)
        if not counts or v > counts[-1]:
            counts.append(v)
        c *= EPOCH_GROWTH
    return counts


def _graded_subtest(
    exceeds: BoolArray,
    prep: Prepared,
    share: FloatArray,
    window: IntArray,
    caps: FloatArray,
    alpha: float,
    higher: bool,
    levels_y: tuple[float, ...],
) -> SubTest:
    """The graded exceedance test of every level at once (``sequential.graded_log_e``), with
    per-level reverse tests for an early pass (each at ``alpha / levels``: the claim "within
    tolerance" must hold at every level)."""
    nb = prep.n_buckets
    n_lv = len(levels_y)
    grade = exceeds.sum(axis=1)  # thresholds nest, so the grade is the highest level exceeded
    x = np.zeros((n_lv, nb))
    k = np.zeros((n_lv, nb))
    for g in range(1, n_lv + 1):
        at = grade == g
        x[g - 1] = np.bincount(prep.bucket[at & prep.canary], minlength=nb)
        k[g - 1] = np.bincount(prep.bucket[at], minlength=nb)
    log_rho, weights = seq.graded_prior(n_lv)
    up = seq.graded_log_e(x, k, share, log_rho, weights.tolist(), window, caps)
    early = True
    for li in range(n_lv):
        # events of level li: grade > li
        xl = x[li:].sum(axis=0)
        kl = k[li:].sum(axis=0)
        down = seq.conditional_log_e(xl, kl, share, 1.0, [1 / m for m in seq.DEFAULT_MULTIPLIERS])
        early = early and _reverse_crossed(down, alpha / n_lv)
    lv = [lvl if higher else 1.0 - lvl for lvl in levels_y]
    label = f"p{100 * min(lv):g}–p{100 * max(lv):g} graded exceedance"
    return SubTest(label, _max_log(up), alpha, early_pass=early)


def evaluate_latency(
    metric: JudgeMetric, prep: Prepared, alpha: float, final_look: bool, early_pass: bool
) -> MetricVerdict:
    n_c, n_b = prep.n_canary, prep.n_baseline
    higher = metric.worse == "higher"
    tau = metric.relative_tolerance if metric.relative_tolerance is not None else 1.0
    delta = metric.absolute_tolerance or 0.0
    # Work in "y" space where larger is worse: y = latency (higher) or -latency (lower).
    y = prep.latency if higher else -prep.latency
    tau_y = tau if higher else 1.0 / tau
    if metric.quantile is not None:
        levels_x: tuple[float, ...] = (metric.quantile,)
        levels_y = levels_x if higher else tuple(1.0 - q for q in levels_x)
        one_sample = True
    else:
        levels_y = DISTRIBUTION_LEVELS
        one_sample = False
    # quantile set: half of alpha to the exceedance test, half to the one-sample test;
    # quantile None: one graded test of all levels at once gets all of alpha.
    a_test = alpha / 2 if one_sample else alpha

    qx = metric.quantile if metric.quantile is not None else 0.5
    lat_c = prep.latency[prep.canary]
    lat_b = prep.latency[~prep.canary]
    can_v = float(np.quantile(lat_c, qx)) if lat_c.size else None
    base_v = float(np.quantile(lat_b, qx)) if lat_b.size else None

    subtests: list[SubTest] = []
    cap_note = ""
    if n_c >= metric.min_samples and n_b >= metric.min_samples:
        b_idx = np.flatnonzero(~prep.canary)
        epochs = _epochs(b_idx, n_b)
        if epochs:
            yb = y[b_idx]
            starts = b_idx[np.asarray(epochs) - 1]  # global index of the epoch's last request
            # Epoch of each request: thresholds fixed from baseline data strictly before it.
            ep = np.searchsorted(starts, np.arange(y.size), side="left")  # 0 = none yet
            elig = ep > 0
            epi = np.clip(ep - 1, 0, len(epochs) - 1)
            nb = prep.n_buckets
            share_num = np.bincount(
                prep.bucket[elig], weights=prep.canary[elig].astype(float), minlength=nb
            )
            share_den = np.bincount(prep.bucket[elig], minlength=nb).astype(float)
            share = np.where(share_den > 0, share_num / np.where(share_den > 0, share_den, 1), 0)
            window = cap_windows_of(prep)
            caps = wander_caps(prep, window)
            if caps[-1] < 0.9 * LATENCY_LOG_CAP:
                cap_note = (
                    f"; the baseline's latency wanders on its own, so each "
                    f"{prep.cap_window_seconds:g}-s window adds at most e^{caps[-1]:.2g} "
                    f"(steady: e^{LATENCY_LOG_CAP:g})"
                )
            thr_all = np.array([np.quantile(yb[:n], levels_y) for n in epochs]).reshape(
                len(epochs), len(levels_y)
            )
            t_b_all = thr_all[epi]  # requests × levels, nondecreasing across levels
            exceeds = (
                np.where(
                    prep.canary[:, None], y[:, None] > tau_y * t_b_all + delta, y[:, None] > t_b_all
                )
                & elig[:, None]
            )
            if one_sample:
                xc = np.bincount(prep.bucket[exceeds[:, 0] & prep.canary], minlength=nb).astype(
                    float
                )
                k = np.bincount(prep.bucket[exceeds[:, 0]], minlength=nb).astype(float)
                lvl = levels_y[0] if higher else 1.0 - levels_y[0]
                subtests.append(
                    _conditional_subtest(
                        f"p{100 * lvl:g} exceedance-ratio",
                        xc,
                        k,
                        share,
                        1.0,
                        a_test,
                        window=window,
                        log_cap=caps,
                    )
                )
            else:
                subtests.append(
                    _graded_subtest(exceeds, prep, share, window, caps, alpha, higher, levels_y)
                )
            if one_sample:
                level = levels_y[0]
                a_half = a_test / 2
                ranks = seq.quantile_ucb_rank(np.asarray(epochs), level, a_half)
                ucb = np.array(
                    [
                        np.partition(yb[:n], n - r)[n - r] if r > 0 else np.inf
                        for n, r in zip(epochs, ranks, strict=True)
                    ]
                )
                t_c = tau_y * ucb[epi] + delta
                cmask = elig & prep.canary & np.isfinite(t_c)
                nbt = prep.n_batches
                n_batch = np.bincount(prep.batch[cmask], minlength=nbt).astype(float)
                x_batch = np.bincount(prep.batch[cmask & (y > t_c)], minlength=nbt).astype(float)
                has = n_batch > 0
                p0 = 1.0 - level
                z = x_batch[has] / n_batch[has] / p0 - 1.0
                le = seq.betting_log_e(z)
                lvl = level if higher else 1.0 - level
                subtests.append(
                    SubTest(f"p{100 * lvl:g} one-sample (batched)", _max_log(le), a_half)
                )
    if not subtests:
        subtests = [SubTest("exceedance", 0.0, a_test)]
    # Every sub-test is its own way to fail (union of rejections, alpha split).
    groups = [[t] for t in subtests]
    if one_sample and len(subtests) > 1:
        # Early pass needs the conditional test to show "within tolerance".
        subtests[-1].early_pass = True
    qname = f"p{100 * qx:g}" if metric.quantile is not None else "median"
    tol = f"{fmt_num(tau)}×" + (f" + {fmt_num(delta)} ms" if delta else "")
    describe = (
        f"canary {qname} latency {fmt_num(can_v)} ms (n={n_c:,}) vs baseline "
        f"{fmt_num(base_v)} ms (n={n_b:,}), tolerance {tol}{cap_note}"
    )
    return _finish(
        metric,
        alpha=alpha,
        subtests=subtests,
        fail_groups=groups,
        n_c=n_c,
        n_b=n_b,
        canary_value=can_v,
        baseline_value=base_v,
        describe=describe,
        statistic="e-value (threshold-exceedance tests)",
        unit_of_n="requests",
        interval=None,
        final_look=final_look,
        early_pass_allowed=early_pass,
    )


# --------------------------------------------------------------------------- gauge


def gauge_arrays(data: JudgeData, name: str) -> tuple[FloatArray, BoolArray, FloatArray]:
    ss = [s for s in data.samples if s.metric == name and s.version in (CANARY, BASELINE)]
    t = np.fromiter((s.t for s in ss), dtype=float, count=len(ss))
    c = np.fromiter((s.version == CANARY for s in ss), dtype=bool, count=len(ss))
    v = np.fromiter((s.value for s in ss), dtype=float, count=len(ss))
    order = np.argsort(t, kind="stable")
    return t[order], c[order], v[order]


GAUGE_WARMUP = 3  # paired buckets used only to estimate the scale before betting


def _gauge_z(d: FloatArray) -> FloatArray:
    """Clip each paired difference by a predictable scale: 2 x the RMS of earlier ones.
    Steps along the last axis (rows of a 2-D array are independent sequences)."""
    if d.shape[-1] == 0:
        return d
    zero = np.zeros((*d.shape[:-1], 1))
    prev_sq = np.concatenate([zero, np.cumsum(d**2, axis=-1)[..., :-1]], axis=-1)
    cnt = np.arange(d.shape[-1], dtype=float)
    rms = np.sqrt(prev_sq / np.maximum(cnt, 1.0))
    scale = 2.0 * rms
    ok = (cnt >= GAUGE_WARMUP) & (scale > 0)
    z = np.where(ok, d / np.where(ok, scale, 1.0), 0.0)
    return np.clip(z, -1.0, 1.0)


def evaluate_gauge(
    metric: JudgeMetric,
    arrays: tuple[FloatArray, BoolArray, FloatArray],
    spec: JudgeSpec,
    t0: float,
    alpha: float,
    final_look: bool,
) -> MetricVerdict:
    t, c, v = arrays
    n_c, n_b = int(c.sum()), int((~c).sum())
    mean_c = float(v[c].mean()) if n_c else None
    mean_b = float(v[~c].mean()) if n_b else None
    higher = metric.worse == "higher"
    bucket = np.floor((t - t0) / spec.gauge_bucket_seconds).astype(np.int64)
    nb = int(bucket.max()) + 1 if bucket.size else 0
    sc = np.bincount(bucket[c], weights=v[c], minlength=nb)
    nc = np.bincount(bucket[c], minlength=nb).astype(float)
    sb = np.bincount(bucket[~c], weights=v[~c], minlength=nb)
    nbb = np.bincount(bucket[~c], minlength=nb).astype(float)
    paired = (nc > 0) & (nbb > 0)
    mc = sc[paired] / nc[paired]
    mb = sb[paired] / nbb[paired]
    # y space: larger is worse.
    yc, yb = (mc, mb) if higher else (-mc, -mb)
    rel, ab = metric.relative_tolerance, metric.absolute_tolerance
    if rel is None and ab is None:
        allowed = yb
    else:
        cands = []
        if rel is not None:
            cands.append(yb * (rel if higher else 1.0 / rel))
        if ab is not None:
            cands.append(yb + ab)
        allowed = np.maximum.reduce(cands)
    d = yc - allowed
    up = seq.betting_log_e(_gauge_z(d))
    down = seq.betting_log_e(-_gauge_z(d))
    st = SubTest(
        "paired-bucket betting", _max_log(up), alpha, early_pass=_reverse_crossed(down, alpha)
    )
    raw = mc - mb
    interval = _gauge_interval(raw, alpha) if raw.size > GAUGE_WARMUP else None
    tol = []
    if rel is not None:
        tol.append(f"{fmt_num(rel)}× baseline")
    if ab is not None:
        tol.append(f"+{fmt_num(ab)}")
    describe = (
        f"canary mean {fmt_num(mean_c)} (n={n_c:,}) vs baseline {fmt_num(mean_b)} "
        f"(n={n_b:,}) over {int(paired.sum()):,} paired buckets, tolerance "
        f"{' or '.join(tol) or 'none'}"
    )
    return _finish(
        metric,
        alpha=alpha,
        subtests=[st],
        fail_groups=[[st]],
        n_c=n_c,
        n_b=n_b,
        canary_value=mean_c,
        baseline_value=mean_b,
        describe=describe,
        statistic="e-value (betting on clipped paired differences)",
        unit_of_n="samples",
        interval=interval,
        final_look=final_look,
        early_pass_allowed=spec.early_pass,
    )


def _gauge_interval(raw: FloatArray, alpha: float) -> tuple[float, float] | None:
    """Confidence set (at the current time) for the mean paired difference, on a grid; the
    two one-sided betting tests at alpha/2 each, inverted."""
    spread = float(np.max(np.abs(raw))) or 1.0
    grid = np.linspace(-2 * spread, 2 * spread, 161)
    thr = seq.log_threshold(alpha / 2)
    z = _gauge_z(raw[None, :] - grid[:, None])
    inside = (seq.betting_log_e(z)[:, -1] < thr) & (seq.betting_log_e(-z)[:, -1] < thr)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return None
    return (float(grid[idx[0]]), float(grid[idx[-1]]))

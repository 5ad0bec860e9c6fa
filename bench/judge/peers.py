"""Two peer canary judges, written from their documented behaviour, run on simulated streams.

ArgoThresholdJudge — an Argo Rollouts background analysis with two metrics measured every
``interval_s`` over that interval's requests only:

* ``error-ratio``: the measurement fails when canary error rate ≥ 2 × the stable version's (and
  the canary had at least one error: ``0 ≥ 2 × 0`` is not a failure — the guard any PromQL
  author adds, otherwise a zero-error service fails every measurement);
* ``latency-p99``: fails when the canary's p99 ≥ 1.5 × the stable version's.

Each metric has ``failureLimit: 2`` (Argo fails a metric when its failed measurements exceed
the limit, i.e. at the 3rd failure, counted over the whole run, not consecutively) and
``consecutiveErrorLimit: 4`` (a measurement with no canary or no stable requests is an Error;
the 5th consecutive Error errors the run, which also aborts the rollout). The rollout aborts at
the first metric that fails or errors. p99 is the exact sample quantile (numpy "linear"), where
Prometheus would interpolate inside histogram buckets.

KayentaJudge — Kayenta's NetflixACAJudge on a canary analysis with ``interval_s`` lookback
intervals on a growing window (every interval the judge sees all data since the start),
metrics fetched as time series at ``step_s`` resolution, as a metric store returns them:

* ``error-ratio``: per step, errors / requests of each version (steps without requests are NaN
  and removed, Kayenta's default NaN strategy);
* ``latency-p99`` and ``latency-mean``: per step, each version's p99 / mean latency.

Each metric is classified by the Mann-Whitney classifier: the Mann-Whitney U test of canary
against baseline with a 98% confidence interval for the location shift (canary − baseline,
Hodges–Lehmann estimate; the interval from the asymptotic rank distribution, Moses' method).
The metric is High when the interval's lower bound > tolerance × |estimate| (tolerance 0.25)
and the effect size (mean ratio canary / baseline; 1.0 when the baseline mean is 0) is at least
``allowed_increase`` (Kayenta's default effect size 1.0 ⇒ no extra gate). Direction is
"increase" for all metrics, so Low never happens. Identical data, or a single distinct value
over both versions, is Pass; no data is NoData. Score = 100 × Pass / (Pass + High + Low) in one
group (NoData excluded; all NoData scores 0). The run aborts at the first interval whose score ≤
marginal (75); pass threshold 95 (reported only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from bench.judge.streams import BoolArray, FloatArray, IntArray, Stream


@dataclass(frozen=True)
class Outcome:
    """What one judge did with one stream."""

    aborted: bool
    abort_t: float | None = None  # seconds since the start of the stream
    reason: str = ""
    looks: int = 0
    detail: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Grouped statistics (vectorised)


def grouped_quantile(
    values: FloatArray, groups: IntArray, n_groups: int, q: float
) -> tuple[IntArray, FloatArray]:
    """Per-group count and ``q``-quantile (numpy's "linear" method); NaN for empty groups."""
    order = np.lexsort((values, groups))
    v = values[order]
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = q * np.maximum(counts - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    out = np.full(n_groups, np.nan)
    ok = counts > 0
    a = v[(starts + lo)[ok]]
    b = v[(starts + hi)[ok]]
    out[ok] = a + (b - a) * frac[ok]
    return counts, out


# ---------------------------------------------------------------------------------------------
# Argo Rollouts-style threshold judge


@dataclass(frozen=True)
class ArgoThresholdJudge:
    interval_s: float = 30.0
    error_factor: float = 2.0
    p99_factor: float = 1.5
    failure_limit: int = 2
    consecutive_error_limit: int = 4
    tag: str = ""  # name suffix of a variant, e.g. "cal" for the calibrated one

    @property
    def name(self) -> str:
        return f"argo-{self.tag}" if self.tag else f"argo-{self.interval_s:g}s"

    def measurements(self, stream: Stream) -> dict[str, IntArray]:
        """Per-interval measurement phases (OK, FAIL or ERROR) of each metric."""
        k = int(stream.duration_s // self.interval_s)
        idx = (stream.t // self.interval_s).astype(np.int64)
        keep = idx < k
        idx, can = idx[keep], stream.canary[keep]
        lat, err = stream.latency_ms[keep], stream.error[keep]
        g = idx * 2 + can.astype(np.int64)  # group: interval × version (1 = canary)
        counts, p99 = grouped_quantile(lat, g, 2 * k, 0.99)
        errors = np.bincount(g, weights=err.astype(np.float64), minlength=2 * k)
        nb, nc = counts[0::2], counts[1::2]
        with np.errstate(invalid="ignore", divide="ignore"):
            rb, rc = errors[0::2] / nb, errors[1::2] / nc
        bad = (nb == 0) | (nc == 0)
        err_fail = (rc > 0) & (rc >= self.error_factor * rb)
        lat_fail = p99[1::2] >= self.p99_factor * p99[0::2]
        phases: dict[str, IntArray] = {}
        for metric, fail in (("error-ratio", err_fail), ("latency-p99", lat_fail)):
            phases[metric] = np.where(bad, ERROR, np.where(fail, FAIL, OK))
        return phases

    def ratios(self, stream: Stream) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Per interval, for calibrating the factors: canary / stable error rate (0 when the
        canary had no errors, inf when only the canary had some), canary / stable p99, and
        whether the interval lacked canary or stable requests (an Error measurement; both
        ratios NaN). A measurement fails when its ratio is >= the factor."""
        k = int(stream.duration_s // self.interval_s)
        idx = (stream.t // self.interval_s).astype(np.int64)
        keep = idx < k
        idx, can = idx[keep], stream.canary[keep]
        g = idx * 2 + can.astype(np.int64)
        counts, p99 = grouped_quantile(stream.latency_ms[keep], g, 2 * k, 0.99)
        errors = np.bincount(g, weights=stream.error[keep].astype(np.float64), minlength=2 * k)
        nb, nc = counts[0::2], counts[1::2]
        bad = (nb == 0) | (nc == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            rb, rc = errors[0::2] / nb, errors[1::2] / nc
            err_ratio = np.where(rc > 0, rc / rb, 0.0)
            p99_ratio = p99[1::2] / p99[0::2]
        return (
            np.where(bad, np.nan, err_ratio),
            np.where(bad, np.nan, p99_ratio),
            np.asarray(bad, dtype=bool),
        )

    def run(self, stream: Stream) -> Outcome:
        phases = self.measurements(stream)
        k = next(iter(phases.values())).size
        first: tuple[int, str] | None = None
        for metric, ph in phases.items():
            at = argo_abort_index(ph, self.failure_limit, self.consecutive_error_limit)
            if at is not None and (first is None or at[0] < first[0]):
                first = (at[0], f"{metric} {at[1]}")
        if first is None:
            return Outcome(False, looks=k)
        return Outcome(True, (first[0] + 1) * self.interval_s, first[1], looks=first[0] + 1)


OK, FAIL, ERROR = 0, 1, 2  # Argo measurement phases: Successful, Failed, Error


def argo_abort_index(
    phases: IntArray, failure_limit: int, consecutive_error_limit: int
) -> tuple[int, str] | None:
    """Index of the measurement at which an Argo metric fails or errors, if any."""
    failed = 0
    consecutive = 0
    for i, ph in enumerate(phases.tolist()):
        if ph == ERROR:
            consecutive += 1
            if consecutive > consecutive_error_limit:
                return i, "errored"
            continue
        consecutive = 0
        if ph == FAIL:
            failed += 1
            if failed > failure_limit:
                return i, "failed"
    return None


# ---------------------------------------------------------------------------------------------
# Kayenta-style Mann-Whitney judge


@dataclass(frozen=True)
class MannWhitney:
    """Asymptotic Mann-Whitney U test (tie- and continuity-corrected, two-sided, like scipy's
    ``mannwhitneyu(method="asymptotic")``) and the rank-based confidence interval for the
    shift canary − baseline with its Hodges–Lehmann estimate."""

    u: float  # U of the canary sample
    sd_u: float  # its standard deviation under the null, tie-corrected
    p_value: float
    lower: float
    upper: float
    estimate: float


def mann_whitney(
    canary: FloatArray, baseline: FloatArray, conf_level: float = 0.98, interval: bool = True
) -> MannWhitney:
    x = np.asarray(canary, dtype=np.float64)
    y = np.asarray(baseline, dtype=np.float64)
    n, m = x.size, y.size
    big_n = n + m
    allv = np.concatenate((x, y))
    sorted_all = np.sort(allv)
    # average ranks: rank of v = (#< v) + (#<= v + 1) / 2 ... via searchsorted on sorted data
    left = np.searchsorted(sorted_all, x, side="left")
    right = np.searchsorted(sorted_all, x, side="right")
    r1 = float(np.sum((left + right + 1) / 2.0))
    u1 = r1 - n * (n + 1) / 2.0
    _, tie_counts = np.unique(sorted_all, return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts))
    mu = n * m / 2.0
    var = n * m / 12.0 * ((big_n + 1) - tie_term / (big_n * (big_n - 1)))
    sd = math.sqrt(var) if var > 0 else 0.0
    if sd == 0.0:
        p = 1.0
    else:
        z = (max(u1, n * m - u1) - mu - 0.5) / sd
        p = min(1.0, 2.0 * float(ndtr(-z)))
    if not interval:
        return MannWhitney(u1, sd, p, math.nan, math.nan, math.nan)
    lower, upper, estimate = _shift_interval(x, y, sd, conf_level)
    return MannWhitney(u1, sd, p, lower, upper, estimate)


def shift_rank(nm: int, sd_u: float, conf_level: float) -> int:
    """k of the interval [D_(k), D_(nm-k+1)] (1-based); < 1 means unbounded."""
    z = float(ndtri(0.5 + conf_level / 2.0))
    return math.floor(nm / 2.0 - z * sd_u)


def _shift_interval(
    x: FloatArray, y: FloatArray, sd_u: float, conf_level: float
) -> tuple[float, float, float]:
    """[D_(k), D_(nm-k+1)] of the pairwise differences D = x_i - y_j, k from the normal
    approximation of U; and the Hodges–Lehmann estimate median(D)."""
    d = (x[:, None] - y[None, :]).ravel()
    nm = d.size
    k = shift_rank(nm, sd_u, conf_level)
    med_idx = [(nm - 1) // 2, nm // 2]
    if k < 1:
        part = np.partition(d, med_idx)
        return -math.inf, math.inf, float(np.mean(part[med_idx]))
    idx = sorted({k - 1, nm - k, *med_idx})
    part = np.partition(d, idx)
    return float(part[k - 1]), float(part[nm - k]), float(np.mean(part[med_idx]))


PASS, HIGH, LOW, NODATA = "Pass", "High", "Low", "NoData"


@dataclass(frozen=True)
class Classification:
    label: str
    p_value: float = math.nan
    lower: float = math.nan
    upper: float = math.nan
    estimate: float = math.nan
    deviation: float = 1.0


def classify(
    canary: FloatArray,
    baseline: FloatArray,
    conf_level: float = 0.98,
    tolerance: float = 0.25,
    allowed_increase: float = 1.0,
) -> Classification:
    """Kayenta's Mann-Whitney metric classification, direction "increase"."""
    x = np.asarray(canary, dtype=np.float64)
    y = np.asarray(baseline, dtype=np.float64)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return Classification(NODATA)
    if x.size == y.size and np.array_equal(np.sort(x), np.sort(y)):
        return Classification(PASS)
    lo_all = min(float(x.min()), float(y.min()))
    if lo_all == max(float(x.max()), float(y.max())):
        return Classification(PASS)
    mean_b = float(y.mean())
    deviation = 1.0 if mean_b == 0.0 else float(x.mean()) / mean_b
    # Fast path: the interval's lower bound D_(k) is > 0 only if fewer than k pairwise
    # differences are <= 0; otherwise the metric cannot be High and the interval is not needed.
    mw = mann_whitney(x, y, conf_level, interval=False)
    k = shift_rank(x.size * y.size, mw.sd_u, conf_level)
    ys = np.sort(y)
    non_positive = int(np.sum(y.size - np.searchsorted(ys, x, side="left")))
    if k < 1 or non_positive >= k:
        return Classification(PASS, mw.p_value, deviation=deviation)
    mw = mann_whitney(x, y, conf_level)
    high = mw.lower > tolerance * abs(mw.estimate) and deviation >= allowed_increase
    return Classification(
        HIGH if high else PASS, mw.p_value, mw.lower, mw.upper, mw.estimate, deviation
    )


def step_series(stream: Stream, step_s: float) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per-step time series of each metric: name → (canary series, baseline series)."""
    k = math.ceil(stream.duration_s / step_s)
    idx = np.minimum((stream.t // step_s).astype(np.int64), k - 1)
    g = idx * 2 + stream.canary.astype(np.int64)
    counts, p99 = grouped_quantile(stream.latency_ms, g, 2 * k, 0.99)
    errors = np.bincount(g, weights=stream.error.astype(np.float64), minlength=2 * k)
    lat_sum = np.bincount(g, weights=stream.latency_ms, minlength=2 * k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = errors / counts
        mean = lat_sum / counts
    return {
        "error-ratio": (ratio[1::2], ratio[0::2]),
        "latency-p99": (p99[1::2], p99[0::2]),
        "latency-mean": (mean[1::2], mean[0::2]),
    }


@dataclass(frozen=True)
class KayentaJudge:
    interval_s: float = 60.0
    step_s: float = 10.0
    conf_level: float = 0.98
    tolerance: float = 0.25
    allowed_increase: float = 1.0
    marginal: float = 75.0
    pass_score: float = 95.0
    metrics: tuple[str, ...] = ("error-ratio", "latency-p99", "latency-mean")

    @property
    def name(self) -> str:
        return f"kayenta-{self.interval_s:g}s"

    def score(self, labels: list[str]) -> float:
        counted = [lab for lab in labels if lab in (PASS, HIGH, LOW)]
        if not counted:
            return 0.0
        return 100.0 * sum(lab == PASS for lab in counted) / len(counted)

    def run(self, stream: Stream) -> Outcome:
        series = step_series(stream, self.step_s)
        steps_per_look = round(self.interval_s / self.step_s)
        looks = int(stream.duration_s // self.interval_s)
        for look in range(1, looks + 1):
            upto = look * steps_per_look
            labels = []
            for metric in self.metrics:
                c, b = series[metric]
                labels.append(
                    classify(
                        c[:upto], b[:upto], self.conf_level, self.tolerance, self.allowed_increase
                    ).label
                )
            score = self.score(labels)
            if score <= self.marginal:
                bad = [m for m, lab in zip(self.metrics, labels, strict=True) if lab != PASS]
                return Outcome(
                    True, look * self.interval_s, f"score {score:.0f}: {', '.join(bad)}", look
                )
        return Outcome(False, looks=looks)

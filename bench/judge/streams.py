"""Simulated request streams of one canary rollout, for the judge benchmark.

A stream is every request seen during one observation window at a fixed canary weight: arrival
time ``t`` (seconds since the start of the window), version (canary or baseline), latency in
milliseconds and HTTP status. Arrivals are Poisson at ``rate_rps``; each request goes to the
canary with probability ``weight``. Baseline latency is lognormal (median 40 ms, p99 150 ms);
baseline errors are Bernoulli (status 500) at ``baseline_error``. A regression starts at t=0
(``onset``); A/A scenarios have no onset.

Everything is vectorised with numpy; one 30-minute stream at 50 requests/s takes a few ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter
from scipy.stats import norm

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

Z99 = float(norm.ppf(0.99))
BASE_MEDIAN_MS = 40.0
BASE_P99_MS = 150.0
BASE_SIGMA = math.log(BASE_P99_MS / BASE_MEDIAN_MS) / Z99  # ≈ 0.568
DURATION_S = 1800.0
RATE_RPS = 50.0
WEIGHT = 0.10
BASELINE_ERROR = 0.01
# How a "p99 +x%" regression is made: this share of log(1+x) goes into the median, the rest
# into sigma, so the canary's p99 rises by exactly x while its body moves a little too.
P99_MEDIAN_SHARE = 0.5


@dataclass(frozen=True)
class Scenario:
    """One family of streams. ``kind`` is "aa" (canary identical) or "ab" (regression)."""

    name: str
    kind: str
    description: str
    rate_rps: float = RATE_RPS
    weight: float = WEIGHT
    duration_s: float = DURATION_S
    baseline_error: float = BASELINE_ERROR
    canary_error: float | None = None  # None: same as the baseline's
    p99_factor: float = 1.0  # canary p99 / baseline p99
    tail_fraction: float = 0.0  # the slowest share of canary requests ...
    tail_factor: float = 1.0  # ... is multiplied by this
    bimodal_fraction: float = 0.0  # this share of canary requests ...
    bimodal_add_ms: float = 0.0  # ... gets this much extra latency
    drift: float = 0.0  # both versions' median and error rate rise by this share over the run
    ar_rho: float = 0.0  # per-second AR(1) coefficient of a shared-per-version latency factor
    ar_sd: float = 0.0  # stationary sd of that factor's log

    @property
    def onset(self) -> float | None:
        return 0.0 if self.kind == "ab" else None


@dataclass(frozen=True)
class Stream:
    """Requests in time order, as parallel arrays."""

    scenario: str
    seed: tuple[int, ...]
    duration_s: float
    onset: float | None
    t: FloatArray
    canary: BoolArray
    latency_ms: FloatArray
    status: IntArray
    meta: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.t.size)

    @property
    def error(self) -> BoolArray:
        return self.status >= 500

    def version(self, i: int) -> str:
        return "canary" if self.canary[i] else "baseline"


def _canary_lognormal(p99_factor: float) -> tuple[float, float]:
    """Median and sigma of the canary's lognormal so that its p99 is ``p99_factor`` × base."""
    if p99_factor == 1.0:
        return BASE_MEDIAN_MS, BASE_SIGMA
    log_shift = math.log(p99_factor)
    median = BASE_MEDIAN_MS * math.exp(P99_MEDIAN_SHARE * log_shift)
    sigma = BASE_SIGMA + (1.0 - P99_MEDIAN_SHARE) * log_shift / Z99
    return median, sigma


def _ar1_factor(rng: np.random.Generator, seconds: int, rho: float, sd: float) -> FloatArray:
    """exp of a stationary AR(1) series, one value per second."""
    eps = rng.standard_normal(seconds)
    x0 = rng.standard_normal() * sd
    innov = sd * math.sqrt(1.0 - rho * rho)
    x, _ = lfilter([innov], [1.0, -rho], eps, zi=[rho * x0])
    return np.asarray(np.exp(x), dtype=np.float64)


def generate(scenario: Scenario, seed: tuple[int, ...]) -> Stream:
    """One stream of ``scenario``; the same ``seed`` gives the same stream."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    s = scenario
    dur = s.duration_s
    n = int(rng.poisson(s.rate_rps * dur))
    t = np.sort(rng.uniform(0.0, dur, n))
    canary = rng.random(n) < s.weight
    ramp = 1.0 + s.drift * t / dur if s.drift else np.ones(n)

    c_median, c_sigma = _canary_lognormal(s.p99_factor)
    median = np.where(canary, c_median, BASE_MEDIAN_MS) * ramp
    sigma = np.where(canary, c_sigma, BASE_SIGMA)
    z = rng.standard_normal(n)
    latency = median * np.exp(sigma * z)
    if s.tail_fraction > 0.0:
        z_tail = float(norm.ppf(1.0 - s.tail_fraction))
        latency = np.where(canary & (z > z_tail), latency * s.tail_factor, latency)
    if s.bimodal_fraction > 0.0:
        hit = canary & (rng.random(n) < s.bimodal_fraction)
        latency = np.where(hit, latency + s.bimodal_add_ms, latency)
    if s.ar_rho > 0.0:
        seconds = math.ceil(dur)
        sec = np.minimum(t.astype(np.int64), seconds - 1)
        f_base = _ar1_factor(rng, seconds, s.ar_rho, s.ar_sd)
        f_can = _ar1_factor(rng, seconds, s.ar_rho, s.ar_sd)
        latency = latency * np.where(canary, f_can[sec], f_base[sec])

    c_err = s.baseline_error if s.canary_error is None else s.canary_error
    p_err = np.where(canary, c_err, s.baseline_error) * ramp
    status = np.where(rng.random(n) < p_err, 500, 200).astype(np.int64)
    return Stream(
        scenario=s.name,
        seed=seed,
        duration_s=dur,
        onset=s.onset,
        t=t,
        canary=canary,
        latency_ms=np.asarray(latency, dtype=np.float64),
        status=status,
        meta={"canary_median_ms": c_median, "canary_sigma": c_sigma},
    )


def _aa(name: str, description: str, **kw: float) -> Scenario:
    return Scenario(name=name, kind="aa", description=description, **kw)


def _ab(name: str, description: str, **kw: float) -> Scenario:
    return Scenario(name=name, kind="ab", description=description, **kw)


SCENARIOS: tuple[Scenario, ...] = (
    _aa("aa", "identical canary"),
    _aa("aa-low-traffic", "identical, 10 rps total (canary ≈ 1 rps)", rate_rps=10.0),
    _aa("aa-zero-errors", "identical, error rate 0 for both", baseline_error=0.0),
    _aa("aa-drift", "identical, median and error rate of both +50% over the run", drift=0.5),
    _aa(
        "aa-autocorr", "identical, AR(1) latency factor ρ=0.9/s per version", ar_rho=0.9, ar_sd=0.2
    ),
    _ab("err-x1.5", "canary error rate ×1.5 (1.5%)", canary_error=0.015),
    _ab("err-x2", "canary error rate ×2 (2%)", canary_error=0.02),
    _ab("err-x5", "canary error rate ×5 (5%)", canary_error=0.05),
    _ab("p99+20%", "canary p99 +20%", p99_factor=1.2),
    _ab("p99+50%", "canary p99 +50%", p99_factor=1.5),
    _ab("p99+100%", "canary p99 +100%", p99_factor=2.0),
    _ab("tail-3%x3", "slowest 3% of canary requests ×3", tail_fraction=0.03, tail_factor=3.0),
    _ab("bimodal", "10% of canary requests +200 ms", bimodal_fraction=0.1, bimodal_add_ms=200.0),
    _ab(
        "low-traffic-err-x5", "10 rps total, canary error rate ×5", rate_rps=10.0, canary_error=0.05
    ),
    _ab("err-2%-vs-0", "canary errors 2%, baseline 0", baseline_error=0.0, canary_error=0.02),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}

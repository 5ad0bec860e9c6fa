"""A/A and A/B simulations of the judge (small enough for the unit suite).

Each run is 10 minutes of Poisson traffic at 20 req/s with a 10% canary share: lognormal
latency (median 50 ms, sigma 0.5) times an AR(1) multiplier per version (phi 0.9 per second,
stationary log-sd 0.1: each version's latency wanders on its own), a slow drift shared by both
versions (latency and error rate +30% over the run), Bernoulli errors (1%), and a CPU gauge
per version (1 sample/s, shared drift, noise). One ``judge`` call on the whole run equals the
sequential procedure looked at after every bucket, because each test's running maximum is
what decides: a run "false-aborts" if any metric ever crossed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from coalmine.analysis.judge import JudgeData, JudgeMetric, JudgeSpec, Request, Sample, judge

ALPHA = 0.01

SPEC = JudgeSpec(
    metrics=(
        JudgeMetric("errors", "ratio", critical=True),
        JudgeMetric("p99", "latency", quantile=0.99, relative_tolerance=1.2, critical=True),
        JudgeMetric("latency", "latency", quantile=None, relative_tolerance=1.2, critical=True),
        JudgeMetric("cpu", "gauge", absolute_tolerance=2.0, critical=True),
    ),
    alpha=ALPHA,
)


def _ar1(rng: np.random.Generator, size: int, phi: float, sd: float) -> np.ndarray:
    eps = rng.normal(0.0, sd * np.sqrt(1 - phi**2), size)
    x = np.empty(size)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, size):
        x[i] = phi * x[i - 1] + eps[i]
    return x


def simulate(
    rng: np.random.Generator,
    *,
    duration: float = 600.0,
    rate: float = 20.0,
    share: float = 0.1,
    p_err: float = 0.01,
    canary_p_err: float | None = None,
    ar_sd: float = 0.1,
    phi: float = 0.9,
    drift: float = 0.3,
    lat_mult: float = 1.0,
    tail: float | None = None,
    bimodal: float | None = None,
    idle: bool = False,
) -> JudgeData:
    n = int(rng.poisson(rate * duration))
    t = np.sort(rng.uniform(0.0, duration, n))
    can = (rng.random(n) < share) & (not idle)
    sec = np.floor(t).astype(int)
    secs = int(duration) + 1
    ar_c, ar_b = _ar1(rng, secs, phi, ar_sd), _ar1(rng, secs, phi, ar_sd)
    shared = 1.0 + drift * t / duration
    lat = np.exp(rng.normal(np.log(50.0), 0.5, n) + np.where(can, ar_c[sec], ar_b[sec])) * shared
    if lat_mult != 1.0:
        lat = np.where(can, lat * lat_mult, lat)
    if tail is not None and can.any():
        cut = np.quantile(lat[can], 1.0 - tail)
        lat = np.where(can & (lat > cut), lat * 3.0, lat)
    if bimodal is not None:
        lat = np.where(can & (rng.random(n) < bimodal), lat + 200.0, lat)
    pc = p_err if canary_p_err is None else canary_p_err
    err = rng.random(n) < np.where(can, pc, p_err) * shared
    requests = tuple(
        Request(float(a), "canary" if c else "baseline", float(x), 500 if e else 200)
        for a, c, x, e in zip(t, can, lat, err, strict=True)
    )
    ts = np.arange(0.0, duration, 1.0)
    samples: list[Sample] = []
    for version in ("baseline",) if idle else ("canary", "baseline"):
        vals = 50.0 + 10.0 * ts / duration + rng.normal(0.0, 5.0, ts.size)
        samples += [
            Sample(float(a), version, "cpu", float(v)) for a, v in zip(ts, vals, strict=True)
        ]
    return JudgeData(requests, tuple(samples))


def run_many(n: int, seed: int, spec: JudgeSpec = SPEC, **kw: Any) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    overall = 0
    per_metric = {m.name: 0 for m in spec.metrics}
    for _ in range(n):
        v = judge(spec, simulate(rng, **kw))
        overall += v.verdict == "fail"
        for m in v.metrics:
            per_metric[m.name] += m.verdict == "fail"
    return {"overall": overall / n, **{k: c / n for k, c in per_metric.items()}}


def test_aa_false_abort_rate_is_below_alpha() -> None:
    # 200 A/A runs, every metric kind, autocorrelated latency and shared drift. With a true
    # false-abort probability of 1%, seeing more than 6 aborts in 200 runs has probability
    # < 0.5%, so the margin rejects a judge that is merely close to alpha... and a broken one.
    rates = run_many(200, seed=11)
    assert rates["overall"] <= ALPHA + 0.02, rates


def test_aa_with_strong_shared_drift_and_no_tolerance_on_errors() -> None:
    # The share-aware ratio test is immune to drift shared by both versions: a tripling of
    # the error rate over the run, with tolerance 1.0, must not abort.
    spec = JudgeSpec(metrics=(JudgeMetric("errors", "ratio", critical=True),), alpha=ALPHA)
    rates = run_many(40, seed=12, spec=spec, drift=2.0, p_err=0.02)
    assert rates["overall"] <= ALPHA + 0.03, rates


@pytest.mark.parametrize(
    ("scenario", "kw", "metric"),
    [
        ("errors x5", {"canary_p_err": 0.05}, "errors"),
        ("p99 +100%", {"lat_mult": 2.0}, "p99"),
        ("tail-only: top 3% x3", {"tail": 0.03}, "p99"),
        ("bimodal: 10% +200 ms", {"bimodal": 0.1}, "p99"),
        ("canary errors, baseline none", {"p_err": 0.0, "canary_p_err": 0.01}, "errors"),
    ],
)
def test_ab_regressions_are_detected(scenario: str, kw: dict[str, Any], metric: str) -> None:
    rates = run_many(25, seed=sum(map(ord, scenario)), **kw)
    assert rates[metric] >= 0.95, (scenario, rates)
    assert rates["overall"] >= 0.95, (scenario, rates)


def test_bimodal_is_detected_by_the_whole_distribution_metric() -> None:
    spec = JudgeSpec(metrics=(SPEC.metrics[2],), alpha=ALPHA)
    rates = run_many(20, seed=5, spec=spec, bimodal=0.1)
    assert rates["latency"] >= 0.95, rates


def test_idle_canary_is_no_data_never_pass() -> None:
    rng = np.random.default_rng(3)
    data = simulate(rng, idle=True)
    for final in (False, True):
        v = judge(SPEC, data, final_look=final)
        assert v.verdict == "no-data", v.reason
        assert all(m.verdict == "no-data" for m in v.metrics)
    spec = replace(SPEC, early_pass=True)
    assert judge(spec, data).verdict == "no-data"

"""The latency test's evidence cap follows how much the baseline wanders on its own."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from coalmine.analysis.judge import judge
from coalmine.analysis.judge import metrics as M
from coalmine.analysis.judge import sequential as seq
from coalmine.analysis.judge.model import JudgeData, JudgeMetric, JudgeSpec, Request
from coalmine.analysis.types import Phase
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.judge import JudgeMetrics
from coalmine.spec.model import Metric


def _stream(
    seed: int,
    *,
    wander_sd: float = 0.0,
    drift: float = 0.0,
    duration: int = 600,
    canary_factor: float = 1.0,
) -> JudgeData:
    """50 req/s, 10% canary, lognormal latency; each version's latency is multiplied by its
    own AR(1) factor (0.9 per second, stationary log sd ``wander_sd``) and both by a shared
    ramp of ``drift`` over the run; the canary's by ``canary_factor`` too."""
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(50 * duration))
    t = np.sort(rng.uniform(0.0, duration, n))
    canary = rng.random(n) < 0.1
    factors = []
    for _ in range(2):
        x = np.empty(duration)
        x[0] = rng.normal(0.0, wander_sd)
        eps = rng.normal(0.0, wander_sd * np.sqrt(1 - 0.81), duration)
        for i in range(1, duration):
            x[i] = 0.9 * x[i - 1] + eps[i]
        factors.append(np.exp(x))
    sec = t.astype(int)
    lat = np.exp(rng.normal(np.log(40.0), 0.57, n))
    lat *= np.where(canary, canary_factor * factors[0][sec], factors[1][sec])
    lat *= 1 + drift * t / duration
    return JudgeData(
        tuple(
            Request(float(a), "canary" if c else "baseline", float(b), 200)
            for a, c, b in zip(t, canary, lat, strict=True)
        )
    )


def _caps(data: JudgeData) -> np.ndarray:
    prep = M.prepare_requests(data, JudgeSpec(metrics=()), 0.0)
    return M.wander_caps(prep, M.cap_windows_of(prep))


WINDOW = JudgeSpec(metrics=()).cap_window_seconds


def test_a_steady_baseline_keeps_the_full_cap() -> None:
    caps = np.concatenate([_caps(_stream(seed))[1:] for seed in range(4)])
    assert np.median(caps) == pytest.approx(M.LATENCY_LOG_CAP)
    assert caps.min() >= 0.6 * M.LATENCY_LOG_CAP


def test_a_shared_slow_drift_is_not_wander() -> None:
    # Both versions slow down by 80% over ten minutes: a trend, not block-to-block wander.
    caps = np.concatenate([_caps(_stream(seed, drift=0.8))[1:] for seed in range(4)])
    assert np.median(caps) == pytest.approx(M.LATENCY_LOG_CAP)


def test_a_wandering_baseline_lowers_the_cap_within_a_minute() -> None:
    for seed in range(4):
        caps = _caps(_stream(seed, wander_sd=0.2))
        assert caps[0] == M.LATENCY_LOG_CAP  # nothing is known before the first window
        assert np.all(caps[3:] < 0.5 * M.LATENCY_LOG_CAP), caps[:10]


def test_each_cap_is_fixed_before_its_window_starts() -> None:
    # Predictable: the cap of window w depends only on data before second 20 w, so cutting
    # the data anywhere inside window w, or changing what follows, leaves it unchanged.
    data = _stream(1, wander_sd=0.2, duration=200)
    full = _caps(data)
    for w in (1, 3, 6):
        start = w * WINDOW
        cut = JudgeData(tuple(r for r in data.requests if r.t < start + 7))
        assert np.allclose(_caps(cut)[: w + 1], full[: w + 1])
        slower = JudgeData(
            tuple(
                r if r.t < start else Request(r.t, r.version, 9 * r.latency_ms, 200)
                for r in data.requests
            )
        )
        assert np.allclose(_caps(slower)[: w + 1], full[: w + 1])


def test_per_window_caps_by_hand() -> None:
    # Window 0 capped at 1.5 (sums 1, 2 -> 1, 1.5); window 1 at 0.5 (2 -> 0.5).
    c = np.array([[1.0, 1.0, 2.0, 1.0]])
    out = seq.cap_windows(c, np.array([0, 0, 1, 1]), np.array([1.5, 0.5]))
    assert np.allclose(out, [[1.0, 1.5, 2.0, 2.0]])
    with pytest.raises(ValueError, match="one cap per window"):
        seq.cap_windows(c, np.array([0, 0, 1, 2]), np.array([1.5, 0.5]))
    with pytest.raises(ValueError, match=">= 0"):
        seq.cap_windows(c, np.array([0, 0, 1, 1]), np.array([1.5, -0.5]))


def test_wandering_versions_rarely_abort_while_a_fixed_cap_would() -> None:
    # Identical versions that each wander (log sd 0.3, correlation time ~10 s) and no
    # tolerance: the canary is often locally slower than the baseline, for tens of seconds
    # at a time. With the cap fixed whatever the baseline does, about one run in five aborts.
    spec = JudgeSpec(metrics=(JudgeMetric("latency", "latency", critical=True),), alpha=0.01)
    runs = [_stream(100 + seed, wander_sd=0.3) for seed in range(40)]

    def aborts() -> int:
        return sum(judge(spec, d, final_look=True).verdict == "fail" for d in runs)

    adaptive = aborts()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "WANDER_HALF_CAP_VAR", np.inf)  # a fixed cap, whatever the baseline does
        fixed = aborts()
    assert adaptive <= 2 and fixed >= adaptive + 6, (adaptive, fixed)


def test_a_real_slowdown_is_still_caught_on_a_wandering_service() -> None:
    # A slowdown larger than the service's own wander is still caught: a canary 2x slower
    # throughout fails on every run (within 60-220 s on these seeds).
    spec = JudgeSpec(
        metrics=(JudgeMetric("latency", "latency", relative_tolerance=1.2, critical=True),),
        alpha=0.01,
    )
    for seed in range(6):
        data = _stream(200 + seed, wander_sd=0.2, canary_factor=2.0)
        assert judge(spec, data, final_look=True).verdict == "fail", seed


def test_the_verdict_says_when_wander_lowered_the_cap() -> None:
    spec = JudgeSpec(metrics=(JudgeMetric("latency", "latency", critical=True),), alpha=0.01)
    wandering = judge(spec, _stream(3, wander_sd=0.2, duration=120)).metrics[0].reason
    steady = judge(spec, _stream(3, duration=120)).metrics[0].reason
    assert "wanders on its own" in wandering and "window adds at most e^0." in wandering
    assert "wanders" not in steady


def test_the_demo_s_time_scale_shortens_the_cap_window() -> None:
    # A canary 3x slower from the start, looked at after 12 s. At real time the cap allows
    # e^3 in the first 20-s window only, not enough to fail; the demo runs durations 10x
    # faster, so its 2-s windows let the evidence through within the 12 s.
    data = _stream(5, duration=12, canary_factor=3.0)
    config = {"metrics": [{"name": "latency", "kind": "latency", "critical": True}]}
    metric = Metric(name="judge", provider={"plugin": {"coalmine/judge": config}}, interval=1.0)

    async def source(since: float, now: float) -> JudgeData:
        return data

    def phase(time_scale: float) -> Phase | None:
        context = MeasureContext(
            rollout="shop", service="shop", now=12.0, time_scale=time_scale, run_started_at=0.0
        )
        return asyncio.run(JudgeMetrics(source).measure(metric, context)).phase

    assert phase(1.0) == Phase.RUNNING
    assert phase(10.0) == Phase.FAILED

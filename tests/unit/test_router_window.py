"""Measurements over a sliding window: exact quantiles, status classes, pruning, records."""

from __future__ import annotations

import math
import random

import pytest

from coalmine.clock import FakeClock
from coalmine.traffic.window import MeasurementWindow, quantile, quantile_key


def reference_quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, written independently of the module."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    below = ordered[math.floor(h)]
    above = ordered[math.ceil(h)]
    return below + (h - math.floor(h)) * (above - below)


def test_quantiles_are_exact() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    window = MeasurementWindow(now=clock.now)
    latencies = [rng.lognormvariate(3, 1) for _ in range(5001)]
    for latency in latencies:
        clock.advance(0.001)
        window.record("canary", clock.now(), latency, 200)
    stats = window.stats(60, (0.5, 0.9, 0.99, 0.999, 0.0, 1.0)).versions["canary"]
    for q in (0.5, 0.9, 0.99, 0.999, 0.0, 1.0):
        assert stats.latency_ms[quantile_key(q)] == pytest.approx(reference_quantile(latencies, q))
    assert stats.latency_ms["p0"] == min(latencies) and stats.latency_ms["p100"] == max(latencies)
    assert stats.requests == 5001
    assert stats.request_rate == pytest.approx(5001 / 60)


def test_quantile_keys_and_small_samples() -> None:
    assert [quantile_key(q) for q in (0.5, 0.9, 0.99, 0.999, 0.95)] == [
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p95",
    ]
    assert quantile([4.0], 0.99) == 4.0
    assert quantile([1.0, 2.0], 0.5) == 1.5
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_no_traffic_has_no_error_rate() -> None:
    stats = MeasurementWindow(now=FakeClock().now).stats(60).versions
    for version in ("stable", "canary"):
        assert stats[version].requests == 0
        assert stats[version].error_rate is None
        assert stats[version].latency_ms == {}
        assert stats[version].last_request_at is None


def test_status_classes_and_errors() -> None:
    clock = FakeClock()
    window = MeasurementWindow(now=clock.now)
    for code in (200, 201, 302, 404, 500, 502, 504, 200):
        window.record("stable", clock.now(), 1.0, code)
    s = window.stats(10).versions["stable"]
    assert s.status == {"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 3}
    assert s.errors == 3 and s.error_rate == pytest.approx(3 / 8)
    assert window.stats(10).versions["canary"].requests == 0


def test_the_window_slides() -> None:
    clock = FakeClock()
    window = MeasurementWindow(now=clock.now)
    window.record("canary", clock.now(), 100.0, 500)
    clock.advance(30)
    window.record("canary", clock.now(), 1.0, 200)
    assert window.stats(60).versions["canary"].requests == 2
    recent = window.stats(10).versions["canary"]
    assert recent.requests == 1 and recent.error_rate == 0.0
    assert recent.last_request_at == clock.now()
    clock.advance(100)
    gone = window.stats(60).versions["canary"]
    assert gone.requests == 0 and gone.last_request_at == clock.now() - 100


def test_retention_and_cap_bound_memory() -> None:
    clock = FakeClock()
    window = MeasurementWindow(retention_s=10, max_samples=100, now=clock.now)
    for _ in range(50):
        window.record("stable", clock.now(), 1.0, 200)
        clock.advance(1)
    assert len(window.records(0, 1000)) == 11  # older than the retention (10 s): pruned
    for _ in range(500):
        window.record("stable", clock.now(), 1.0, 200)
    assert len(window.records(0, 1000)) == 100  # the hard cap


def test_records_are_time_ordered_across_versions() -> None:
    clock = FakeClock()
    window = MeasurementWindow(now=clock.now)
    for i in range(10):
        clock.advance(1)
        window.record("canary" if i % 3 == 0 else "stable", clock.now(), float(i), 200 + i)
    records = window.records(since=clock.now() - 5.5, limit=1000)
    assert [r["latency_ms"] for r in records] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert records[2] == {
        "t": clock.now() - 3,
        "version": "canary",
        "latency_ms": 6.0,
        "status": 206,
    }
    assert len(window.records(since=0, limit=3)) == 3
    assert window.records(since=0, limit=3)[0]["latency_ms"] == 0.0  # oldest first


def test_invalid_window() -> None:
    with pytest.raises(ValueError):
        MeasurementWindow().stats(0)

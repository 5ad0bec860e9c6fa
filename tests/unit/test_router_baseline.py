"""The optional baseline cohort: assignment, configuration, snapshots and the metric plug-ins'
view of it (the router itself is exercised in tests/integration/test_router_baseline.py)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from coalmine.analysis.types import Phase
from coalmine.errors import SpecError
from coalmine.metrics.judge import RouterRequests
from coalmine.metrics.router import evaluate
from coalmine.rollout.snapshot import service_from_dict
from coalmine.spec.config import load_config
from coalmine.spec.model import (
    HeaderMatch,
    RouterSettings,
    ServiceConfig,
    Tenancy,
    Upstream,
)
from coalmine.spec.resolve import check_router_config
from coalmine.spec.schema import json_schema
from coalmine.traffic.assign import bucket, choose_version
from coalmine.traffic.base import HeaderRoute, Routing, Stats, VersionStats

TENANCY = Tenancy(header="X-Tenant", cookie="tenant", test_tenants=("tester",))
OVERRIDE = "X-Coalmine-Version"


def choose(
    routing: Routing, headers: dict[str, str] | None = None, *, baseline: bool = True
) -> tuple[str, str]:
    return choose_version(
        routing, TENANCY, headers or {}, {}, "10.0.0.1", OVERRIDE, baseline=baseline
    )


def tenant(routing: Routing, key: str, *, baseline: bool = True) -> str:
    return choose(routing, {"X-Tenant": key}, baseline=baseline)[0]


# --------------------------------------------------------------------------- assignment


@pytest.mark.parametrize("weight", [1, 5, 10, 25, 40, 50, 60, 75, 90, 99])
def test_the_baseline_gets_the_canary_share_up_to_what_is_left(weight: int) -> None:
    rng = random.Random(1000 + weight)
    routing = Routing(canary_weight=weight)
    keys = [f"tenant-{rng.getrandbits(64):x}" for _ in range(20_000)]
    chosen = [tenant(routing, k) for k in keys]
    canary = chosen.count("canary") / len(keys)
    baseline = chosen.count("baseline") / len(keys)
    assert abs(canary - weight / 100) <= 0.02
    assert abs(baseline - min(weight, 100 - weight) / 100) <= 0.02
    assert chosen.count("stable") + chosen.count("canary") + chosen.count("baseline") == len(keys)


@given(key=st.text(min_size=1), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_canary_stickiness_is_monotone_with_a_baseline(key: str, w1: int, w2: int) -> None:
    low, high = sorted((w1, w2))
    if tenant(Routing(canary_weight=low), key) == "canary":
        assert tenant(Routing(canary_weight=high), key) == "canary"


@given(key=st.text(min_size=1), weight=st.integers(0, 100))
def test_the_baseline_never_changes_who_is_on_the_canary(key: str, weight: int) -> None:
    routing = Routing(canary_weight=weight)
    with_baseline = tenant(routing, key)
    without = tenant(routing, key, baseline=False)
    assert (with_baseline == "canary") == (without == "canary")
    if with_baseline == "baseline":  # the next slice of the same size, nothing else
        assert weight * 100 <= bucket(key) < 2 * weight * 100
        assert without == "stable"


def test_weight_0_puts_nobody_on_the_baseline_or_the_canary() -> None:
    for i in range(5000):
        assert choose(Routing(canary_weight=0), {"X-Tenant": f"t{i}"}) == ("stable", "weight")
        assert choose(Routing(canary_weight=100), {"X-Tenant": f"t{i}"}) == ("canary", "weight")
    assert choose(Routing(canary_weight=0), {"X-Tenant": "tester"}) == ("stable", "weight")


def test_override_header_pins_the_baseline_only_when_there_is_one() -> None:
    routing = Routing(canary_weight=0)
    assert choose(routing, {OVERRIDE: " Baseline "}) == ("baseline", "override")
    assert choose(routing, {OVERRIDE: "baseline"}, baseline=False) == ("stable", "weight")
    assert choose(routing, {OVERRIDE: "canary"}) == ("canary", "override")
    assert choose(routing, {OVERRIDE: "stable"}) == ("stable", "override")


def test_header_routes_and_test_tenants_go_to_the_canary_only() -> None:
    # a tenant whose bucket is in the baseline's slice at weight 20
    key = next(f"k{i}" for i in range(10_000) if 2000 <= bucket(f"k{i}") < 4000)
    routing = Routing(
        canary_weight=20,
        header_routes=(HeaderRoute("beta", (HeaderMatch("X-Beta", "exact", "1"),)),),
    )
    assert tenant(routing, key) == "baseline"
    assert choose(routing, {"X-Tenant": key, "X-Beta": "1"}) == ("canary", "header-route")
    assert choose(routing, {"X-Tenant": "tester"}) == ("canary", "test-tenant")
    only_routes = Routing(canary_weight=0, header_routes=routing.header_routes)
    assert choose(only_routes, {"X-Tenant": key}) == ("stable", "weight")


# --------------------------------------------------------------------------- coalmine.yaml

BASE = """\
environments:
  dev:
    services:
      shop:
        stable: {url: "http://127.0.0.1:9001", version: v1}
        canary: {url: "http://127.0.0.1:9002", version: v2}
"""


def load(tmp_path: Path, text: str) -> ServiceConfig:
    path = tmp_path / "coalmine.yaml"
    path.write_text(text)
    return load_config(path, env={}).environment().services["shop"]


def error_of(tmp_path: Path, text: str) -> SpecError:
    path = tmp_path / "coalmine.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_config(path, env={})
    assert info.value.file == str(path)
    return info.value


def test_baseline_is_optional_and_parsed_like_the_others(tmp_path: Path) -> None:
    assert load(tmp_path, BASE).baseline is None
    text = (
        BASE + "        baseline:\n          url: http://127.0.0.1:9003/\n          version: v1\n"
    )
    assert load(tmp_path, text).baseline == Upstream("http://127.0.0.1:9003", "v1")
    assert load(tmp_path, BASE + '        baseline: {url: "http://b:9"}\n').baseline == Upstream(
        "http://b:9"
    )


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('        baseline: {url: "http://b"}\n', 7, "has no port"),
        ('        baseline: {url: "http://b:9/x"}\n', 7, "must not have a path"),
        ("        baseline: {version: v1}\n", 7, "missing required field 'url'"),
        ("        baseline:\n          url: http://b:9\n          versoin: v1\n", 9, "versoin"),
        ('        baseline: {url: "http://127.0.0.1:9001"}\n', 7, "stable's URL"),
        ('        baseline:\n          url: "http://127.0.0.1:9002"\n', 8, "canary's URL"),
        ("        baselin: {url: http://b:9}\n", 7, "baselin"),
    ],
)
def test_bad_baselines_point_at_file_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    err = error_of(tmp_path, BASE + text)
    assert err.line == line, err
    assert needle in err.message + (err.hint or ""), err


def test_the_schema_describes_the_baseline() -> None:
    validator = Draft202012Validator(json_schema("config"))

    def config(baseline: Any) -> dict[str, Any]:
        service = {"stable": {"url": "http://a:1"}, "canary": {"url": "http://b:2"}}
        return {"environments": {"dev": {"services": {"shop": {**service, "baseline": baseline}}}}}

    assert validator.is_valid(config({"url": "http://c:3", "version": "v1"}))
    assert not validator.is_valid(config({"version": "v1"}))
    assert not validator.is_valid(config({"url": "http://c:3", "extra": 1}))


# --------------------------------------------------------------------------- snapshots


def test_a_snapshot_rebuilds_the_baseline() -> None:
    service = ServiceConfig(
        name="shop",
        stable=Upstream("http://127.0.0.1:9001", "v1"),
        canary=Upstream("http://127.0.0.1:9002", "v2"),
        tenancy=TENANCY,
        router=RouterSettings(state_file="/tmp/state.json"),
        baseline=Upstream("http://127.0.0.1:9003", "v1"),
    )
    assert service_from_dict(asdict(service)) == service
    without = ServiceConfig("shop", service.stable, service.canary)
    assert service_from_dict(asdict(without)) == without
    old = asdict(without)
    del old["baseline"]  # snapshots written before the baseline existed
    assert service_from_dict(old) == without


# --------------------------------------------------------------------------- the judge's data


class FakeRouter:
    """Answers ``records(since, limit)`` from a list, like the router's admin API."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.rows = records
        self.calls: list[float] = []

    async def records(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        self.calls.append(since)
        return [r for r in self.rows if r["t"] > since][:limit]


def row(t: float, version: str, status: int = 200) -> dict[str, Any]:
    return {"t": t, "version": version, "latency_ms": 10.0 + t, "status": status}


def judged(source: RouterRequests, since: float = 0.0) -> list[tuple[float, str]]:
    data = asyncio.run(source(since, 1e9))
    return [(r.t, r.version) for r in data.requests]


def test_with_a_baseline_cohort_stable_records_are_left_out() -> None:
    router = FakeRouter(
        [row(1, "stable", 500), row(2, "canary"), row(3, "baseline"), row(4, "stable")]
    )
    source = RouterRequests(router)  # type: ignore[arg-type]
    assert judged(source) == [(2, "canary"), (3, "baseline")]
    data = asyncio.run(source(0.0, 1e9))
    assert [r.status for r in data.requests] == [200, 200]
    assert [r.latency_ms for r in data.requests] == [12.0, 13.0]


def test_without_a_baseline_cohort_stable_is_the_baseline() -> None:
    source = RouterRequests(FakeRouter([row(1, "stable"), row(2, "canary"), row(3, "stable")]))  # type: ignore[arg-type]
    assert judged(source) == [(1, "baseline"), (2, "canary"), (3, "baseline")]


def test_stable_is_dropped_once_the_baseline_shows_up_and_fetching_stays_incremental() -> None:
    router = FakeRouter([row(1, "stable"), row(2, "canary")])
    source = RouterRequests(router)  # type: ignore[arg-type]
    assert judged(source) == [(1, "baseline"), (2, "canary")]
    router.rows += [row(3, "baseline"), row(4, "stable"), row(5, "canary")]
    assert judged(source) == [(2, "canary"), (3, "baseline"), (5, "canary")]
    assert router.calls == [0.0, 2]  # the second look asked only for what was new


# --------------------------------------------------------------------------- coalmine/router


def stats(**requests: int) -> Stats:
    return Stats(
        window_s=60.0,
        versions={
            name: VersionStats(requests=n, errors=n // 10, error_rate=0.1 if n else None)
            for name, n in requests.items()
        },
    )


def test_the_router_plugin_reports_the_baseline_when_there_is_one() -> None:
    both = evaluate(stats(stable=100, canary=50), "error-rate", 0.99, 20, None)
    assert both.value == {"canary": 0.1, "stable": 0.1}
    three = evaluate(stats(stable=100, canary=50, baseline=40), "error-rate", 0.99, 20, None)
    assert three.value == {"canary": 0.1, "stable": 0.1, "baseline": 0.1}
    assert three.details["baseline"]["requests"] == 40
    one = evaluate(stats(stable=100, canary=50, baseline=40), "requests", 0.99, 20, "baseline")
    assert one.value == 40.0


def test_version_baseline_without_a_baseline_cohort_is_an_error() -> None:
    result = evaluate(stats(stable=100, canary=50), "error-rate", 0.99, 20, "baseline")
    assert result.phase == Phase.ERROR
    assert "no baseline cohort" in (result.message or "")


def test_a_baseline_short_of_data_holds_up_only_conditions_that_use_it() -> None:
    window = stats(stable=100, canary=50, baseline=3)
    used = evaluate(window, "error-rate", 0.99, 20, None, need_baseline=True)
    assert used.phase == Phase.INCONCLUSIVE
    assert "baseline had 3 requests" in (used.message or "")
    unused = evaluate(window, "error-rate", 0.99, 20, None, need_baseline=False)
    assert unused.phase != Phase.INCONCLUSIVE
    assert unused.value == {"canary": 0.1, "stable": 0.1, "baseline": None}


def test_templates_may_ask_for_the_baseline() -> None:
    check_router_config({"query": "latency", "version": "baseline"})
    with pytest.raises(SpecError) as info:
        check_router_config({"query": "latency", "version": "baselin"})
    assert info.value.hint == "use stable, canary or baseline"


class FakeStatsRouter:
    def __init__(self, window: Stats) -> None:
        self.window = window

    async def stats(self, window_s: float, quantiles: tuple[float, ...] = (0.5, 0.99)) -> Stats:
        return self.window


@pytest.mark.parametrize(
    ("condition", "phase"),
    [
        ("result.canary <= 2 * result.stable", None),
        ("result.canary <= 2 * result.baseline", Phase.INCONCLUSIVE),
    ],
)
def test_measure_waits_for_the_baseline_only_when_a_condition_uses_it(
    condition: str, phase: Phase | None
) -> None:
    from coalmine.metrics.base import MeasureContext
    from coalmine.metrics.router import RouterMetrics
    from coalmine.spec.model import Metric

    metric = Metric(
        name="errors",
        provider={"plugin": {"coalmine/router": {"query": "error-rate"}}},
        success_condition=condition,
    )
    plugin = RouterMetrics(FakeStatsRouter(stats(stable=100, canary=50, baseline=0)))  # type: ignore[arg-type]
    result = asyncio.run(plugin.measure(metric, MeasureContext("r", "shop", now=0.0)))
    assert result.phase == phase

"""The judge's gauge metrics read from a real Prometheus that scrapes two tiny apps, one per
version, each exposing gauges with a ``version`` label in Prometheus' text format.

``demo_cpu_equal`` has the same value on both versions; ``demo_cpu_high`` is HIGH_FACTOR times
higher on the canary. The judge must fail the canary on the second and not on the first.

Timing: Prometheus scrapes every second. The gauge test needs about 15 paired buckets at
alpha 0.05 before a constant regression crosses its threshold; 15 s of 1-s buckets is too slow
for this suite, so the judge uses ``gaugeBucketSeconds: 0.25``: the range query's 0.25-s step
re-reads the latest scrape (Prometheus' lookback), four points per scrape. With constant gauges
that changes nothing but the count of buckets; in production the bucket should be at least the
scrape interval (docs/providers.md says so).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from coalmine.analysis.types import Phase
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.judge import JudgeMetrics, LiveJudgeMetrics, PrometheusGauges
from coalmine.spec.model import Metric
from tests.fixtures.prometheus import PrometheusHandle

T = TypeVar("T")
STABLE_CPU = 0.4
HIGH_FACTOR = 3.0
BUCKET = 0.25
DATA_SECONDS = 5.5


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def gauge_app(version: str, equal: float, high: float) -> web.Application:
    registry = CollectorRegistry()
    Gauge("demo_cpu_equal", "same on both versions", ["version"], registry=registry).labels(
        version
    ).set(equal)
    Gauge("demo_cpu_high", "higher on the canary", ["version"], registry=registry).labels(
        version
    ).set(high)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"127.0.0.1:{port}"


@dataclass
class Scraped:
    prometheus: PrometheusHandle
    since: float
    now: float


@pytest.fixture(scope="module")
def scraped(start_prometheus_module: Any) -> Iterator[Scraped]:
    loop = LoopThread()
    runners: list[web.AppRunner] = []
    try:
        targets = []
        for version, high in (("canary", STABLE_CPU * HIGH_FACTOR), ("stable", STABLE_CPU)):
            runner, target = loop.run(serve(gauge_app(version, STABLE_CPU, high)))
            runners.append(runner)
            targets.append(target)
        prom = start_prometheus_module(targets)
        prom.wait_for("count(demo_cpu_high) == 2")
        since = time.time()
        time.sleep(DATA_SECONDS)
        yield Scraped(prom, since, time.time())
    finally:
        for runner in runners:
            loop.run(runner.cleanup())
        loop.close()


def judge_config(address: str, gauge: str) -> dict[str, Any]:
    return {
        "alpha": 0.05,
        "gaugeBucketSeconds": BUCKET,
        "prometheus": {"address": address, "timeout": 5},
        "metrics": [
            {
                "name": "cpu",
                "kind": "gauge",
                "query": f'avg({gauge}{{version="{{{{version}}}}"}})',
                "relativeTolerance": 1.2,
                "critical": True,
                "minSamples": 5,
            }
        ],
    }


def metric(config: dict[str, Any]) -> Metric:
    return Metric(name="judge", provider={"plugin": {"coalmine/judge": config}}, interval=1.0)


async def no_requests(since: float, now: float) -> Any:
    raise AssertionError("a gauge-only judge must not read the router")


def measure(scraped: Scraped, config: dict[str, Any], final_look: bool = False) -> Any:
    context = MeasureContext(
        rollout="shop",
        service="shop",
        now=scraped.now,
        run_started_at=scraped.since,
        final_look=final_look,
    )
    return asyncio.run(LiveJudgeMetrics(no_requests).measure(metric(config), context))


def test_samples_are_the_scraped_values_on_one_grid_per_version(scraped: Scraped) -> None:
    config = judge_config(scraped.prometheus.url, "demo_cpu_high")
    source = PrometheusGauges.from_config(config)
    assert source is not None
    data = asyncio.run(source(scraped.since, scraped.now))
    canary = [s for s in data.samples if s.version == "canary"]
    baseline = [s for s in data.samples if s.version == "baseline"]
    assert len(canary) >= 0.9 * DATA_SECONDS / BUCKET
    assert [s.t for s in canary] == [s.t for s in baseline]  # paired on the same timestamps
    assert [s.value for s in canary] == pytest.approx([STABLE_CPU * HIGH_FACTOR] * len(canary))
    assert [s.value for s in baseline] == pytest.approx([STABLE_CPU] * len(baseline))
    assert {s.metric for s in data.samples} == {"cpu"}


def test_a_canary_gauge_over_tolerance_fails_the_judge(scraped: Scraped) -> None:
    result = measure(scraped, judge_config(scraped.prometheus.url, "demo_cpu_high"))
    assert result.phase == Phase.FAILED, result.message
    (verdict,) = result.details["metrics"]
    assert verdict["verdict"] == "fail"
    assert verdict["canary"] == pytest.approx(STABLE_CPU * HIGH_FACTOR)
    assert verdict["baseline"] == pytest.approx(STABLE_CPU)


def test_an_equal_gauge_continues_and_passes_at_the_final_look(scraped: Scraped) -> None:
    config = judge_config(scraped.prometheus.url, "demo_cpu_equal")
    interim = measure(scraped, config)
    assert interim.phase == Phase.RUNNING, interim.message
    assert interim.details["verdict"] == "continue"
    final = measure(scraped, config, final_look=True)
    assert final.phase == Phase.SUCCESSFUL, final.message


def test_a_query_without_series_is_no_data(scraped: Scraped) -> None:
    config = judge_config(scraped.prometheus.url, "demo_not_exported")
    interim = measure(scraped, config)
    assert interim.phase == Phase.RUNNING and interim.details["verdict"] == "no-data"
    final = measure(scraped, config, final_look=True)
    assert final.phase == Phase.INCONCLUSIVE, final.message


def test_gauges_and_router_requests_are_judged_together(scraped: Scraped) -> None:
    from coalmine.analysis.judge import JudgeData

    async def no_traffic(since: float, now: float) -> JudgeData:
        return JudgeData()

    config = judge_config(scraped.prometheus.url, "demo_cpu_high")
    config["metrics"].append({"name": "errors", "kind": "ratio", "minSamples": 5})
    context = MeasureContext(
        rollout="shop", service="shop", now=scraped.now, run_started_at=scraped.since
    )
    result = asyncio.run(LiveJudgeMetrics(no_traffic).measure(metric(config), context))
    assert result.phase == Phase.FAILED, result.message  # cpu is critical
    by_name = {m["name"]: m["verdict"] for m in result.details["metrics"]}
    assert by_name == {"cpu": "fail", "errors": "no-data"}
    # The plain JudgeMetrics (backtests) never calls Prometheus: no gauge samples, no data.
    plain = asyncio.run(JudgeMetrics(no_traffic).measure(metric(config), context))
    assert {m["verdict"] for m in plain.details["metrics"]} == {"no-data"}

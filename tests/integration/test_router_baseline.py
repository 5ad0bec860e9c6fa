"""The baseline cohort through a real router in front of three real upstreams."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from coalmine.analysis.types import Phase
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.judge import JudgeMetrics, RouterRequests
from coalmine.metrics.router import RouterMetrics
from coalmine.spec.model import Metric
from coalmine.traffic.client import RouterClient
from tests.integration.test_router_support import rig


async def put(session: aiohttp.ClientSession, admin: str, doc: dict) -> int:
    async with session.put(f"http://{admin}/admin/routing", json=doc) as resp:
        await resp.read()
        return resp.status


async def served_by(session: aiohttp.ClientSession, url: str, **kwargs: object) -> str:
    async with session.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        body = await resp.text()
        version = resp.headers["X-Coalmine-Version"]
        assert resp.status == 200 and body == version  # answered by that very upstream
        return version


def test_three_way_split_with_stats_records_and_metrics() -> None:
    async def body() -> None:
        async with rig(baseline=True) as r, aiohttp.ClientSession() as s:
            assert r.baseline is not None
            assert await put(s, r.admin, {"canary_weight": 30, "generation": 1}) == 200
            async with s.get(f"http://{r.admin}/admin/routing") as resp:
                info = await resp.json()
            assert info["baseline_url"] == r.baseline.url
            started = time.time() - 0.01
            tenants = [f"tenant-{i}" for i in range(1500)]
            first = {t: await served_by(s, r.url + "/", headers={"X-Tenant": t}) for t in tenants}
            counts = {v: list(first.values()).count(v) for v in ("stable", "canary", "baseline")}
            assert abs(counts["canary"] / 1500 - 0.30) < 0.04
            assert abs(counts["baseline"] / 1500 - 0.30) < 0.04
            assert abs(counts["stable"] / 1500 - 0.40) < 0.04
            assert len(r.baseline.hits) == counts["baseline"]
            assert len(r.canary.hits) == counts["canary"]
            assert len(r.stable.hits) == counts["stable"]
            for t in tenants[:200]:  # sticky
                assert await served_by(s, r.url + "/", headers={"X-Tenant": t}) == first[t]
            pinned = await served_by(s, r.url + "/", headers={"X-Coalmine-Version": "baseline"})
            assert pinned == "baseline"
            async with s.get(f"http://{r.admin}/admin/stats?window=60") as resp:
                stats = (await resp.json())["versions"]
            async with s.get(f"http://{r.admin}/admin/records?since={started}") as resp:
                records = (await resp.json())["records"]
            async with s.get(f"http://{r.admin}/metrics") as resp:
                text = await resp.text()

            # a rollback empties the baseline as well
            before = len(r.baseline.hits), len(r.canary.hits)
            assert await put(s, r.admin, {"canary_weight": 0, "generation": 2}) == 200
            for t in tenants[:300]:
                assert await served_by(s, r.url + "/", headers={"X-Tenant": t}) == "stable"
            assert (len(r.baseline.hits), len(r.canary.hits)) == before

        assert set(stats) == {"stable", "canary", "baseline"}
        extra = 1 + sum(first[t] == "baseline" for t in tenants[:200])
        assert stats["baseline"]["requests"] == counts["baseline"] + extra
        assert stats["baseline"]["status"]["2xx"] == stats["baseline"]["requests"]
        assert stats["baseline"]["latency_ms"]["p99"] > 0
        by_version = [rec["version"] for rec in records]
        assert by_version.count("baseline") == stats["baseline"]["requests"]
        assert by_version.count("canary") == stats["canary"]["requests"]
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        key = (
            "coalmine_router_requests_total",
            (("code_class", "2xx"), ("service", "shop"), ("version", "baseline")),
        )
        assert samples[key] == stats["baseline"]["requests"]
        refused = (
            "coalmine_router_upstream_errors_total",
            (("reason", "refused"), ("service", "shop"), ("version", "baseline")),
        )
        assert samples[refused] == 0

    asyncio.run(body())


def test_without_a_baseline_nothing_changes() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            await put(s, r.admin, {"canary_weight": 50, "generation": 1})
            pinned = [
                await served_by(
                    s,
                    r.url + "/",
                    headers={"X-Coalmine-Version": "baseline", "X-Tenant": f"t{i}"},
                )
                for i in range(60)
            ]
            assert set(pinned) == {"stable", "canary"}  # not an override: the weight decides
            async with s.get(f"http://{r.admin}/admin/stats?window=60") as resp:
                stats = (await resp.json())["versions"]
            async with s.get(f"http://{r.admin}/admin/routing") as resp:
                info = await resp.json()
            async with s.get(f"http://{r.admin}/metrics") as resp:
                text = await resp.text()
        assert set(stats) == {"stable", "canary"}
        assert "baseline_url" not in info
        assert 'version="baseline"' not in text

    asyncio.run(body())


def test_the_plugins_read_the_baseline_through_the_admin_api() -> None:
    async def body() -> None:
        async with rig(baseline=True) as r, aiohttp.ClientSession() as s:
            started = time.time() - 0.01
            for version, n, path in (
                ("stable", 150, "/status?code=500"),  # the old stable is in a bad way...
                ("stable", 150, "/"),
                ("baseline", 200, "/"),  # ...its fresh copy is not
                ("canary", 60, "/status?code=500"),
                ("canary", 140, "/"),
            ):
                for _ in range(n):
                    headers = {"X-Coalmine-Version": version}
                    async with s.get(r.url + path, headers=headers) as resp:
                        await resp.read()
            client = RouterClient(r.admin)
            try:
                context = MeasureContext(
                    rollout="shop", service="shop", now=time.time(), run_started_at=started
                )
                plugin = {"coalmine/router": {"query": "error-rate"}}
                metric = Metric(
                    name="errors",
                    provider={"plugin": plugin},
                    success_condition="result.canary <= 2 * result.baseline + 0.01",
                )
                measured = await RouterMetrics(client).measure(metric, context)
                source = RouterRequests(client)
                data = await source(started, time.time())
                judge = {
                    "alpha": 0.01,
                    "metrics": [
                        {
                            "name": "error-rate",
                            "kind": "ratio",
                            "relativeTolerance": 2,
                            "critical": True,
                            "minSamples": 20,
                        }
                    ],
                }
                judge_metric = Metric(name="judge", provider={"plugin": {"coalmine/judge": judge}})
                verdict = await JudgeMetrics(source).measure(judge_metric, context)
            finally:
                await client.aclose()
        assert measured.value == {"canary": 0.3, "stable": 0.5, "baseline": 0.0}
        versions = [req.version for req in data.requests]
        assert versions.count("baseline") == 200  # the fresh copy only: stable's 300 left out
        assert versions.count("canary") == 200
        # 30 % errors against a clean baseline: against stable (50 %) it would have passed
        assert verdict.phase == Phase.FAILED, verdict.message

    asyncio.run(body())


def test_the_demo_can_start_a_baseline_process(tmp_path: Path) -> None:
    from coalmine.demo.processes import ProcessGroup
    from coalmine.demo.run import SERVICE, start_services

    (tmp_path / "logs").mkdir()
    with ProcessGroup(tmp_path / "logs") as group:
        services = start_services(group, tmp_path, versions=("v1", "v2"), baseline=True)
        service = services.environment.services[SERVICE]
        assert service.baseline is not None and service.baseline.version == "v1"
        assert service.baseline.url == f"http://127.0.0.1:{services.baseline_port}"
        with httpx.Client(timeout=5.0) as http:
            pinned = http.get(
                f"http://{service.router.listen}/healthz",
                headers={"X-Coalmine-Version": "baseline"},
            )
            stats = http.get(f"http://{service.router.admin}/admin/stats").json()
    assert pinned.status_code == 200
    assert pinned.headers["X-Coalmine-Version"] == "baseline"
    assert pinned.json() == {"ok": True, "version": "v1"}
    assert stats["versions"]["baseline"]["requests"] == 1


def test_the_default_demo_has_no_baseline(tmp_path: Path) -> None:
    from coalmine.demo.run import write_config
    from coalmine.spec.config import load_config

    plain = load_config(write_config(tmp_path, 9001, 9002), env={})
    assert plain.environment("demo").services["shop"].baseline is None
    with_baseline = load_config(write_config(tmp_path, 9001, 9002, baseline_port=9003), env={})
    baseline = with_baseline.environment("demo").services["shop"].baseline
    assert baseline is not None and baseline.url == "http://127.0.0.1:9003"

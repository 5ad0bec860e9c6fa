"""The coalmine/judge plug-in against a real router: it reads what the router measured,
incrementally, and fails a canary whose errors are conclusive."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from coalmine.analysis.types import Phase
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.judge import JudgeMetrics, RouterRequests
from coalmine.spec.model import Metric
from coalmine.traffic.client import RouterClient

from .test_router_support import rig

JUDGE = {
    "alpha": 0.01,
    "metrics": [
        {
            "name": "error-rate",
            "kind": "ratio",
            "relativeTolerance": 2,
            "critical": True,
            "minSamples": 20,
        },
    ],
}
METRIC = Metric(name="judge", provider={"plugin": {"coalmine/judge": JUDGE}}, interval=1.0)


async def send(url: str, version: str, path: str, n: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            headers = {"X-Coalmine-Version": version}
            async with session.get(url + path, headers=headers) as answer:
                await answer.read()


def test_errors_only_on_the_canary_fail_the_judge_and_fetching_is_incremental() -> None:
    asyncio.run(_errors_only_on_the_canary())


async def _errors_only_on_the_canary() -> None:
    async with rig() as r:
        client = RouterClient(r.admin)
        source = RouterRequests(client)
        provider = JudgeMetrics(source)
        started = time.time() - 0.01
        context = MeasureContext(
            rollout="shop", service="shop", now=time.time(), run_started_at=started
        )
        await send(r.url, "stable", "/", 200)
        await send(r.url, "canary", "/", 30)
        first = await provider.measure(METRIC, context)
        assert first.phase == Phase.RUNNING, first.message  # clean so far: continue
        await send(r.url, "canary", "/status?code=500", 25)
        second = await provider.measure(METRIC, context)
        assert second.phase == Phase.FAILED, second.message
        assert "error" in second.message
        (check,) = second.details["metrics"]
        assert check["n_canary"] == 55 and check["n_baseline"] == 200
        seen = source._seen[started]
        assert len(seen) == 255, "each request fetched once"
        await client.aclose()


def test_an_idle_canary_is_never_a_pass() -> None:
    asyncio.run(_idle_canary())


async def _idle_canary() -> None:
    async with rig() as r:
        client = RouterClient(r.admin)
        source = RouterRequests(client)
        provider = JudgeMetrics(source)
        await send(r.url, "stable", "/", 50)
        context = MeasureContext(
            rollout="shop",
            service="shop",
            now=time.time(),
            run_started_at=time.time() - 60,
            final_look=True,
        )
        result = await provider.measure(METRIC, context)
        assert result.phase == Phase.INCONCLUSIVE, result.message
        await client.aclose()

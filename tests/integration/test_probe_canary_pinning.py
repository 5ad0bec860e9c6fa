"""Canary-pinned probes end to end: the real router with a healthy stable and a failing canary
at weight 0, a flow with ``schedule.versions: [stable, canary]`` run by the Scheduler through
the router's override header, results in a SQLite ProbeStore, and the judge's
``coalmine/probe`` provider reading them back per version."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.probe import ProbeMetrics
from coalmine.probes.loader import load_flows
from coalmine.probes.runner import ProbeRunner
from coalmine.probes.scheduler import Scheduler, as_run_flow, targets_for
from coalmine.probes.sinks import StoreSink
from coalmine.probes.store import ProbeStore, StoreProbeResults
from coalmine.spec.model import Metric
from coalmine.store.open import open_store
from coalmine.traffic.proxy import RouterServer
from tests.fixtures.probe_app import API_KEY, start_probe_app
from tests.integration.test_router_support import service_config

SERVICE = "maestro-api"
CANARY_DELAY_S = 0.08
INTERVAL_S = 0.3
FLOW = f"""\
apiVersion: coalmine.dev/v1
kind: ProbeFlow
metadata: {{name: pinned-orders, service: {SERVICE}, owner: team-maestro}}
slo: maestro-api-availability
schedule:
  {{interval: {INTERVAL_S}s, jitter: 0s, timeout: {INTERVAL_S}s, versions: [stable, canary]}}
secrets: {{api_key: {{env: MAESTRO_API_KEY}}}}
environments:
  staging: {{base_url: "URL"}}
steps:
  - name: list-orders
    request:
      url: /api/orders
      headers: {{X-API-Key: "{{{{ secrets.api_key }}}}"}}
      timeout: 250ms
    assert: ["status == 200", 'jsonpath "$.orders" exists']
"""


@dataclass
class BrokenCanary:
    """The new version: answers the orders API slowly with a 500."""

    hits: int = 0
    pinned: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.pinned += request.headers.get("X-Coalmine-Version") == "canary"
        await asyncio.sleep(CANARY_DELAY_S)
        return web.json_response({"error": "orders backend unavailable"}, status=500)

    async def start(self) -> tuple[str, web.AppRunner]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}", runner


def metric(query: str, **extra: Any) -> Metric:
    config = {
        "query": query,
        "environment": "staging",
        "flow": "pinned-orders",
        "window": "5m",
        "minRuns": 3,
        **extra,
    }
    return Metric(name=f"synthetic-{query}", provider={"plugin": {"coalmine/probe": config}})


async def measure(provider: ProbeMetrics, query: str, **extra: Any) -> ProviderResult:
    context = MeasureContext(rollout="maestro-api", service=SERVICE, now=time.time())
    return await provider.measure(metric(query, **extra), context)


def test_pinned_probes_score_a_failing_canary_that_gets_no_weighted_traffic(
    tmp_path: Path,
) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    stable = await start_probe_app()
    broken = BrokenCanary()
    canary_url, canary_runner = await broken.start()
    router = RouterServer(service_config(stable.url, canary_url))
    await router.start()
    sql = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store = ProbeStore(sql)
        router_url = f"http://127.0.0.1:{router.listen_port}"
        assert router.routing.canary_weight == 0
        async with httpx.AsyncClient() as client:  # weighted traffic: all of it to stable
            for _ in range(10):
                answer = await client.get(f"{router_url}/api/orders?api_key={API_KEY}")
                assert answer.status_code == 200
        assert broken.hits == 0

        flow_file = tmp_path / "pinned-orders.yaml"
        flow_file.write_text(FLOW.replace("URL", router_url))
        flows = load_flows([flow_file])
        targets = targets_for(flows, "staging")
        assert {t.version for t in targets} == {"stable", "canary"}
        runner = ProbeRunner(environ={"MAESTRO_API_KEY": API_KEY})
        scheduler = Scheduler(
            targets, as_run_flow(runner), [StoreSink(store)], spread_start=False, state=store
        )
        await scheduler.start()
        await asyncio.sleep(3.5 * INTERVAL_S)  # slots at 0, 1, 2 and 3 intervals
        await scheduler.stop(drain_s=2.0)

        runs = store.recent("pinned-orders", limit=100)
        by_version = {v: [r for r in runs if r["version"] == v] for v in ("stable", "canary")}
        assert len(by_version["stable"]) >= 3 and len(by_version["canary"]) >= 3, runs
        assert all(r["success"] for r in by_version["stable"])
        assert not any(r["success"] for r in by_version["canary"])
        assert {r["failed_step"] for r in by_version["canary"]} == {"list-orders"}
        assert {r["slo"] for r in runs} == {"maestro-api-availability"}  # the flow's slo:

        # the pin reached the canary through the router although its weight is 0
        assert broken.hits == len(by_version["canary"]) == broken.pinned
        stats = router.window.stats(60.0).versions
        assert stats["canary"].requests == len(by_version["canary"])
        assert stats["canary"].errors == len(by_version["canary"])
        assert stats["stable"].requests == 10 + len(by_version["stable"])
        assert stats["stable"].errors == 0
        assert API_KEY not in str(runs)

        provider = ProbeMetrics(StoreProbeResults(store))
        ratio = await measure(provider, "success-ratio")
        assert ratio.phase is not Phase.ERROR and ratio.phase is not Phase.INCONCLUSIVE
        assert ratio.value == {"stable": 1.0, "canary": 0.0}
        score = await measure(provider, "score", version="canary")
        assert score.value == 0.0
        latency = await measure(provider, "latency", quantile=0.5)
        assert latency.value["canary"] >= CANARY_DELAY_S * 1000  # the slow 500s are counted
        assert latency.value["canary"] > latency.value["stable"]

        thin = await measure(provider, "success-ratio", minRuns=50)
        assert thin.phase is Phase.INCONCLUSIVE and thin.value is None
        assert thin.message.startswith("no data: ")
        assert "canary had" in thin.message and "need 50" in thin.message
        other = await measure(provider, "success-ratio", flow="no-such-flow")
        assert other.phase is Phase.INCONCLUSIVE and "has no probe runs" in other.message
        prod = await measure(provider, "success-ratio", environment="prod")
        assert prod.phase is Phase.INCONCLUSIVE
        assert "has no probe runs of flow 'pinned-orders' in prod" in prod.message
    finally:
        sql.close()
        await router.stop()
        await canary_runner.cleanup()
        await stable.close()

"""Rollback on burn, end to end on loopback: a real Prometheus runs the rules ``coalmine slo
rules`` writes, its firing page goes through a real Alertmanager to ``coalmine slo webhook`` (its
own process), which queues an abort in a real SQLite store; a real controller with the embedded
router rolls the rollout back. And the engine path: fast-burn buckets in the store roll back a
running rollout with no Alertmanager at all."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coalmine.clock import SystemClock
from coalmine.rollout.budget_source import SloBudgetSource
from coalmine.rollout.runner import Controller
from coalmine.rollout.snapshot import plan_from_record
from coalmine.rollout.state import RolloutPhase, RolloutState
from coalmine.slo.alertmanager import Timing, render_alertmanager
from coalmine.slo.engine import Bucket
from coalmine.slo.evaluate import SloEvaluator
from coalmine.slo.loader import load_slos
from coalmine.slo.rules import BURN_ALERT, render_rules, rule_input_from_slo
from coalmine.slo.store import SloBucketStore
from coalmine.slo.webhook import WEBHOOK_PATH
from coalmine.spec.model import Environment
from coalmine.store.open import open_store
from coalmine.store.sql import SqlStore
from coalmine.traffic.client import RouterClient
from tests.fixtures.alertmanager import launch_alertmanager
from tests.fixtures.daemon import free_port
from tests.fixtures.prometheus import PrometheusHandle, launch_prometheus
from tests.integration.test_router_support import Rig, rig, service_config
from tests.support.rollouts import shop_rollout

ROLLOUT = shop_rollout(
    """\
- setWeight: 20
- pause: {}
- setWeight: 60
"""
)
SLOS = """\
slos:
  - name: shop-availability
    service: shop
    objective: 99.9
    sli: {type: availability, source: router}
    window: 30d
"""
FAST = Timing(group_wait="1s", group_interval="1s", page_repeat="1h", ticket_repeat="1h")


@dataclass
class Setup:
    rig: Rig
    store: SqlStore
    controller: Controller
    workdir: Path
    config: Path

    async def weight(self) -> int:
        async with RouterClient(self.rig.admin) as client:
            return (await client.get_routing()).canary_weight

    def state(self) -> RolloutState:
        record = self.store.get_rollout("shop")
        assert record is not None
        return RolloutState.from_dict(record.state)

    async def until(self, what: str, check: Any, timeout: float = 8.0) -> float:
        """Poll until ``check()``; returns the time.time() it first held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return time.time()
            await asyncio.sleep(0.02)
        pytest.fail(f"timed out waiting for {what}: {self.state()}")


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Setup]:
    """The router, a store holding a started rollout (20%, paused), and the controller."""
    from coalmine.cli.rollout_cmds import prepare_rollout, seed_generation

    async with rig() as r:
        base = service_config(r.stable.url, r.canary.url)
        admin_port, listen_port = r.router.admin_port, r.router.listen_port
        service = replace(
            base,
            router=replace(
                base.router, admin=f"127.0.0.1:{admin_port}", listen=f"127.0.0.1:{listen_port}"
            ),
        )
        database = f"sqlite:///{tmp_path / 'state.db'}"
        (tmp_path / "rollout.yaml").write_text(ROLLOUT)
        (tmp_path / "slos.yaml").write_text(SLOS)
        config = tmp_path / "coalmine.yaml"
        config.write_text(
            f"environments:\n  local:\n    database: {database}\n    slos: [slos.yaml]\n"
            f"    services:\n      shop:\n        stable: {{url: '{r.stable.url}'}}\n"
            f"        canary: {{url: '{r.canary.url}'}}\n"
            f"        router: {{admin: '127.0.0.1:{admin_port}',"
            f" listen: '127.0.0.1:{listen_port}'}}\n"
        )
        environment = Environment(
            "local", database, str(tmp_path / "receipts"), {"shop": service},
            slos=(str(tmp_path / "slos.yaml"),),
        )  # fmt: skip
        store = open_store(database)
        record, plan = prepare_rollout([tmp_path / "rollout.yaml"], environment, "local", None, 1.0)
        assert [s.name for s in plan.slos] == ["shop-availability"]
        store.create_rollout(await seed_generation(record, service))
        evaluator = SloEvaluator(
            SloBucketStore(store.engine), probe_db=store.engine, router_admin=lambda _s: r.admin
        )
        client = RouterClient(r.admin)
        controller = Controller(
            store=store,
            clock=SystemClock(),
            plan_for=plan_from_record,
            router_for=lambda _record: client,
            receipts_dir=tmp_path / "receipts",
            tick_s=0.05,
            budget_source=SloBudgetSource(evaluator, refresh_s=0.3),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(None, stop))
        setup = Setup(r, store, controller, tmp_path, config)
        try:
            await setup.until(
                "the rollout to pause at 20%",
                lambda: _paused_at(setup, 20),
            )
            yield setup
        finally:
            stop.set()
            await task
            await client.aclose()
            store.close()


async def _paused_at(setup: Setup, weight: int) -> bool:
    state = setup.state()
    return state.phase == RolloutPhase.PAUSED and await setup.weight() == weight


def rollback_receipt(setup: Setup) -> dict[str, Any]:
    receipts = [r for r in setup.store.receipts("shop") if r.operation == "rollback_executed"]
    assert len(receipts) == 1, [r.operation for r in setup.store.receipts("shop")]
    return receipts[0].body


def page_alert() -> dict[str, Any]:
    return {
        "labels": {
            "alertname": "CoalmineSLOBurnRate",
            "severity": "page",
            "slo": "shop-availability",
            "service": "shop",
            "rule": "page-1h",
            "long_window": "1h",
            "short_window": "5m",
            "burn_rate_factor": "14.4",
        },
        "annotations": {
            "summary": "shop-availability (shop) burns its error budget",
            "description": "Burn rate over 1h: 20.1 (objective 99.9%, alert above 14.4).",
            "burn_rate_long": "20.1",
            "burn_rate_short": "31.7",
        },
        "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def backfill_burning_shop(workdir: Path, now: int) -> Path:
    """Seven hours of the router's counters for shop, one sample a minute up to ``now``, into a
    TSDB (``promtool tsdb create-blocks-from openmetrics``): 0.1% errors for six hours, then 2%
    for 55 minutes and 5% for the last 5. The 1h window burns at 22.5 and the 5m one at 50, so
    the 1h page fires; the 6h window burns at 4.6, below the 6h page's 6."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing (Debian package prometheus): scripts/setup.sh test")
    errors = [1] * 360 + [20] * 55 + [50] * 5  # of 1000 requests a minute
    points = [(now - len(errors) * 60, 0, 0)]  # (time, 2xx, 5xx) counters
    for i, per_minute in enumerate(errors, 1):
        _, ok, bad = points[-1]
        points.append((now - (len(errors) - i) * 60, ok + 1000 - per_minute, bad + per_minute))
    lines = ["# HELP coalmine_router_requests Requests.", "# TYPE coalmine_router_requests counter"]
    for code, column in (("2xx", 1), ("5xx", 2)):
        series = f'coalmine_router_requests_total{{code_class="{code}",service="shop"}}'
        lines.extend(f"{series} {p[column]} {p[0]}" for p in points)
    source, data = workdir / "shop.om", workdir / "tsdb"
    source.write_text("\n".join([*lines, "# EOF"]) + "\n")
    command = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return data


def burning_prometheus(workdir: Path) -> PrometheusHandle:
    """A real Prometheus with the rules ``coalmine slo rules`` writes for slos.yaml, over the
    counters of :func:`backfill_burning_shop`."""
    rules = workdir / "slo-rules.yml"
    slos = load_slos([workdir / "slos.yaml"]).slos
    rules.write_text(render_rules([rule_input_from_slo(s) for s in slos]))
    data = backfill_burning_shop(workdir, int(time.time()))
    return launch_prometheus([], [rules], data_dir=data, retention="1d")


async def firing_alerts(prom: PrometheusHandle, severity: str) -> list[dict[str, Any]]:
    """The burn alerts Prometheus fires, as it sends them to Alertmanager."""
    deadline, alerts = time.monotonic() + 15, []
    while time.monotonic() < deadline:
        alerts = (await asyncio.to_thread(prom.api, "alerts"))["alerts"]
        firing = [
            {
                "labels": a["labels"],
                "annotations": a["annotations"],
                "startsAt": a["activeAt"],
                "generatorURL": prom.url,
            }
            for a in alerts
            if a["state"] == "firing" and a["labels"]["alertname"] == BURN_ALERT
        ]
        if any(a["labels"]["severity"] == severity for a in firing):
            return firing
        await asyncio.sleep(0.1)
    pytest.fail(f"Prometheus never fired a {severity}: {alerts}")


def test_a_page_from_the_real_alertmanager_rolls_the_rollout_back(tmp_path: Path) -> None:
    """Prometheus evaluates the generated rules; its firing alerts (the 1h page, and tickets
    the page inhibits) are posted to Alertmanager exactly as Prometheus posts them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        async with running(tmp_path) as setup:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "coalmine.cli.slo_webhook_cmd", "--listen",
                 f"127.0.0.1:{port}", "--config", str(setup.config)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            am = prom = None
            try:
                config = render_alertmanager(coalmine_url=url + WEBHOOK_PATH, timing=FAST)
                am = await asyncio.to_thread(launch_alertmanager, config)
                prom = await asyncio.to_thread(burning_prometheus, setup.workdir)
                await setup.until("the receiver", lambda: _ready(url), timeout=15)
                fired = await firing_alerts(prom, "page")
                assert {
                    a["labels"]["rule"] for a in fired if a["labels"]["severity"] == "page"
                } == {"page-1h"}, fired
                ticket = {**page_alert(), "labels": {**page_alert()["labels"]}}
                ticket["labels"].update(
                    severity="ticket", slo="shop-latency", long_window="1d", short_window="2h"
                )
                posted = time.time()
                await asyncio.to_thread(am.post_alerts, [ticket, *fired])
                rolled_back = await setup.until(
                    "the rollback", lambda: _rolled_back(setup), timeout=10
                )
            finally:
                for server in (am, prom):
                    if server is not None:
                        await asyncio.to_thread(server.stop)
                receiver.terminate()
                output = receiver.communicate(timeout=10)[0]
            # Alertmanager waits group_wait (1s) before it sends; the rest is coalmine's
            assert rolled_back - posted < 4.0, f"{rolled_back - posted:.2f}s from alert to rollback"
            assert "abort queued for shop" in output, output
            await setup.until("the receipt", lambda: _has_receipt(setup))
            receipt = rollback_receipt(setup)
            burn = receipt["burn"]
            assert burn["source"] == "alertmanager" and burn["slo"] == "shop-availability"
            assert burn["rule"] == "page-1h"  # as the engine names it
            assert (burn["long"], burn["short"], burn["factor"]) == ("1h", "5m", 14.4)
            # the rates Prometheus measured (rate() extrapolates a little at the window edges)
            assert burn["long_rate"] == pytest.approx(22.5, rel=0.02)
            assert burn["short_rate"] == pytest.approx(50.0, rel=0.02)
            assert burn["details"]["fingerprint"]
            assert "22.5 over 1h and 50 over 5m" in receipt["failure_reason"]
            assert receipt["trigger"] == "budget-burn" and receipt["traffic_percent_before"] == 20
            assert receipt["budget_policy"]["tier"] == "cautious", "no data yet: never normal"
            switch = receipt["traffic_switched_at"] - receipt["decided_at"]
            assert 0 <= switch < 1.0
            state = setup.state()
            assert state.phase == RolloutPhase.ROLLED_BACK
            kinds = [d.kind for d in setup.store.decisions("shop")]
            assert kinds.count("rolled-back") == 1, "the ticket did not abort anything"

    asyncio.run(scenario())


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url + "/-/ready", timeout=0.5)).status_code == 200
    except httpx.HTTPError:
        return False


async def _rolled_back(setup: Setup) -> bool:
    return await setup.weight() == 0


async def _has_receipt(setup: Setup) -> bool:
    return any(r.operation == "rollback_executed" for r in setup.store.receipts("shop"))


def test_an_engine_evaluated_fast_burn_rolls_a_running_rollout_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        # three healthy days before the rollout: the budget is normal
        now = time.time()
        end = int(now // 60) * 60
        healthy = [Bucket(float(t), 1000.0, 1000.0) for t in range(end - 3 * 86400, end, 60)]
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        SloBucketStore(store.engine).put("shop-availability", healthy)
        store.close()
        async with running(tmp_path) as setup:
            decisions = [d for d in setup.store.decisions("shop") if d.kind == "budget-policy"]
            assert decisions[0].data["budget_policy"]["tier"] == "normal", decisions[0].reason
            assert await setup.weight() == 20
            # now 3% errors over the last hour and the next two minutes: burn 30 > 14.4
            start = int(time.time() // 60) * 60
            burning = [
                Bucket(float(t), 970.0, 1000.0) for t in range(start - 3600, start + 180, 60)
            ]
            injected = time.time()
            SloBucketStore(setup.store.engine).put("shop-availability", burning)
            rolled_back = await setup.until("the rollback", lambda: _rolled_back(setup))
            assert rolled_back - injected < 3.0, f"{rolled_back - injected:.2f}s to roll back"
            await setup.until("the receipt", lambda: _has_receipt(setup))
            burn = rollback_receipt(setup)["burn"]
            assert burn["source"] == "engine" and burn["rule"] == "page-1h"
            assert burn["long"] == "1h" and burn["short"] == "5m" and burn["factor"] == 14.4
            assert burn["long_rate"] == pytest.approx(30.0, rel=0.05)
            assert burn["short_rate"] == pytest.approx(30.0, rel=0.05)
            assert setup.state().phase == RolloutPhase.ROLLED_BACK

    asyncio.run(scenario())


def test_only_firing_pages_queue_aborts_once_per_active_rollout(tmp_path: Path) -> None:
    from coalmine.rollout.burn import enqueue_burn_aborts
    from coalmine.slo.webhook import parse_webhook
    from coalmine.store.base import RolloutRecord

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        for name, service, phase in (
            ("shop", "shop", RolloutPhase.PAUSED),
            ("shop-old", "shop", RolloutPhase.ROLLED_BACK),
            ("cart", "cart", RolloutPhase.PROGRESSING),
        ):
            state = replace(RolloutState(), phase=phase).to_dict()
            spec = {"files": {}, "service": {"name": service}}
            store.create_rollout(RolloutRecord(name, 0, str(phase), state, spec, 0.0, 0.0))

        def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
            return {
                "version": "4",
                "groupKey": "g",
                "status": status,
                "receiver": "coalmine-page",
                "alerts": [{"status": status, **a} for a in alerts],
            }

        ticket = page_alert()
        ticket["labels"] = {**ticket["labels"], "severity": "ticket"}
        assert enqueue_burn_aborts(store, parse_webhook(payload(ticket)), 1.0) == []
        resolved = parse_webhook(payload(page_alert(), status="resolved"))
        assert enqueue_burn_aborts(store, resolved, 1.0) == []
        page = parse_webhook(payload(page_alert()))
        queued = enqueue_burn_aborts(store, page, 1.0)
        assert [q.rollout for q in queued] == ["shop"], "only the active rollout of the service"
        assert enqueue_burn_aborts(store, page, 2.0) == [], "a repeat is not queued twice"
        (command,) = store.pending_commands("shop")
        assert command.name == "abort" and command.args["burn"]["long_rate"] == 20.1
        assert command.args["burn"]["short_rate"] == 31.7
        assert store.pending_commands("cart") == []
    finally:
        store.close()

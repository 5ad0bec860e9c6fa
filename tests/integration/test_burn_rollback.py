"""Rollback on burn, end to end on loopback: a real Alertmanager delivers a page to
``coalmine slo webhook`` (its own process), which queues an abort in a real SQLite store; a real
controller with the embedded router rolls the rollout back. And the engine path: fast-burn
buckets in the store roll back a running rollout with no Alertmanager at all."""

from __future__ import annotations

import asyncio
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
from coalmine.slo.store import SloBucketStore
from coalmine.slo.webhook import WEBHOOK_PATH
from coalmine.spec.model import Environment
from coalmine.store.open import open_store
from coalmine.store.sql import SqlStore
from coalmine.traffic.client import RouterClient
from tests.fixtures.alertmanager import launch_alertmanager
from tests.fixtures.daemon import free_port
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
            "long_window": "1h",
            "short_window": "5m",
            "burn_rate_factor": "14.4",
        },
        "annotations": {
            "summary": "shop-availability (shop) burns its error budget",
            "description": "Burn rate over 1h: 20.1 (objective 99.9%, alert above 14.4).",
        },
        "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def test_a_page_from_the_real_alertmanager_rolls_the_rollout_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        async with running(tmp_path) as setup:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "coalmine.cli.slo_webhook_cmd", "--listen",
                 f"127.0.0.1:{port}", "--config", str(setup.config)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            am = None
            try:
                config = render_alertmanager(coalmine_url=url + WEBHOOK_PATH, timing=FAST)
                am = await asyncio.to_thread(launch_alertmanager, config)
                await setup.until("the receiver", lambda: _ready(url), timeout=15)
                ticket = {**page_alert(), "labels": {**page_alert()["labels"]}}
                ticket["labels"].update(
                    severity="ticket", slo="shop-latency", long_window="1d", short_window="2h"
                )
                posted = time.time()
                await asyncio.to_thread(am.post_alerts, [ticket, page_alert()])
                rolled_back = await setup.until(
                    "the rollback", lambda: _rolled_back(setup), timeout=10
                )
            finally:
                if am is not None:
                    await asyncio.to_thread(am.stop)
                receiver.terminate()
                output = receiver.communicate(timeout=10)[0]
            # Alertmanager waits group_wait (1s) before it sends; the rest is coalmine's
            assert rolled_back - posted < 4.0, f"{rolled_back - posted:.2f}s from alert to rollback"
            assert "abort queued for shop" in output, output
            await setup.until("the receipt", lambda: _has_receipt(setup))
            receipt = rollback_receipt(setup)
            burn = receipt["burn"]
            assert burn["source"] == "alertmanager" and burn["slo"] == "shop-availability"
            assert (burn["long"], burn["short"], burn["factor"]) == ("1h", "5m", 14.4)
            assert burn["long_rate"] == 20.1 and burn["details"]["fingerprint"]
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
        assert store.pending_commands("cart") == []
    finally:
        store.close()

"""The generated Alertmanager configuration in the real Alertmanager, delivering burn-rate alerts
to coalmine's webhook handler on loopback; and the real ``amtool check-config``."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from coalmine.slo.alertmanager import Timing, render_alertmanager
from coalmine.slo.webhook import WEBHOOK_PATH, BurnAlert, add_webhook_route
from tests.fixtures.alertmanager import find_amtool, launch_alertmanager

FAST = Timing(group_wait="1s", group_interval="1s", page_repeat="1h", ticket_repeat="1h")


def need_amtool() -> str:
    amtool = find_amtool()
    if amtool is None:
        if os.environ.get("CI"):
            pytest.fail("amtool is missing (Debian prometheus-alertmanager)")
        pytest.skip("amtool is missing: apt-get install prometheus-alertmanager")
    return amtool


def test_amtool_accepts_the_generated_configuration(tmp_path: Path) -> None:
    amtool = need_amtool()
    path = tmp_path / "alertmanager" / "canary-routes.yaml"
    path.parent.mkdir()
    path.write_text(
        render_alertmanager(
            page_webhooks=["https://pager.example.com/hook"],
            ticket_webhooks=["https://tickets.example.com/hook"],
        )
    )
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "3 receivers" in result.stdout


def test_amtool_refuses_a_broken_configuration(tmp_path: Path) -> None:
    """The check above means something: amtool does reject a route to a missing receiver."""
    amtool = need_amtool()
    path = tmp_path / "broken.yaml"
    path.write_text(render_alertmanager().replace("receiver: coalmine-page", "receiver: nobody"))
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0


def alert(severity: str, slo: str, long_: str, short: str, factor: str, **extra: Any) -> dict:
    return {
        "labels": {
            "alertname": "CoalmineSLOBurnRate",
            "severity": severity,
            "slo": slo,
            "service": "shop",
            "long_window": long_,
            "short_window": short,
            "burn_rate_factor": factor,
        },
        "annotations": {"summary": f"{slo} burns"},
        "generatorURL": "http://127.0.0.1:9090/graph",
        **extra,
    }


def test_real_alertmanager_delivers_pages_to_coalmine_and_inhibits_tickets() -> None:
    deliveries: list[list[BurnAlert]] = []

    async def scenario() -> None:
        got = asyncio.Event()  # set by every delivery

        async def on_alerts(alerts: list[BurnAlert]) -> None:
            deliveries.append(alerts)
            got.set()

        app = web.Application()
        add_webhook_route(app, on_alerts)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = render_alertmanager(
            coalmine_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}", timing=FAST
        )
        am = await asyncio.to_thread(launch_alertmanager, config)
        try:
            await run(am, got)
        finally:
            await asyncio.to_thread(am.stop)
            await runner.cleanup()

    async def wait_for(got: asyncio.Event, predicate: Any, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                pytest.fail(f"Alertmanager never delivered {what}; got {deliveries}")
            got.clear()
            try:
                await asyncio.wait_for(got.wait(), timeout=remaining)
            except TimeoutError:
                continue

    def delivered(**match: Any) -> list[BurnAlert]:
        return [
            a
            for batch in deliveries
            for a in batch
            if all(getattr(a, k) == v for k, v in match.items())
        ]

    async def run(am: Any, got: asyncio.Event) -> None:
        page = alert("page", "shop-availability", "1h", "5m", "14.4")
        # same SLO: inhibited by the page; another SLO: delivered (the control)
        inhibited = alert("ticket", "shop-availability", "1d", "2h", "3")
        control = alert("ticket", "shop-latency", "1d", "2h", "3")
        await asyncio.to_thread(am.post_alerts, [page, inhibited, control])

        await wait_for(got, lambda: delivered(severity="page"), "the page")
        (burn,) = delivered(severity="page")
        assert (burn.slo, burn.service, burn.long_window, burn.short_window) == (
            "shop-availability",
            "shop",
            "1h",
            "5m",
        )
        assert burn.factor == 14.4 and burn.firing and burn.receiver == "coalmine-page"
        assert abs((datetime.now(UTC) - burn.starts_at).total_seconds()) < 30
        assert burn.fingerprint  # Alertmanager's own, computed from the labels

        await wait_for(got, lambda: delivered(slo="shop-latency"), "the uninhibited ticket")
        await asyncio.sleep(1.0)  # the inhibited ticket had the same group_wait
        assert not delivered(severity="ticket", slo="shop-availability")
        muted = await asyncio.to_thread(am.alerts, inhibited="true", active="false")
        assert [a["labels"]["slo"] for a in muted] == ["shop-availability"]

        # the page ends: Alertmanager sends it again as resolved (send_resolved)
        ended = datetime.now(UTC) - timedelta(seconds=1)
        page["endsAt"] = ended.isoformat().replace("+00:00", "Z")
        await asyncio.to_thread(am.post_alerts, [page])
        await wait_for(got, lambda: delivered(severity="page", status="resolved"), "the resolve")
        (resolved,) = delivered(severity="page", status="resolved")
        assert not resolved.firing and resolved.ends_at is not None

    asyncio.run(scenario())


def test_alertmanager_api_is_what_the_fixture_talks_to() -> None:
    """A sanity check of the fixture on its own: alerts posted are listed back."""
    am = launch_alertmanager(render_alertmanager(timing=FAST))
    try:
        am.post_alerts([alert("ticket", "x", "1d", "2h", "3")])
        listed = am.alerts()
        assert [a["labels"]["slo"] for a in listed] == ["x"]
        assert httpx.get(f"{am.url}/api/v2/status", timeout=5).json()["config"]["original"]
    finally:
        am.stop()

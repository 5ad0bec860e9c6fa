"""Alertmanager's webhook payload (version 4) and the aiohttp handler on loopback."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coalmine.rollout.burn import signal_from_alert
from coalmine.slo.webhook import (
    WEBHOOK_PATH,
    BurnAlert,
    WebhookError,
    add_webhook_route,
    parse_webhook,
    parse_webhook_body,
)


def burn_labels(**changes: str) -> dict[str, str]:
    labels = {
        "alertname": "CoalmineSLOBurnRate",
        "severity": "page",
        "slo": "shop-availability",
        "service": "shop",
        "long_window": "1h",
        "short_window": "5m",
        "burn_rate_factor": "14.4",
        "time_to_exhaustion": "50h",
    }
    labels.update(changes)
    return labels


def payload(*alerts: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "receiver": "coalmine-page",
        "status": "firing",
        "alerts": list(alerts)
        or [
            {
                "status": "firing",
                "labels": burn_labels(),
                "annotations": {"summary": "burning"},
                "startsAt": "2024-05-01T10:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
                "fingerprint": "a1b2c3d4e5f60718",
            }
        ],
        "groupLabels": {"slo": "shop-availability", "service": "shop"},
        "commonLabels": {"severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{severity="page"}:{service="shop", slo="shop-availability"}',
        "truncatedAlerts": 0,
    }
    doc.update(changes)
    return doc


def test_a_firing_page_becomes_a_burn_alert_with_its_windows_and_factor() -> None:
    (alert,) = parse_webhook(payload())
    assert isinstance(alert, BurnAlert)
    assert (alert.service, alert.slo, alert.severity) == ("shop", "shop-availability", "page")
    assert (alert.long_window, alert.short_window) == ("1h", "5m")
    assert (alert.long_s, alert.short_s, alert.factor) == (3600.0, 300.0, 14.4)
    assert alert.firing and alert.status == "firing"
    assert alert.starts_at == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert alert.ends_at is None  # Go's zero time
    assert alert.fingerprint == "a1b2c3d4e5f60718" and alert.receiver == "coalmine-page"
    assert "1h and 5m" in alert.describe()


def generated_page(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """A v4 payload with one page as ``coalmine slo rules`` alerts look once Prometheus has
    expanded their annotations."""
    doc = payload()
    doc["alerts"][0].update(labels=burn_labels(**labels), annotations=annotations)
    return doc


def test_a_generated_page_yields_a_burn_with_both_rates_both_windows_and_the_rule_name() -> None:
    doc = generated_page(
        {"rule": "page-fast"},
        {
            "summary": "burning",
            "description": "Burn rate over 1h: 22.5 (objective 99.9%, alert above 14.4).",
            "burn_rate_long": "22.5",
            "burn_rate_short": "50",
        },
    )
    (alert,) = parse_webhook(doc)
    burn = signal_from_alert(alert).to_dict()
    assert (burn["rule"], burn["long"], burn["short"]) == ("page-fast", "1h", "5m")
    assert (burn["long_rate"], burn["short_rate"]) == (22.5, 50.0)
    assert (burn["long_s"], burn["short_s"], burn["factor"]) == (3600.0, 300.0, 14.4)
    assert burn["source"] == "alertmanager"


def test_alerts_of_older_rule_files_still_name_the_burn_and_its_long_rate() -> None:
    """No rule label, rates only in the description: the rule is <severity>-<long window>."""
    doc = generated_page({}, {"description": "Burn rate over 1h: 20.1 (objective 99.9%)."})
    burn = signal_from_alert(parse_webhook(doc)[0])
    assert (burn.rule, burn.long_rate, burn.short_rate) == ("page-1h", 20.1, None)


def test_an_unreadable_burn_rate_is_unknown_not_an_error() -> None:
    """The rates are informational: a page still rolls back when they cannot be read."""
    doc = generated_page({}, {"burn_rate_long": "", "burn_rate_short": "NaN"})
    (alert,) = parse_webhook(doc)
    assert (alert.long_rate, alert.short_rate) == (None, None)


def test_a_resolved_alert_keeps_its_end() -> None:
    doc = payload(status="resolved")
    doc["alerts"][0].update(status="resolved", endsAt="2024-05-01T11:00:00+02:00")
    (alert,) = parse_webhook(doc)
    assert not alert.firing
    assert alert.ends_at == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_alerts_that_are_not_burn_rate_alerts_are_skipped() -> None:
    doc = payload()
    other = copy.deepcopy(doc["alerts"][0])
    other["labels"] = {"alertname": "DiskFull", "severity": "page"}
    doc["alerts"].insert(0, other)
    assert [a.slo for a in parse_webhook(doc)] == ["shop-availability"]


@pytest.mark.parametrize(
    ("mutate", "fld", "words"),
    [
        (lambda d: d.update(version="3"), "version", "'3'"),
        (lambda d: d.pop("version"), "version", "None"),
        (lambda d: d.update(alerts={}), "alerts", "list"),
        (lambda d: d.update(status="maybe"), "status", "firing or resolved"),
        (lambda d: d.pop("groupKey"), "groupKey", "missing"),
        (lambda d: d.update(truncatedAlerts="0"), "truncatedAlerts", "count"),
        (lambda d: d["alerts"][0]["labels"].pop("slo"), "alerts[0].labels.slo", "missing"),
        (
            lambda d: d["alerts"][0]["labels"].update(severity="critical"),
            "alerts[0].labels.severity",
            "page or ticket",
        ),
        (
            lambda d: d["alerts"][0]["labels"].update(burn_rate_factor="fast"),
            "alerts[0].labels.burn_rate_factor",
            "positive number",
        ),
        (
            lambda d: d["alerts"][0]["labels"].update(long_window="an hour"),
            "alerts[0].labels.long_window",
            "duration",
        ),
        (
            lambda d: d["alerts"][0].update(startsAt="yesterday"),
            "alerts[0].startsAt",
            "RFC 3339",
        ),
        (lambda d: d["alerts"][0]["labels"].update(slo=7), "alerts[0].labels.slo", "string"),
    ],
)
def test_bad_payloads_are_errors_naming_the_field(mutate: Any, fld: str, words: str) -> None:
    doc = payload()
    mutate(doc)
    with pytest.raises(WebhookError) as err:
        parse_webhook(doc)
    assert err.value.field == fld
    assert words in err.value.one_line()


def test_a_body_that_is_not_json_is_an_error() -> None:
    with pytest.raises(WebhookError, match="not JSON"):
        parse_webhook_body(b"{nope")


# --------------------------------------------------------------------------- handler


async def serve(on_alerts: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    add_webhook_route(app, on_alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}{WEBHOOK_PATH}"


def test_handler_answers_200_and_hands_over_the_alerts() -> None:
    received: list[list[BurnAlert]] = []

    async def on_alerts(alerts: list[BurnAlert]) -> None:
        received.append(alerts)

    async def body() -> tuple[int, Any]:
        runner, url = await serve(on_alerts)
        try:
            async with aiohttp.ClientSession() as s, s.post(url, json=payload()) as resp:
                return resp.status, await resp.json()
        finally:
            await runner.cleanup()

    status, doc = asyncio.run(body())
    assert status == 200 and doc == {"burn_alerts": 1}
    assert [a.slo for a in received[0]] == ["shop-availability"]


def test_handler_answers_400_with_one_line_for_a_bad_payload_and_500_when_handling_fails() -> None:
    calls = 0

    async def failing(alerts: list[BurnAlert]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("store down")

    async def body() -> list[tuple[int, dict[str, Any]]]:
        runner, url = await serve(failing)
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                for doc in (payload(version="2"), payload()):
                    async with s.post(url, data=json.dumps(doc)) as resp:
                        out.append((resp.status, await resp.json()))
        finally:
            await runner.cleanup()
        return out

    (bad_status, bad), (fail_status, fail) = asyncio.run(body())
    assert bad_status == 400 and "version" in bad["error"] and "\n" not in bad["error"]
    assert fail_status == 500 and "store down" not in fail["error"]  # Alertmanager retries
    assert calls == 1  # the bad payload never reached the callback

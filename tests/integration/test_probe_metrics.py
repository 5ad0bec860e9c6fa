"""``coalmine probes serve`` over HTTP on loopback: /metrics parsed with prometheus_client's
parser, /healthz, /results and /sli, with fake runs (the runner is tested on its own)."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coalmine.probes.model import Flow, FlowResult, StepResult, Timing, Version
from coalmine.probes.server import serve
from coalmine.probes.store import ProbeStore
from coalmine.store.open import open_store
from tests.integration.test_probe_store import flow_result, step
from tests.unit.test_probe_schedule import make_flow

PHASES = Timing(resolve=0.001, connect=0.002, tls=0.003, processing=0.02, transfer=0.004)


def canned(flow: Flow, env: str, loc: str, version: Version | None, due: float) -> FlowResult:
    """stable passes; canary fails at ``cart`` (500 after a retry) and skips ``pay``;
    the unpinned flow passes on its second attempt."""
    if version == "canary":
        steps: tuple[StepResult, ...] = (
            step("login", timing=PHASES, seconds=0.03),
            step("cart", passed=False, status=500, attempts=2, timing=PHASES, seconds=0.03),
            step("pay", skipped=True),
            step("logout", is_finally=True, status=204, timing=PHASES, seconds=0.03),
        )
        return flow_result(
            flow.name, environment=env, location=loc, version=version, at=due, duration=0.25,
            steps=steps,
        )  # fmt: skip
    if version is None:
        steps = (step("search", attempts=2, timing=PHASES, seconds=0.03),)
        return flow_result(
            flow.name, environment=env, location=loc, version=None, at=due, duration=0.1,
            steps=steps,
        )  # fmt: skip
    steps = (
        step("login", timing=PHASES, seconds=0.03),
        step("cart", timing=PHASES, seconds=0.03),
        step("pay", timing=PHASES, seconds=0.03),
        step("logout", is_finally=True, status=204, timing=PHASES, seconds=0.03),
    )
    return flow_result(
        flow.name, environment=env, location=loc, version=version, at=due, duration=0.12,
        steps=steps,
    )  # fmt: skip


def run_with(
    run: Callable[[Flow, str, str, Version | None, float], Awaitable[FlowResult]],
    flows: list[Flow],
    check: Callable[[httpx.AsyncClient, str], Awaitable[None]],
    **kw: Any,
) -> None:
    async def body() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                flows,
                "staging",
                run=run,
                stop_event=stop,
                port=0,
                rng=random.Random(1),
                min_tolerance_s=0.05,
                spread_start=False,
                grace_s=0.05,
                drain_s=1.0,
                on_ready=ready.set_result,
                **kw,
            )
        )
        url = await asyncio.wait_for(ready, 5)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                await check(client, url)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(body())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return got[(name, frozenset(labels.items()))]


def target(version: str, flow: str = "checkout") -> dict[str, str]:
    return {"flow": flow, "environment": "staging", "location": "local", "version": version}


async def _async_canned(*args: Any) -> FlowResult:
    await asyncio.sleep(0.005)
    return canned(*args)


def test_metrics_use_blackbox_names_with_per_step_series_and_summable_counters(
    tmp_path: Path,
) -> None:
    pinned = make_flow("checkout", interval=0.1, versions=("stable", "canary"))
    plain = make_flow("search", interval=0.1)
    sql = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store = ProbeStore(sql)
    seen: dict[str, Any] = {}

    async def check(client: httpx.AsyncClient, url: str) -> None:
        await asyncio.sleep(0.45)
        response = await client.get(f"{url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        seen["text"] = response.text
        seen["results"] = (await client.get(f"{url}/results", params={"limit": 1000})).json()
        seen["healthz"] = await client.get(f"{url}/healthz")
        seen["sli"] = (await client.get(f"{url}/sli")).json()
        seen["bad"] = await client.get(f"{url}/results", params={"limit": "x"})

    try:
        run_with(_async_canned, [pinned, plain], check, store=store)
        stored = store.recent(limit=1000)
    finally:
        sql.close()

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `scripts/setup.sh test`", pytrace=False)
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=seen["text"], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr  # names, units, counter suffixes

    got = samples(seen["text"])
    stable, canary, unpinned = target("stable"), target("canary"), target("", "search")
    assert value(got, "probe_success", **stable) == 1.0
    assert value(got, "probe_success", **canary) == 0.0
    assert value(got, "probe_success", **unpinned) == 1.0
    assert value(got, "probe_duration_seconds", **canary) == pytest.approx(0.25)
    # the failed step's status for the canary; the last journey step (not finally's 204) else
    assert value(got, "probe_http_status_code", **canary) == 500.0
    assert value(got, "probe_http_status_code", **stable) == 200.0
    # phases summed over the final attempts of the steps that ran (canary: 3 of 4 ran)
    for phase, seconds in PHASES.as_dict().items():
        assert value(got, "probe_http_duration_seconds", **canary, phase=phase) == pytest.approx(
            3 * seconds
        )
        assert value(got, "probe_http_duration_seconds", **stable, phase=phase) == pytest.approx(
            4 * seconds
        )
    assert value(got, "coalmine_probe_first_attempt_success", **canary) == 0.0
    assert value(got, "coalmine_probe_first_attempt_success", **unpinned) == 0.0
    assert value(got, "coalmine_probe_first_attempt_success", **stable) == 1.0
    assert value(got, "coalmine_probe_step_success", **canary, step="login") == 1.0
    assert value(got, "coalmine_probe_step_success", **canary, step="cart") == 0.0
    assert value(got, "coalmine_probe_step_success", **canary, step="pay") == 0.0
    assert value(got, "coalmine_probe_step_attempts", **canary, step="cart") == 2.0
    assert value(got, "coalmine_probe_step_attempts", **canary, step="pay") == 0.0
    assert value(got, "coalmine_probe_step_duration_seconds", **stable, step="pay") == 0.03
    assert (
        "coalmine_probe_step_duration_seconds",
        frozenset({**canary, "step": "pay"}.items()),
    ) not in got
    assert value(got, "coalmine_probe_step_http_status_code", **canary, step="logout") == 204.0

    # counters: summable, and they agree with what was stored
    runs = {
        v: value(got, "coalmine_probe_runs_total", **t)
        for v, t in (("stable", stable), ("canary", canary), ("", unpinned))
    }
    assert all(n >= 3 for n in runs.values())
    assert sum(runs.values()) <= len(stored)  # results stored after the scrape too
    assert value(got, "coalmine_probe_runs_failed_total", **canary) == runs["canary"]
    assert value(got, "coalmine_probe_runs_failed_total", **stable) == 0.0
    assert value(got, "coalmine_probe_runs_first_attempt_failed_total", **unpinned) == runs[""]
    assert (
        value(got, "coalmine_probe_failures_total", **canary, step="cart", reason="assertion")
        == runs["canary"]
    )
    assert not [
        k for k in got if k[0] == "coalmine_probe_failures_total" and ("version", "stable") in k[1]
    ]

    # the scheduler's own SLI
    scheduled = value(got, "coalmine_probe_scheduler_runs_scheduled_total")
    on_time = value(got, "coalmine_probe_scheduler_runs_on_time_total")
    assert scheduled >= sum(runs.values()) and 0 < on_time <= scheduled
    assert value(got, "coalmine_probe_scheduler_lag_seconds_count") >= sum(runs.values())
    assert value(got, "coalmine_probe_scheduler_lag_seconds_bucket", le="+Inf") == value(
        got, "coalmine_probe_scheduler_lag_seconds_count"
    )
    assert value(got, "coalmine_probe_scheduler_runs_missed_total", reason="restart") == 0.0
    assert value(got, "coalmine_probe_scheduler_targets") == 3.0
    assert value(got, "coalmine_probe_sink_failures_total", sink="store") == 0.0

    # /results from the store, /healthz, /sli
    results = seen["results"]
    assert results["source"] == "store" and len(results["results"]) >= sum(runs.values())
    assert {r["version"] for r in results["results"]} == {"stable", "canary", None}
    assert seen["healthz"].status_code == 200, seen["healthz"].text
    assert seen["healthz"].json()["status"] == "ok"
    assert seen["sli"]["scheduled"] >= scheduled and seen["sli"]["availability"] is not None
    assert seen["bad"].status_code == 400


def test_healthz_is_503_when_runs_start_late() -> None:
    async def slow(*args: Any) -> FlowResult:
        await asyncio.sleep(0.15)
        return canned(*args)

    flows = [make_flow(f"f{i}", interval=0.2) for i in range(3)]
    seen: dict[str, Any] = {}

    async def check(client: httpx.AsyncClient, url: str) -> None:
        await asyncio.sleep(0.8)
        seen["healthz"] = await client.get(f"{url}/healthz")
        seen["results"] = (await client.get(f"{url}/results", params={"flow": "f1"})).json()

    run_with(slow, flows, check, concurrency=1)
    health = seen["healthz"]
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy" and body["alive"] is True
    assert "did not start on time" in body["reason"] and body["on_time_ratio"] < 0.999
    assert seen["results"]["source"] == "memory"
    assert seen["results"]["results"] and {r["flow"] for r in seen["results"]["results"]} == {"f1"}

"""Collectors fill SLO buckets from real sources: probe results in the store, a running router,
a real Prometheus; the evaluator turns them into budgets."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, start_http_server

from coalmine.slo.engine import Bucket
from coalmine.slo.evaluate import Collection, SloEvaluator
from coalmine.slo.policy import Tier, evaluation_tier
from coalmine.slo.spec import (
    DAY,
    HOUR,
    MINUTE,
    Budgeting,
    ProbeSource,
    PrometheusSource,
    RouterSource,
    Sli,
    Slo,
    Window,
    count_template,
    default_alerting,
)
from coalmine.slo.store import SloBucketStore
from coalmine.store.open import open_store
from coalmine.store.sql import SqlStore
from tests.integration.test_router_support import rig

NOW = 1_717_200_000.0  # a whole minute


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def insert_runs(
    store: SqlStore,
    flow: str,
    runs: list[tuple[float, bool]],
    *,
    environment: str = "prod",
    version: str | None = None,
    slo: str | None = None,
) -> None:
    table = sa.table("probe_runs", *(sa.column(c) for c in PROBE_COLUMNS))
    rows = [
        {
            "flow": flow,
            "slo": slo,
            "service": "maestro-api",
            "environment": environment,
            "location": "here",
            "version": version,
            "started_at": t,
            "scheduled_at": t,
            "duration_s": 0.2,
            "success": ok,
            "first_attempt_success": ok,
            "reason": "" if ok else "assertion",
            "failed_step": None if ok else "login",
            "score": 1.0 if ok else 0.0,
            "result": "{}",
        }
        for t, ok in runs
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table), rows)


PROBE_COLUMNS = (
    "flow",
    "slo",
    "service",
    "environment",
    "location",
    "version",
    "started_at",
    "scheduled_at",
    "duration_s",
    "success",
    "first_attempt_success",
    "reason",
    "failed_step",
    "score",
    "result",
)


def probe_slo(**kw: Any) -> Slo:
    fields: dict[str, Any] = {
        "name": "maestro-probes",
        "service": "maestro-api",
        "objective": 99.0,
        "sli": Sli("availability", ProbeSource(("maestro-api-canary",), "prod")),
        "window": Window(rolling_s=7 * DAY),
        "alerting": default_alerting(7 * DAY),
    }
    fields.update(kw)
    return Slo(**fields)


def test_probe_results_become_buckets_and_a_budget(store: SqlStore) -> None:
    # one run a minute for the last 2 hours, 6 of them failed; another flow fails all along
    runs = [(NOW - 2 * HOUR + i * MINUTE + 7, i % 20 != 3) for i in range(120)]
    insert_runs(store, "maestro-api-canary", runs)
    insert_runs(store, "other-flow", [(t, False) for t, _ in runs])
    # neither staging's nor the canary's failures burn the prod budget
    insert_runs(store, "maestro-api-canary", [(t, False) for t, _ in runs], environment="staging")
    insert_runs(store, "maestro-api-canary", [(t, False) for t, _ in runs], version="canary")
    insert_runs(store, "maestro-api-canary", [(t + 1, ok) for t, ok in runs], version="stable")
    buckets = SloBucketStore(store.engine)
    evaluator = SloEvaluator(buckets, probe_db=store.engine)
    slo = probe_slo()
    result = asyncio.run(evaluator.refresh(slo, NOW))
    assert result.period.total == 240 and result.period.bad == 12
    assert result.budget.consumed == pytest.approx(12 / (0.01 * 240))
    assert buckets.cursor(slo.name, "probe") == NOW
    # a late run (written after the last collection) is picked up by the look-back; nothing
    # is counted twice
    insert_runs(store, "maestro-api-canary", [(NOW - 30, False)])
    again = asyncio.run(evaluator.refresh(slo, NOW + MINUTE))
    assert again.period.total == 241 and again.period.bad == 13


def test_missing_probe_minutes_count_as_bad_timeslices(store: SqlStore) -> None:
    # runs stop 10 minutes before now: with missingData bad, those minutes are bad slices
    insert_runs(store, "maestro-api-canary", [(NOW - HOUR + i * MINUTE, True) for i in range(50)])
    slo = probe_slo(budgeting=Budgeting("timeslices", MINUTE, 0.95), missing_data="bad")
    result = asyncio.run(
        SloEvaluator(SloBucketStore(store.engine), probe_db=store.engine).refresh(slo, NOW)
    )
    one_hour = next(w for w in result.windows if w.window_s == HOUR)
    assert one_hour.total == 60 and one_hour.bad == 10 and one_hour.missing == 10
    assert result.state == "page"


def test_router_records_are_counted_once(store: SqlStore) -> None:
    slo = Slo(
        name="shop-latency",
        service="shop",
        objective=99.0,
        sli=Sli("latency", RouterSource(), threshold_ms=150.0),
        window=Window(rolling_s=7 * DAY),
        alerting=default_alerting(7 * DAY),
    )
    buckets = SloBucketStore(store.engine)

    async def scenario() -> tuple[list[Any], list[Any]]:
        async with rig() as r:
            evaluator = SloEvaluator(buckets, router_admin=lambda service: r.admin)
            async with httpx.AsyncClient() as http:
                for _ in range(12):
                    await http.get(f"{r.url}/")
                for _ in range(3):
                    await http.get(f"{r.url}/status", params={"code": "503"})
                for _ in range(2):
                    await http.get(f"{r.url}/slow", params={"s": "0.2"})  # slower than 150ms
            now = time.time()
            assert await evaluator.collect(slo, now) == Collection()
            first = buckets.read(slo.name, now - HOUR, now + HOUR)
            assert await evaluator.collect(slo, time.time()) == Collection()  # nothing new
            second = buckets.read(slo.name, now - HOUR, now + HOUR)
            return first, second

    first, second = asyncio.run(scenario())
    assert sum(b.total for b in first) == 17
    assert sum(b.good for b in first) == 12  # 3 errors and 2 slow requests are bad
    assert first == second


def test_an_unreachable_router_makes_the_result_stale_not_silent(store: SqlStore) -> None:
    slo = Slo(
        name="shop",
        service="shop",
        objective=99.0,
        sli=Sli("availability", RouterSource("127.0.0.1:9")),
        window=Window(rolling_s=7 * DAY),
        alerting=default_alerting(7 * DAY),
    )
    buckets = SloBucketStore(store.engine)
    buckets.put(slo.name, [Bucket(NOW - DAY + i * MINUTE, 100, 100) for i in range(1440)])
    result = asyncio.run(SloEvaluator(buckets).refresh(slo, NOW))
    assert result.stale and [f.source for f in result.collection_failures] == ["router"]
    assert "127.0.0.1:9 is unreachable (ConnectError)" in result.collection_failures[0].reason
    assert result.budget.remaining == 1.0  # the stored buckets alone look perfect...
    assert evaluation_tier(result, slo.release) is Tier.CAUTIOUS  # ...but nobody can tell


def test_unreadable_probe_results_make_the_result_stale(tmp_path: Path, store: SqlStore) -> None:
    elsewhere = sa.create_engine(f"sqlite:///{tmp_path / 'no-probes.db'}")  # no probe_runs
    try:
        evaluator = SloEvaluator(SloBucketStore(store.engine), probe_db=elsewhere)
        result = asyncio.run(evaluator.refresh(probe_slo(), NOW))
    finally:
        elsewhere.dispose()
    assert [(f.source, f.reason) for f in result.collection_failures] == [
        ("probe", "probe results unreadable (OperationalError): no data")
    ]
    # probes that simply did not run are missing data (the SLO's policy), not a failure
    idle = asyncio.run(
        SloEvaluator(SloBucketStore(store.engine), probe_db=store.engine).refresh(probe_slo(), NOW)
    )
    assert not idle.stale
    assert (
        "no probe runs bound to maestro-probes or of maestro-api-canary in prod between the "
        "last collection and now"
    ) in idle.notes


@pytest.fixture
def counters() -> Iterator[str]:
    """A real /metrics endpoint whose app_requests_total{code} grow by 10 good and 1 bad
    request a second, from a background thread."""
    registry = CollectorRegistry()
    requests = Counter("app_requests", "requests", ["code"], registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.25):
            requests.labels("200").inc(2.5)
            requests.labels("500").inc(0.25)

    requests.labels("500").inc(0)
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield f"127.0.0.1:{server.server_port}"
    stop.set()
    ticker.join(timeout=5)
    server.shutdown()
    thread.join(timeout=5)


def test_prometheus_increases_become_buckets(
    store: SqlStore, start_prometheus: Any, counters: str
) -> None:
    prom = start_prometheus([counters])
    prom.wait_for('app_requests_total{code="500"} > 0')
    start = time.time()
    slo = Slo(
        name="app",
        service="app",
        objective=99.0,
        sli=Sli(
            "availability",
            PrometheusSource(
                address=prom.url,
                total=count_template("app_requests_total"),
                bad=count_template('app_requests_total{code="500"}'),
            ),
        ),
        window=Window(rolling_s=DAY),
        resolution_s=3.0,
        alerting=(),
    )
    time.sleep(8)
    now = time.time()
    buckets = SloBucketStore(store.engine)
    assert asyncio.run(SloEvaluator(buckets).collect(slo, now)) == Collection()
    got = [b for b in buckets.read(slo.name, start, now) if b.total > 0]
    assert len(got) >= 2
    for b in got:  # increase() extrapolates, so counts are not whole; the ratio holds
        assert math.isfinite(b.total) and b.total > 0
        assert (b.total - b.good) / b.total == pytest.approx(1 / 11, rel=0.05)
    assert buckets.cursor(slo.name, "prometheus") == max(b.start for b in got)

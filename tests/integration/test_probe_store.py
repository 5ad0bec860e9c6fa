"""Probe results and schedule state in the state store, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.probe import ProbeMetrics, ProbeQuery
from coalmine.probes.model import (
    AssertionResult,
    Attempt,
    FlowResult,
    StepResult,
    Timing,
    Version,
)
from coalmine.probes.store import (
    ProbeStore,
    ScheduleState,
    StoreProbeResults,
    _run_row,
    probe_runs,
    probe_schedule,
    result_from_dict,
    result_to_dict,
    run_score,
)
from coalmine.spec.model import Metric
from coalmine.store.open import open_store
from coalmine.store.sql import alembic_config, metadata


def step(
    name: str,
    passed: bool = True,
    status: int | None = 200,
    *,
    attempts: int = 1,
    skipped: bool = False,
    is_finally: bool = False,
    at: float = 1000.0,
    seconds: float = 0.05,
    timing: Timing | None = None,
) -> StepResult:
    """A step whose last attempt is ``passed``; earlier attempts (retries) failed."""
    if skipped:
        return StepResult(name, "GET", f"http://svc/{name}", (), skipped=True)
    tries = tuple(
        Attempt(
            started_at=at + i,
            duration_s=seconds,
            status=status,
            timing=timing or Timing(0.001, 0.002, 0.0, seconds - 0.004, 0.001),
            assertions=(
                AssertionResult(
                    "status == 200",
                    passed and i == attempts - 1,
                    str(status),
                    "" if passed else "x",
                ),
            ),
            reason="" if passed and i == attempts - 1 else "assertion",
            passed=passed and i == attempts - 1,
        )
        for i in range(attempts)
    )
    return StepResult(name, "GET", f"http://svc/{name}", tries, is_finally=is_finally)


def flow_result(
    flow: str = "checkout",
    *,
    service: str = "shop",
    environment: str = "staging",
    location: str = "local",
    version: Version | None = "canary",
    at: float = 1000.0,
    duration: float = 0.2,
    steps: tuple[StepResult, ...] | None = None,
    success: bool | None = None,
    first: bool | None = None,
    reason: str | None = None,
    failed_step: str | None = None,
    slo: str | None = None,
) -> FlowResult:
    steps = steps if steps is not None else (step("login", at=at), step("cart", at=at))
    journey = [s for s in steps if not s.is_finally and not s.allow_failure]
    ok = all(s.passed for s in journey) if success is None else success
    first_ok = all(s.first_passed for s in journey) if first is None else first
    failed = failed_step
    if failed is None and not ok:
        failed = next((s.name for s in journey if not s.passed), None)
    return FlowResult(
        flow=flow,
        service=service,
        environment=environment,
        location=location,
        version=version,
        started_at=at,
        duration_s=duration,
        steps=steps,
        success=ok,
        first_attempt_success=first_ok,
        reason=("" if ok else "assertion") if reason is None else reason,
        failed_step=failed,
        scheduled_at=at - 0.01,
        slo=slo,
    )


@pytest.fixture
def probes(store_url: str) -> Iterator[ProbeStore]:
    sql = open_store(store_url)
    yield ProbeStore(sql)
    sql.close()


def test_migration_creates_the_probe_tables_as_modelled(probes: ProbeStore) -> None:
    engine = probes.sql.engine
    inspector = sa.inspect(engine)
    assert {"probe_runs", "probe_schedule"} <= set(inspector.get_table_names())
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("probe_runs")}
    assert indexes["ix_probe_runs_service_version_started_at"] == [
        "service",
        "version",
        "started_at",
    ]
    assert indexes["ix_probe_runs_flow_started_at"] == ["flow", "started_at"]
    assert indexes["ix_probe_runs_slo_started_at"] == ["slo", "started_at"]
    assert {c["name"]: c["nullable"] for c in inspector.get_columns("probe_runs")}["slo"]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    ours = [d for d in diff if _mentions(d, (probe_runs.name, probe_schedule.name))]
    assert ours == []


def _mentions(diff: object, tables: tuple[str, ...]) -> bool:
    return any(name in repr(diff) for name in tables)


def test_upgrading_a_0003_database_adds_the_slo_column_and_keeps_runs(store_url: str) -> None:
    command.upgrade(alembic_config(store_url), "0003")
    old = sa.create_engine(store_url)
    try:
        assert "slo" not in {c["name"] for c in sa.inspect(old).get_columns("probe_runs")}
        row = {k: v for k, v in _run_row(flow_result(at=500.0)).items() if k != "slo"}
        before = sa.table("probe_runs", *(sa.column(k, probe_runs.c[k].type) for k in row))
        with old.begin() as conn:
            conn.execute(sa.insert(before), [row])
    finally:
        old.dispose()
    sql = open_store(store_url)  # migrates to the newest revision
    try:
        probes = ProbeStore(sql)
        probes.record(flow_result(at=600.0, slo="shop-probes"))
        with sql.engine.connect() as conn:
            rows = conn.execute(
                sa.select(probe_runs.c.started_at, probe_runs.c.slo).order_by("started_at")
            ).all()
        assert [tuple(r) for r in rows] == [(500.0, None), (600.0, "shop-probes")]
        assert [r["slo"] for r in probes.recent()] == ["shop-probes", None]
    finally:
        sql.close()


def test_results_round_trip_as_json(probes: ProbeStore) -> None:
    original = flow_result(
        steps=(
            step("login", attempts=3),
            step("cart", passed=False, status=500),
            step("pay", skipped=True),
            step("logout", is_finally=True, status=204),
        ),
    )
    assert result_from_dict(result_to_dict(original)) == original
    bound = dataclasses.replace(original, slo="shop-probes")
    assert result_from_dict(result_to_dict(bound)).slo == "shop-probes"
    probes.record(original)
    probes.record(flow_result("search", at=1001.0, version=None))
    newest, oldest = probes.recent()
    assert newest["flow"] == "search" and newest["version"] is None
    assert result_from_dict(oldest) == original
    assert oldest["steps"][0]["passed"] is True and oldest["steps"][0]["first_passed"] is False
    assert [r["flow"] for r in probes.recent(flow="checkout")] == ["checkout"]
    assert len(probes.recent(limit=1)) == 1


def test_score_is_the_share_of_journey_steps_that_passed() -> None:
    assert run_score(flow_result()) == 1.0
    broken = flow_result(
        steps=(
            step("login"),
            step("cart", passed=False, status=None),  # no response: no assertion evaluated
            step("pay", skipped=True),
            step("pay2", skipped=True),
            step("cleanup", is_finally=True),
        )
    )
    assert run_score(broken) == 0.25
    assert run_score(flow_result(steps=(), success=False, reason="timeout")) == 0.0


def test_summary_per_version_and_window(probes: ProbeStore) -> None:
    # canary: 10 runs in the window, 8 successes, durations 100..1000 ms
    for i in range(10):
        ok = i not in (3, 7)
        steps = (step("login"), step("cart", passed=ok))
        probes.record(
            flow_result(at=1000.0 + i, duration=0.1 * (i + 1), steps=steps, version="canary")
        )
    for i in range(4):
        probes.record(flow_result(at=1000.0 + i, duration=0.05, version="stable"))
    probes.record(flow_result(at=5000.0, version="canary"))  # outside the window
    probes.record(flow_result("search", at=1002.0, version="canary", success=False))
    probes.record(flow_result(at=1002.0, service="other", version="canary", success=False))

    # the same runs in prod must not change what staging saw
    for i in range(3):
        probes.record(flow_result(at=1000.0 + i, environment="prod", version="canary"))
    canary = probes.summary(ProbeQuery("shop", "staging", "checkout", "canary", 1000.0, 1009.0))
    assert canary is not None
    assert (canary.runs, canary.successes) == (10, 8)
    assert canary.success_ratio == pytest.approx(0.8)
    assert canary.score == pytest.approx((8 * 1.0 + 2 * 0.5) / 10)
    assert canary.latency_ms["p50"] == pytest.approx(550.0)
    assert canary.latency_ms["p90"] == pytest.approx(910.0)
    assert canary.latency_ms["p99"] == pytest.approx(991.0)

    every_flow = probes.summary(ProbeQuery("shop", "staging", None, "canary", 1000.0, 1009.0))
    assert every_flow is not None and (every_flow.runs, every_flow.successes) == (11, 8)
    stable = probes.summary(ProbeQuery("shop", "staging", "checkout", "stable", 1000.0, 1009.0))
    assert stable is not None and stable.success_ratio == 1.0 and stable.score == 1.0
    prod = probes.summary(ProbeQuery("shop", "prod", "checkout", "canary", 1000.0, 1009.0))
    assert prod is not None and (prod.runs, prod.successes) == (3, 3)
    assert probes.summary(ProbeQuery("shop", "prod", "checkout", "stable", 1000.0, 1009.0)) is None
    later = ProbeQuery("shop", "staging", "checkout", "canary", 2000.0, 3000.0)
    assert probes.summary(later) is None
    assert probes.summary(ProbeQuery("nobody", "staging", None, "canary", 0.0, 1e12)) is None


def test_the_judge_reads_probe_scores_through_the_provider(probes: ProbeStore) -> None:
    for i in range(5):
        probes.record(flow_result(at=990.0 + i, version="stable"))
        ok = i % 2 == 0
        probes.record(
            flow_result(at=990.0 + i, version="canary", steps=(step("a"), step("b", passed=ok)))
        )
    results = StoreProbeResults(probes)
    context = MeasureContext(rollout="shop", service="shop", now=1000.0)
    provider = ProbeMetrics(results)

    def measure(**config: object) -> ProviderResult:
        m = Metric(name="probe", provider={"plugin": {"coalmine/probe": config}})
        return asyncio.run(provider.measure(m, context))

    ratio = measure(query="success-ratio", environment="staging", window="1m", flow="checkout")
    assert ratio.phase != Phase.ERROR
    assert ratio.value == {"canary": pytest.approx(0.6), "stable": 1.0}
    score = measure(query="score", environment="staging", version="canary", window="1m")
    assert score.value == pytest.approx((3 * 1.0 + 2 * 0.5) / 5)
    latency = measure(
        query="latency", environment="staging", quantile=0.9, version="stable", window="1m"
    )
    assert latency.value == pytest.approx(200.0)
    too_few = measure(query="success-ratio", environment="staging", window="1m", minRuns=6)
    assert too_few.phase == Phase.INCONCLUSIVE


def test_the_provider_ignores_another_environments_runs(probes: ProbeStore) -> None:
    # a healthy staging canary must not pass a prod judgement where prod's canary fails
    for i in range(5):
        probes.record(flow_result(at=990.0 + i, environment="staging", version="canary"))
        probes.record(flow_result(at=990.0 + i, environment="staging", version="stable"))
        probes.record(
            flow_result(
                at=990.0 + i,
                environment="prod",
                version="canary",
                steps=(step("a"), step("b", passed=False)),
            )
        )
    context = MeasureContext(rollout="shop", service="shop", now=1000.0)
    provider = ProbeMetrics(StoreProbeResults(probes))

    def ratio(environment: str, version: str) -> ProviderResult:
        config = {"query": "success-ratio", "environment": environment, "version": version}
        m = Metric(name="probe", provider={"plugin": {"coalmine/probe": config}})
        return asyncio.run(provider.measure(m, context))

    assert ratio("prod", "canary").value == 0.0
    assert ratio("staging", "canary").value == 1.0
    no_stable = ratio("prod", "stable")  # staging's stable runs are not prod's
    assert no_stable.phase == Phase.INCONCLUSIVE
    assert "stable has no probe runs in prod" in no_stable.message


def test_schedule_state_upserts(probes: ProbeStore) -> None:
    assert probes.schedule_states() == {}
    a = ScheduleState("checkout", "staging", "local", "canary", 60.0, 1060.0, 1000.5)
    b = ScheduleState("checkout", "staging", "local", None, 60.0, 1030.0, None)
    probes.put_schedule([a, b])
    probes.put_schedule(
        [ScheduleState("checkout", "staging", "local", "canary", 60.0, 1120.0, 1061.0)]
    )
    states = probes.schedule_states()
    assert states[("checkout", "staging", "local", "canary")].next_due == 1120.0
    assert states[("checkout", "staging", "local", "canary")].last_started_at == 1061.0
    assert states[("checkout", "staging", "local", "")] == b


def test_prune_deletes_only_old_runs(probes: ProbeStore) -> None:
    probes.record(flow_result(at=100.0))
    probes.record(flow_result(at=200.0))
    assert probes.prune(150.0) == 1
    assert [r["started_at"] for r in probes.recent()] == [200.0]

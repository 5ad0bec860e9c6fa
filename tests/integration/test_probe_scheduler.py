"""The probe scheduler on real asyncio time with short intervals and fake runs that are slow,
hang or fail on purpose: no overlapping runs, bounded concurrency, timeouts, restart without a
burst, and its own on-time SLI."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from coalmine.errors import SpecError
from coalmine.probes.model import Flow, FlowResult, SLOBinding, Version
from coalmine.probes.scheduler import Scheduler, Target, plan_targets, targets_for
from coalmine.probes.server import serve
from coalmine.probes.store import ProbeStore
from coalmine.store.open import open_store
from tests.unit.test_probe_schedule import make_flow

TOL = 0.03  # on-time tolerance for these short intervals


@dataclass
class Call:
    flow: str
    version: Version | None
    due: float
    start: float
    end: float = 0.0
    cancelled: bool = False


@dataclass
class FakeRun:
    """Records every call; each run takes ``seconds`` (or hangs), or raises ``fail``."""

    seconds: float = 0.0
    hang: bool = False
    fail: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    running: int = 0
    max_running: int = 0

    async def __call__(
        self, flow: Flow, env: str, loc: str, version: Version | None, due: float
    ) -> FlowResult:
        call = Call(flow.name, version, due, time.time())
        self.calls.append(call)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.fail is not None:
                raise self.fail
            if self.hang:
                await asyncio.Event().wait()
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            self.running -= 1
            call.end = time.time()
        return FlowResult(
            flow.name,
            flow.service,
            env,
            loc,
            version,
            call.start,
            call.end - call.start,
            (),
            True,
            True,
        )


@dataclass
class ListSink:
    name: str = "list"
    results: list[FlowResult] = field(default_factory=list)
    closed: bool = False

    async def emit(self, result: FlowResult) -> None:
        self.results.append(result)

    async def close(self) -> None:
        self.closed = True


def scheduler(targets: list[Target], run: FakeRun, **kw: object) -> tuple[Scheduler, ListSink]:
    sink = ListSink()
    options: dict[str, object] = {
        "rng": random.Random(5),
        "min_tolerance_s": TOL,
        "spread_start": False,
        "grace_s": 0.05,
    }
    options.update(kw)
    return Scheduler(targets, run, [sink], **options), sink  # type: ignore[arg-type]


async def run_for(sched: Scheduler, seconds: float, drain_s: float = 2.0) -> None:
    await sched.start()
    await asyncio.sleep(seconds)
    await sched.stop(drain_s)


def test_a_slow_target_never_overlaps_itself_and_skipped_slots_count_as_missed() -> None:
    run = FakeRun(seconds=0.45)  # longer than two intervals
    sched, sink = scheduler(targets_for([make_flow(interval=0.2, timeout=5.0)], "staging"), run)
    asyncio.run(run_for(sched, 1.5))
    spans = sorted((c.start, c.end) for c in run.calls)
    assert len(spans) >= 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # the next run began only after the previous one ended
    assert run.max_running == 1
    stats = sched.stats
    assert stats.missed["overlap"] >= 2 * (len(spans) - 1)
    assert stats.scheduled == len(spans) + stats.missed["overlap"] + stats.missed["late"]
    assert sched.availability() is not None and sched.availability() < 0.5  # type: ignore[operator]
    assert len(sink.results) == len(spans) and sink.closed


def test_concurrency_is_bounded_across_targets() -> None:
    flows = [make_flow(f"f{i}", interval=0.2, timeout=5.0) for i in range(6)]
    run = FakeRun(seconds=0.15)
    sched, sink = scheduler(targets_for(flows, "staging"), run, max_concurrency=2)
    asyncio.run(run_for(sched, 1.0))
    assert run.max_running == 2  # reached, never exceeded
    assert len({c.flow for c in run.calls}) == 6  # every target got its turn
    # six runs of 0.15 s per 0.2 s interval need 4.5 slots at a time: with 2, most start late
    assert sched.stats.on_time < sched.stats.scheduled
    assert len(sink.results) == len(run.calls)


def test_a_hung_run_is_cancelled_and_recorded_as_a_timeout() -> None:
    run = FakeRun(hang=True)
    flow = replace(make_flow(interval=0.3, timeout=0.1), slo=SLOBinding("checkout-probes"))
    sched, sink = scheduler(targets_for([flow], "staging"), run)
    asyncio.run(run_for(sched, 0.8))
    assert len(run.calls) >= 2  # the hang did not block the next slot
    assert all(c.cancelled for c in run.calls)
    assert len(sink.results) == len(run.calls)
    for call, result in zip(run.calls, sink.results, strict=True):
        assert (result.success, result.reason) == (False, "timeout")
        assert result.flow == "checkout" and result.steps == ()
        assert result.slo == "checkout-probes"  # a timed-out run still counts against its SLO
        assert result.scheduled_at == call.due
        assert 0.15 <= result.duration_s < 0.4  # timeout 0.1 + grace 0.05
        assert "did not finish within 0.15 s" in result.error
    assert sched.stats.missed["overlap"] == 0


def test_a_failing_runner_is_recorded_without_its_message() -> None:
    run = FakeRun(fail=RuntimeError("GET https://api/x?token=s3cr3t failed"))
    sched, sink = scheduler(targets_for([make_flow(interval=0.2)], "staging"), run)
    asyncio.run(run_for(sched, 0.5))
    assert sink.results and all(r.reason == "error" for r in sink.results)
    assert all("s3cr3t" not in r.error and "RuntimeError" in r.error for r in sink.results)


@pytest.fixture
def probe_store(tmp_path: Path) -> Iterator[ProbeStore]:
    sql = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield ProbeStore(sql)
    sql.close()


def test_restart_resumes_the_grid_without_a_burst(probe_store: ProbeStore) -> None:
    interval = 0.3
    flows = [make_flow(f"f{i}", interval=interval, timeout=1.0) for i in range(3)]
    targets = targets_for(flows, "staging")

    first_run = FakeRun(seconds=0.01)
    first, _ = scheduler(targets, first_run, state=probe_store)
    asyncio.run(run_for(first, 0.7))
    saved = probe_store.schedule_states()
    assert set(saved) == {t.key for t in targets}
    grid = {key: s.next_due for key, s in saved.items()}
    assert all(s.last_started_at is not None for s in saved.values())

    time.sleep(1.0)  # serve is down for more than three intervals

    second_run = FakeRun(seconds=0.01)
    second, _ = scheduler(targets, second_run, state=probe_store)
    restarted = time.time()
    asyncio.run(run_for(second, 0.75))

    missed = second.stats.missed["restart"]
    assert missed >= 3 * 3  # every target lost at least three slots, all counted
    for target in targets:
        calls = [c for c in second_run.calls if c.flow == target.flow.name]
        assert calls, target.label
        # on the saved grid, never before the restart: missed slots were not run
        for c in calls:
            k = (c.due - grid[target.key]) / interval
            assert k == pytest.approx(round(k), abs=1e-6) and k >= 3
            assert c.due + TOL >= restarted
        # no burst: one run per slot
        dues = [c.due for c in calls]
        assert all(b - a == pytest.approx(interval) for a, b in itertools.pairwise(dues))
    in_first_interval = [c for c in second_run.calls if c.start < restarted + interval - 0.01]
    assert len(in_first_interval) <= len(targets)
    assert second.availability() is not None and second.stats.on_time == len(second_run.calls)


def test_on_time_sli_matches_what_the_runs_saw() -> None:
    # one slot at a time for two targets due together: every tick one of them waits 0.1 s
    flows = [make_flow(f"f{i}", interval=0.3, timeout=1.0) for i in range(2)]
    run = FakeRun(seconds=0.1)
    sched, _ = scheduler(targets_for(flows, "staging"), run, max_concurrency=1)
    asyncio.run(run_for(sched, 1.35))
    stats = sched.stats
    seen_on_time = sum(1 for c in run.calls if c.start - c.due <= TOL)
    seen_late = sum(1 for c in run.calls if c.start - c.due > 0.08)
    assert seen_on_time + seen_late == len(run.calls)  # no ambiguous starts
    assert seen_on_time >= 4 and seen_late >= 4
    assert stats.on_time == seen_on_time
    assert stats.scheduled == len(run.calls)
    assert sched.availability() == pytest.approx(seen_on_time / len(run.calls))
    assert stats.lag_count == len(run.calls)
    ok, body = sched.health()
    assert not ok  # stopped, and far below 99.9% on time
    assert body["alive"] is False


def test_health_while_running() -> None:
    async def body() -> None:
        run = FakeRun(seconds=0.01)
        sched, _ = scheduler(targets_for([make_flow(interval=0.1)], "staging"), run)
        await sched.start()
        await asyncio.sleep(0.35)
        ok, info = sched.health()
        assert ok, info
        assert info["on_time_ratio"] == 1.0 and int(str(info["window"])) >= 3
        await sched.stop()
        ok, info = sched.health()
        assert not ok and "not running" in str(info["reason"])

    asyncio.run(body())


def test_serve_refuses_a_location_no_flow_runs_from_before_it_listens() -> None:
    flows = [make_flow("a", locations=("eu", "us")), make_flow("b")]
    run = FakeRun()
    ready: list[str] = []

    async def body() -> None:
        serving = serve(
            flows,
            "staging",
            run=run,
            stop_event=asyncio.Event(),
            port=0,
            location="nowhere",
            on_ready=ready.append,
        )
        await asyncio.wait_for(serving, 5)  # without the check: serves nothing until stopped

    with pytest.raises(SpecError) as err:
        asyncio.run(body())
    assert err.value.one_line().startswith(
        "schedule.locations: no flow runs from location 'nowhere' "
        "(the flows' locations: eu, local, us)"
    )
    assert ready == [] and run.calls == []
    assert [t.key[2] for t in plan_targets(flows, "staging", "eu")] == ["eu"]
    with pytest.raises(SpecError, match="no flows to schedule"):
        plan_targets([], "staging")

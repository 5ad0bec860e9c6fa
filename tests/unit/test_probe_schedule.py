"""The scheduler's pure decisions (slots, jitter, catch-up, the SLI) on a fake clock, and its
loop driven step by step by a fake clock and a fake sleep."""

from __future__ import annotations

import asyncio
import random

import pytest

from coalmine.clock import FakeClock
from coalmine.errors import SpecError
from coalmine.probes.model import Environment, Flow, FlowResult, Schedule, Version
from coalmine.probes.scheduler import (
    LAG_BUCKETS,
    Scheduler,
    SchedulerStats,
    as_run_flow,
    draw_jitter,
    first_slot,
    is_on_time,
    resume_slot,
    supersede,
    targets_for,
    tolerance_s,
)
from coalmine.probes.store import ScheduleState


def make_flow(
    name: str = "checkout",
    interval: float = 60.0,
    jitter: float = 0.0,
    timeout: float = 10.0,
    locations: tuple[str, ...] = ("local",),
    versions: tuple[Version, ...] = (),
    environments: tuple[str, ...] = ("staging",),
) -> Flow:
    return Flow(
        name=name,
        service="shop",
        file=f"synthetics/{name}.yaml",
        steps=(),
        environments={e: Environment(e, f"http://{e}.example") for e in environments},
        schedule=Schedule(
            interval_s=interval,
            jitter_s=jitter,
            timeout_s=timeout,
            locations=locations,
            versions=versions,
        ),
    )


def saved(next_due: float, interval: float = 60.0, last: float | None = None) -> ScheduleState:
    return ScheduleState("checkout", "staging", "local", None, interval, next_due, last)


# --------------------------------------------------------------------------- pure parts


def test_tolerance_is_a_second_or_a_tenth_of_the_interval() -> None:
    assert tolerance_s(5.0) == 1.0
    assert tolerance_s(60.0) == 6.0
    assert tolerance_s(0.2, minimum_s=0.01) == pytest.approx(0.02)


def test_jitter_is_deterministic_and_bounded() -> None:
    draws = [draw_jitter(10.0, 60.0, random.Random(7)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    rng = random.Random(1)
    values = [draw_jitter(10.0, 60.0, rng) for _ in range(2000)]
    assert all(0.0 <= v < 10.0 for v in values)
    assert max(values) > 9.0 and min(values) < 1.0  # spread over the whole range
    assert draw_jitter(0.0, 60.0, rng) == 0.0
    assert all(draw_jitter(100.0, 60.0, rng) < 60.0 for _ in range(100))  # slots stay in order


def test_first_slot_now_or_spread_over_the_interval() -> None:
    assert first_slot(1000.0, 60.0, random.Random(3), spread=False) == 1000.0
    spread = [first_slot(1000.0, 60.0, random.Random(seed), spread=True) for seed in range(50)]
    assert all(1000.0 <= s < 1060.0 for s in spread)
    assert len({round(s) for s in spread}) > 20


def test_resume_keeps_a_future_slot() -> None:
    assert resume_slot(saved(1060.0), 60.0, now=1030.0, tolerance=6.0, fresh=0.0) == (1060.0, 0)


def test_resume_after_a_crash_skips_missed_slots_without_catch_up() -> None:
    # down from 1000 (next slot 1060) until 1250: slots 1060, 1120, 1180, 1240 fell while down
    slot, missed = resume_slot(saved(1060.0), 60.0, now=1250.0, tolerance=6.0, fresh=0.0)
    assert (slot, missed) == (1300.0, 4)
    # a slot that can still start on time is kept, not missed
    assert resume_slot(saved(1060.0), 60.0, now=1064.0, tolerance=6.0, fresh=0.0) == (1060.0, 0)
    # exactly on a later slot
    assert resume_slot(saved(1060.0), 60.0, now=1180.0, tolerance=0.0, fresh=0.0) == (1180.0, 2)


def test_resume_without_state_uses_the_fresh_slot() -> None:
    assert resume_slot(None, 60.0, now=1000.0, tolerance=6.0, fresh=1017.0) == (1017.0, 0)


def test_resume_with_a_changed_interval_restarts_the_grid_from_the_last_start() -> None:
    state = saved(4600.0, interval=3600.0, last=1000.0)
    assert resume_slot(state, 60.0, now=1030.0, tolerance=6.0, fresh=0.0) == (1060.0, 0)
    assert resume_slot(state, 60.0, now=1200.0, tolerance=6.0, fresh=0.0) == (1240.0, 3)


def test_supersede_skips_slots_a_later_slot_replaced() -> None:
    assert supersede(1000.0, 60.0, now=1030.0) == (1000.0, 0)
    assert supersede(1000.0, 60.0, now=1060.0) == (1060.0, 1)
    assert supersede(1000.0, 60.0, now=1250.0) == (1240.0, 4)


def test_on_time_within_tolerance_after_due() -> None:
    assert is_on_time(due=100.0, started=101.0, tolerance=1.0)
    assert not is_on_time(due=100.0, started=101.01, tolerance=1.0)


def test_stats_sli_and_health_window() -> None:
    stats = SchedulerStats(health_window=4)
    assert stats.availability() is None and stats.recent_ratio() is None
    stats.started(0.01, True)
    stats.started(3.0, False)
    stats.miss("overlap")
    stats.miss("restart", 5)  # counted in the SLI, not in the health window
    assert stats.scheduled == 8 and stats.on_time == 1
    assert stats.availability() == pytest.approx(1 / 8)
    assert stats.recent_ratio() == pytest.approx(1 / 3)
    for _ in range(4):
        stats.started(0.0, True)
    assert stats.recent_ratio() == 1.0  # the window forgets
    assert stats.missed == {"overlap": 1, "late": 0, "restart": 5}
    assert stats.lag_count == 6 and stats.lag_sum == pytest.approx(3.01)
    # cumulative buckets: lags 0 (x4), 0.01 and 3
    by_bound = dict(zip(LAG_BUCKETS, stats.lag_buckets, strict=True))
    assert (by_bound[0.005], by_bound[0.01], by_bound[2.5], by_bound[5.0]) == (4, 5, 5, 6)


def test_targets_expand_locations_and_versions() -> None:
    pinned = make_flow("a", locations=("eu", "us"), versions=("stable", "canary"))
    plain = make_flow("b")
    keys = [t.key for t in targets_for([pinned, plain], "staging")]
    assert keys == [
        ("a", "staging", "eu", "stable"),
        ("a", "staging", "eu", "canary"),
        ("a", "staging", "us", "stable"),
        ("a", "staging", "us", "canary"),
        ("b", "staging", "local", ""),
    ]
    only_eu = [t.key for t in targets_for([pinned, plain], "staging", location="eu")]
    assert only_eu == [("a", "staging", "eu", "stable"), ("a", "staging", "eu", "canary")]


def test_a_flow_without_the_environment_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as err:
        targets_for([make_flow("a", environments=("staging",))], "prod")
    text = err.value.one_line()
    assert "synthetics/a.yaml" in text and "environments" in text and "'prod'" in text


# --------------------------------------------------------------------------- the loop, fake time


class FakeTime:
    """A wall clock and monotonic clock that only move when ``sleep`` is awaited."""

    def __init__(self, start: float = 1000.0) -> None:
        self.clock = FakeClock(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.clock.now()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        for _ in range(10):  # let runs that are starting read the clock before it moves
            await asyncio.sleep(0)
        self.clock.advance(seconds)


def test_loop_runs_every_interval_with_seeded_jitter_on_a_fake_clock() -> None:
    fake = FakeTime()
    calls: list[tuple[float, float]] = []

    async def run(
        flow: Flow, env: str, loc: str, version: Version | None, due: float
    ) -> FlowResult:
        calls.append((fake.clock.now(), due))
        return FlowResult(
            flow.name, flow.service, env, loc, version, fake.clock.now(), 0.0, (), True, True
        )

    def schedule(seed: int) -> list[tuple[float, float]]:
        calls.clear()
        fake.clock = FakeClock(1000.0)

        async def body() -> None:
            sched = Scheduler(
                targets_for([make_flow(interval=60.0, jitter=10.0)], "staging"),
                run,
                clock=fake.clock,
                monotonic=fake.monotonic,
                sleep=fake.sleep,
                rng=random.Random(seed),
                spread_start=False,
            )
            await sched.start()
            while len(calls) < 5:
                await asyncio.sleep(0)
            await sched.stop()
            assert sched.availability() == 1.0

        asyncio.run(body())
        return list(calls)

    first = schedule(42)
    assert schedule(42) == first  # deterministic with an injected rng
    assert schedule(43) != first
    for k, (started, due) in enumerate(first):
        slot = 1000.0 + 60.0 * k
        assert slot <= due < slot + 10.0  # due = slot + jitter in [0, 10)
        assert started == pytest.approx(due)  # started exactly when due (fake clock)


def test_a_keyword_runner_is_adapted_to_the_scheduler_call() -> None:
    seen: list[tuple[str, str, str, Version | None, float | None]] = []

    class Runner:
        async def run(
            self,
            flow: Flow,
            environment: str,
            *,
            location: str = "local",
            version: Version | None = None,
            scheduled_at: float | None = None,
        ) -> FlowResult:
            seen.append((flow.name, environment, location, version, scheduled_at))
            return FlowResult(
                flow.name, flow.service, environment, location, version, 1.0, 0.0, (), True, True
            )

    run = as_run_flow(Runner())
    result = asyncio.run(run(make_flow(), "staging", "eu", "canary", 123.0))
    assert seen == [("checkout", "staging", "eu", "canary", 123.0)]
    assert result.location == "eu"

"""Runs every probe target on its schedule: the loop behind ``coalmine probes serve``.

A *target* is one (flow, environment, location, version) combination. Each target has a fixed
grid of *slots* ``anchor + k * interval``; the run of slot ``k`` is *due* at the slot plus a
random jitter in ``[0, jitter)`` (drawn from the injected ``rng``). The grid never drifts: a
slow run does not push the next slot back.

Every slot counts as one *scheduled run* of the scheduler's own SLI (scheduled runs started on
time ÷ scheduled runs). A run is *on time* when it starts at most ``tolerance`` after its due
time, ``tolerance = max(min_tolerance_s, 10% of the interval)``; the start is when the flow
really begins, after waiting for a concurrency slot. A slot that does not run is *missed*:

- ``overlap``: the target's previous run is still going at the due time (two runs of one target
  never overlap; the slot is skipped, not queued);
- ``late``: the loop woke up so late that the next slot of the grid had already begun (the
  process was starved); the older slot is skipped;
- ``restart``: the slot fell while serve was down. After a restart each target resumes at the
  first slot it can still start on time: no burst of catch-up runs.

Restart misses count in the SLI counters but not in the health window (``/healthz`` judges
whether this process keeps up now; counting downtime there would make a restarted instance
report unhealthy and be restarted again).

A run that outlives ``schedule.timeout_s + grace_s`` is cancelled and recorded as a failed
result with reason ``timeout``; a runner that raises is recorded with reason ``error``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from coalmine.clock import Clock, SystemClock
from coalmine.errors import SpecError
from coalmine.probes.model import Flow, FlowResult, Version
from coalmine.probes.sinks import FanOut, ResultSink
from coalmine.probes.store import ProbeStore, ScheduleState

log = logging.getLogger(__name__)

RunFlow = Callable[[Flow, str, str, Version | None, float], Awaitable[FlowResult]]
"""``run(flow, environment, location, version, scheduled_at) -> FlowResult``."""


class FlowRunner(Protocol):
    """The shape of ``coalmine.probes.runner.ProbeRunner``."""

    def run(
        self,
        flow: Flow,
        environment: str,
        *,
        location: str = "local",
        version: Version | None = None,
        scheduled_at: float | None = None,
    ) -> Awaitable[FlowResult]: ...


def as_run_flow(runner: FlowRunner) -> RunFlow:
    """Adapt a runner's keyword API to the positional :data:`RunFlow` the scheduler calls."""

    async def run(
        flow: Flow, environment: str, location: str, version: Version | None, due: float
    ) -> FlowResult:
        return await runner.run(
            flow, environment, location=location, version=version, scheduled_at=due
        )

    return run


LAG_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
MISS_REASONS: tuple[str, ...] = ("overlap", "late", "restart")
DEFAULT_HEALTH_WINDOW = 1000
DEFAULT_HEALTH_TARGET = 0.999


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    flow: Flow
    environment: str
    location: str
    version: Version | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.flow.name, self.environment, self.location, self.version or "")

    @property
    def label(self) -> str:
        pinned = f" [{self.version}]" if self.version else ""
        return f"{self.flow.name}@{self.environment}/{self.location}{pinned}"


def targets_for(
    flows: Iterable[Flow], environment: str, location: str | None = None
) -> list[Target]:
    """One target per flow, location and pinned version (one unpinned target without
    ``schedule.versions``). ``location`` None: every location each flow lists, from this host;
    otherwise only flows that list ``location``. A flow without ``environment`` is an error."""
    out: list[Target] = []
    for flow in flows:
        if environment not in flow.environments:
            known = ", ".join(sorted(flow.environments)) or "none"
            raise SpecError(
                f"flow {flow.name!r} has no environment {environment!r} (it has: {known})",
                file=flow.file or None,
                line=flow.where.line or None,
                field="environments",
                hint=f"add an environments.{environment} overlay or choose another environment",
            )
        locations = flow.schedule.locations if location is None else (location,)
        if location is not None and location not in flow.schedule.locations:
            log.info("flow %s does not run from location %s: not scheduled", flow.name, location)
            continue
        versions: tuple[Version | None, ...] = flow.schedule.versions or (None,)
        out.extend(
            Target(flow, environment, loc, version) for loc in locations for version in versions
        )
    return out


def plan_targets(
    flows: Sequence[Flow], environment: str, location: str | None = None
) -> list[Target]:
    """:func:`targets_for`, refusing a plan that schedules nothing: a probe service that runs
    no probe would report healthy while watching nothing."""
    targets = targets_for(flows, environment, location)
    if targets:
        return targets
    if location is None or not flows:
        raise SpecError("no flows to schedule", hint="give flow files or directories of flows")
    have = sorted({loc for flow in flows for loc in flow.schedule.locations})
    raise SpecError(
        f"no flow runs from location {location!r} (the flows' locations: {', '.join(have)})",
        field="schedule.locations",
        hint="choose one of those with --location, or add it to a flow's schedule.locations",
    )


# --------------------------------------------------------------------------- pure decisions


def tolerance_s(interval_s: float, minimum_s: float = 1.0, fraction: float = 0.1) -> float:
    """How late after its due time a run may start and still be on time."""
    return max(minimum_s, fraction * interval_s)


def draw_jitter(jitter_s: float, interval_s: float, rng: random.Random) -> float:
    """A jitter in ``[0, jitter_s)``, capped below the interval so slots stay in order."""
    span = min(max(jitter_s, 0.0), 0.9 * interval_s)
    return rng.random() * span if span > 0 else 0.0


def first_slot(now: float, interval_s: float, rng: random.Random, spread: bool) -> float:
    """A new target's first slot: now, or (``spread``) a random point of its first interval, so
    that many targets starting together do not all run at once."""
    return now + (rng.random() * interval_s if spread else 0.0)


def resume_slot(
    saved: ScheduleState | None,
    interval_s: float,
    now: float,
    tolerance: float,
    fresh: float,
) -> tuple[float, int]:
    """``(slot, missed)`` after a (re)start: the first slot of the saved grid that can still
    start on time (``slot + tolerance >= now``) and how many slots fell before it. Without a
    saved state: ``fresh``. If the interval changed, the grid restarts one new interval after
    the last start."""
    if saved is None:
        return fresh, 0
    start = saved.next_due
    if not math.isclose(saved.interval_s, interval_s):
        start = saved.last_started_at + interval_s if saved.last_started_at is not None else fresh
    if start + tolerance >= now:
        return start, 0
    missed = math.ceil((now - tolerance - start) / interval_s - 1e-9)
    slot = start + missed * interval_s
    if slot + tolerance < now:  # float rounding
        missed += 1
        slot += interval_s
    return slot, missed


def supersede(slot: float, interval_s: float, now: float) -> tuple[float, int]:
    """``(slot, skipped)``: when later slots of the grid have already begun (the loop woke
    late), move to the latest begun slot; the ones before it are skipped."""
    if now < slot + interval_s:
        return slot, 0
    skipped = math.floor((now - slot) / interval_s)
    return slot + skipped * interval_s, skipped


def is_on_time(due: float, started: float, tolerance: float) -> bool:
    return started - due <= tolerance


# --------------------------------------------------------------------------- the SLI


@dataclass
class SchedulerStats:
    """The scheduler's own SLI: counters, the lag histogram and a window of recent outcomes."""

    health_window: int = DEFAULT_HEALTH_WINDOW
    scheduled: int = 0
    on_time: int = 0
    missed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MISS_REASONS, 0))
    lag_buckets: list[int] = field(default_factory=lambda: [0] * len(LAG_BUCKETS))
    lag_count: int = 0
    lag_sum: float = 0.0
    in_flight: int = 0
    targets: int = 0
    recent: deque[bool] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=max(1, self.health_window))

    def started(self, lag_s: float, on_time: bool) -> None:
        self.scheduled += 1
        self.on_time += int(on_time)
        self.recent.append(on_time)
        lag = max(0.0, lag_s)
        self.lag_count += 1
        self.lag_sum += lag
        for i, bound in enumerate(LAG_BUCKETS):
            if lag <= bound:
                self.lag_buckets[i] += 1

    def miss(self, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        self.scheduled += count
        self.missed[reason] = self.missed.get(reason, 0) + count
        if reason != "restart":
            self.recent.extend([False] * min(count, self.health_window))

    def availability(self) -> float | None:
        """Scheduled runs started on time ÷ scheduled runs (None before the first slot)."""
        return self.on_time / self.scheduled if self.scheduled else None

    def recent_ratio(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    def as_dict(self) -> dict[str, object]:
        return {
            "scheduled": self.scheduled,
            "on_time": self.on_time,
            "missed": dict(self.missed),
            "availability": self.availability(),
            "recent": {"window": len(self.recent), "on_time_ratio": self.recent_ratio()},
            "lag_seconds": {
                "count": self.lag_count,
                "mean": self.lag_sum / self.lag_count if self.lag_count else None,
            },
            "in_flight": self.in_flight,
            "targets": self.targets,
        }


# --------------------------------------------------------------------------- the loop


def failed_result(
    target: Target,
    *,
    started_at: float,
    duration_s: float,
    scheduled_at: float,
    reason: str,
    error: str,
) -> FlowResult:
    """A result for a run that produced none (cancelled on timeout, or the runner failed)."""
    return FlowResult(
        flow=target.flow.name,
        service=target.flow.service,
        environment=target.environment,
        location=target.location,
        version=target.version,
        started_at=started_at,
        duration_s=duration_s,
        steps=(),
        success=False,
        first_attempt_success=False,
        reason=reason,
        failed_step=None,
        scheduled_at=scheduled_at,
        error=error,
        slo=target.flow.slo_name,
    )


@dataclass
class _State:
    target: Target
    interval_s: float
    tolerance: float
    slot: float
    due: float
    running: bool = False
    last_started_at: float | None = None


class Scheduler:
    """Runs ``targets`` with ``run`` and hands every result to ``sinks``.

    ``clock`` gives wall time (due times, results), ``monotonic`` measures durations, ``sleep``
    waits; ``state`` (a ProbeStore) persists each target's next slot so a restart resumes the
    grid. ``start()`` launches the loop; ``stop()`` ends it, waits up to ``drain_s`` for runs in
    flight, then cancels them.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        run: RunFlow,
        sinks: Sequence[ResultSink] = (),
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        max_concurrency: int = 16,
        state: ProbeStore | None = None,
        grace_s: float = 1.0,
        min_tolerance_s: float = 1.0,
        spread_start: bool = True,
        health_window: int = DEFAULT_HEALTH_WINDOW,
        health_target: float = DEFAULT_HEALTH_TARGET,
    ) -> None:
        keys = [t.key for t in targets]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate probe targets")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.targets = list(targets)
        self._run = run
        self.sink = FanOut(sinks)
        self.clock = clock or SystemClock()
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.max_concurrency = max_concurrency
        self._sem = asyncio.Semaphore(max_concurrency)
        self.store = state
        self.grace_s = grace_s
        self.min_tolerance_s = min_tolerance_s
        self.spread_start = spread_start
        self.health_target = health_target
        self.stats = SchedulerStats(health_window=health_window)
        self.stats.targets = len(self.targets)
        self._states: list[_State] = []
        self._dirty: set[tuple[str, str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = False

    # lifecycle

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done() and not self._stopping

    async def start(self) -> None:
        """Load the saved schedule (counting restart misses) and launch the loop."""
        if self._loop_task is not None:
            raise RuntimeError("the scheduler was already started")
        saved: dict[tuple[str, str, str, str], ScheduleState] = {}
        if self.store is not None:
            saved = await asyncio.to_thread(self.store.schedule_states)
        now = self.clock.now()
        for target in self.targets:
            sched = target.flow.schedule
            interval = max(sched.interval_s, 1e-3)
            tol = tolerance_s(interval, self.min_tolerance_s)
            fresh = first_slot(now, interval, self._rng, self.spread_start)
            slot, missed = resume_slot(saved.get(target.key), interval, now, tol, fresh)
            if missed:
                log.info("%s: %d slot(s) missed while serve was down", target.label, missed)
                self.stats.miss("restart", missed)
            previous = saved.get(target.key)
            state = _State(
                target=target,
                interval_s=interval,
                tolerance=tol,
                slot=slot,
                due=slot + draw_jitter(sched.jitter_s, interval, self._rng),
                last_started_at=previous.last_started_at if previous else None,
            )
            self._states.append(state)
            self._dirty.add(target.key)
        await self._flush_state()
        self._loop_task = asyncio.create_task(self._loop(), name="probe-scheduler")

    @property
    def started(self) -> bool:
        return self._loop_task is not None

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop scheduling, let runs in flight finish for up to ``drain_s``, cancel the rest,
        save the schedule and close the sinks. A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            except Exception:  # the loop itself failed: already logged
                pass
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=drain_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._flush_state()
        await self.sink.close()

    async def run_until(self, stop_event: asyncio.Event, drain_s: float = 5.0) -> None:
        await self.start()
        try:
            await stop_event.wait()
        finally:
            await self.stop(drain_s)

    # the SLI

    def availability(self) -> float | None:
        """Scheduled runs started on time ÷ scheduled runs, since this process started
        (restart misses included); None before the first slot."""
        return self.stats.availability()

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy: the loop is alive and at least ``health_target`` of the last
        ``health_window`` in-process slots started on time (no slots yet: healthy)."""
        ratio = self.stats.recent_ratio()
        body: dict[str, object] = {
            "alive": self.alive,
            "on_time_ratio": ratio,
            "window": len(self.stats.recent),
            "target": self.health_target,
        }
        if not self.alive:
            body["reason"] = "the scheduler loop is not running"
            return False, body
        if ratio is not None and ratio < self.health_target:
            late = len(self.stats.recent) - sum(self.stats.recent)
            body["reason"] = (
                f"{late} of the last {len(self.stats.recent)} scheduled runs did not start on "
                f"time (on-time ratio {ratio:.4f} < {self.health_target})"
            )
            return False, body
        return True, body

    # internals

    async def _loop(self) -> None:
        try:
            while not self._stopping:
                now = self.clock.now()
                for state in self._states:
                    self._tick(state, now)
                await self._flush_state()
                if self._stopping:
                    break
                if not self._states:
                    delay = 3600.0
                else:
                    delay = min(s.due for s in self._states) - self.clock.now()
                if delay > 0:
                    await self._wait(delay)
                else:
                    await asyncio.sleep(0)  # let started runs get going
        except Exception:
            log.exception("the probe scheduler loop failed")
            raise

    async def _wait(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, waker):
                if not fut.done():
                    fut.cancel()
        self._wake.clear()  # after waking, so that a stop() during a tick is not lost

    def _next_slot(self, state: _State, slot: float) -> None:
        state.slot = slot
        jitter = draw_jitter(state.target.flow.schedule.jitter_s, state.interval_s, self._rng)
        state.due = slot + jitter
        self._dirty.add(state.target.key)

    def _tick(self, state: _State, now: float) -> None:
        if now < state.due:
            return
        slot, skipped = supersede(state.slot, state.interval_s, now)
        if skipped:
            log.warning(
                "%s: %d slot(s) skipped, the scheduler woke late", state.target.label, skipped
            )
            self.stats.miss("late", skipped)
            self._next_slot(state, slot)
            if now < state.due:
                return
        due = state.due
        self._next_slot(state, state.slot + state.interval_s)
        if state.running:
            log.warning("%s: previous run still going, slot skipped", state.target.label)
            self.stats.miss("overlap")
            return
        state.running = True
        task = asyncio.create_task(self._run_one(state, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, state: _State, due: float) -> None:
        target = state.target
        result: FlowResult | None = None
        try:
            async with self._sem:
                if self._stopping:
                    return
                started = self.clock.now()
                began = self._monotonic()
                self.stats.started(started - due, is_on_time(due, started, state.tolerance))
                state.last_started_at = started
                self._dirty.add(target.key)
                self.stats.in_flight += 1
                try:
                    result = await self._call(target, due, started, began)
                finally:
                    self.stats.in_flight -= 1
        finally:
            state.running = False
        if result is not None:
            await self.sink.emit(result)

    async def _call(self, target: Target, due: float, started: float, began: float) -> FlowResult:
        limit = target.flow.schedule.timeout_s + self.grace_s
        try:
            result = await asyncio.wait_for(
                self._run(target.flow, target.environment, target.location, target.version, due),
                timeout=limit,
            )
        except TimeoutError:
            log.warning("%s: run cancelled after %.3g s", target.label, limit)
            return failed_result(
                target,
                started_at=started,
                duration_s=self._monotonic() - began,
                scheduled_at=due,
                reason="timeout",
                error=f"the flow run did not finish within {limit:g} s "
                f"(timeout {target.flow.schedule.timeout_s:g} s + {self.grace_s:g} s grace) "
                "and was cancelled",
            )
        except Exception as err:  # a runner bug must not stop the schedule
            # the message may hold unredacted values: only the type is kept
            log.error("%s: the probe runner failed (%s)", target.label, type(err).__name__)
            return failed_result(
                target,
                started_at=started,
                duration_s=self._monotonic() - began,
                scheduled_at=due,
                reason="error",
                error=f"the probe runner failed: {type(err).__name__}",
            )
        if result.scheduled_at is None:
            result = dataclasses.replace(result, scheduled_at=due)
        return result

    async def _flush_state(self) -> None:
        if self.store is None or not self._dirty:
            return
        by_key = {s.target.key: s for s in self._states}
        rows = [
            ScheduleState(
                flow=s.target.flow.name,
                environment=s.target.environment,
                location=s.target.location,
                version=s.target.version,
                interval_s=s.interval_s,
                next_due=s.slot,
                last_started_at=s.last_started_at,
            )
            for key in self._dirty
            if (s := by_key.get(key)) is not None
        ]
        self._dirty = set()
        try:
            await asyncio.to_thread(self.store.put_schedule, rows)
        except Exception as err:  # keep probing; the next flush retries
            log.warning("cannot save the probe schedule: %s", err)
            self._dirty.update(r.key for r in rows)

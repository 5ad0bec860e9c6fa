"""The controller loop: the I/O around the pure ``reconcile`` step.

Each tick, per active rollout: collect finished measurements and the router's confirmations,
read pending user commands, reconcile, store the outcome in one transaction, then carry out the
actions (routing changes, receipt files). Measurements run as background tasks, so a slow
provider never delays a rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from coalmine.analysis import run as analysis_run
from coalmine.analysis.run import RunState
from coalmine.analysis.types import Measurement, Phase, ProviderResult
from coalmine.clock import Clock
from coalmine.errors import CoalmineError, RouterError, StaleRoutingError
from coalmine.evidence.receipts import write_receipt
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.probe import ProbeResults
from coalmine.metrics.registry import Providers
from coalmine.rollout.budget import BudgetObservation
from coalmine.rollout.budget_source import BudgetSource
from coalmine.rollout.reconcile import MeasurementResult, Observations, reconcile
from coalmine.rollout.state import Plan, RolloutState
from coalmine.spec.model import Metric
from coalmine.store.base import Decision, Receipt, RolloutRecord, Store
from coalmine.traffic.base import Routing, TrafficRouter

log = logging.getLogger("coalmine.controller")

MEASUREMENT_TIMEOUT_S = 30.0


def probe_results(store: Store) -> ProbeResults | None:
    """What the probe service stored, for the ``coalmine/probe`` metrics (SQL stores only)."""
    from coalmine.store.sql import SqlStore

    if not isinstance(store, SqlStore):
        return None
    from coalmine.probes.store import ProbeStore, StoreProbeResults

    return StoreProbeResults(ProbeStore(store))


def is_settled(record: RolloutRecord) -> bool:
    """Nothing left to do: terminal, routing confirmed, rollback receipt written."""
    state = RolloutState.from_dict(record.state)
    return state.phase.terminal and state.pending_rollback is None and state.routing_settled


@dataclass
class _Live:
    """What the runner knows about one rollout that is not worth storing."""

    plan: Plan
    router: TrafficRouter
    providers: Providers
    in_flight: dict[tuple[str, str], asyncio.Task[MeasurementResult]] = field(default_factory=dict)
    done: list[MeasurementResult] = field(default_factory=list)
    applied: tuple[int, float] | None = None
    stale_router_generation: int | None = None
    asserted: bool = False
    router_error: str | None = None
    receipts_written: int = 0
    budget: BudgetObservation | None = None  # the service's SLOs as last evaluated
    budget_task: asyncio.Task[BudgetObservation] | None = None


class Controller:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        plan_for: Callable[[RolloutRecord], Plan],
        router_for: Callable[[RolloutRecord], TrafficRouter],
        receipts_dir: Path,
        tick_s: float = 0.2,
        controller_id: str | None = None,
        budget_source: BudgetSource | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.plan_for = plan_for
        self.router_for = router_for
        self.receipts_dir = receipts_dir
        self.tick_s = tick_s
        # None: no SLO evaluation here; a plan with SLOs then sees an unknown budget (cautious)
        self.budget_source = budget_source
        self.controller_id = controller_id or f"{socket.gethostname()}:{os.getpid()}"
        self.live: dict[tuple[str, int], _Live] = {}
        self.receipt_paths: list[Path] = []

    # ------------------------------------------------------------------ loop

    async def run(
        self,
        names: set[str] | None = None,
        stop: asyncio.Event | None = None,
        exit_when_settled: bool = False,
    ) -> None:
        """Reconcile every active rollout (or only ``names``) until ``stop`` is set, or, with
        ``exit_when_settled``, until they are all settled."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self.store.heartbeat(self.controller_id, self.clock.now())
            records = [
                r
                for r in self.store.list_rollouts()
                if (names is None or r.name in names)
                and (not is_settled(r) or self.store.pending_commands(r.name))
            ]
            for record in records:
                try:
                    await self.tick(record)
                except CoalmineError as err:  # e.g. another controller saved first
                    log.warning("rollout %s: %s", record.name, err.one_line())
            if exit_when_settled and not records:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
        await self.close()

    async def close(self) -> None:
        for live in self.live.values():
            for task in live.in_flight.values():
                task.cancel()
            if live.budget_task is not None:
                live.budget_task.cancel()
        self.live.clear()

    # ------------------------------------------------------------------ one tick

    async def tick(self, record: RolloutRecord) -> RolloutRecord:
        live = self._live(record)
        for _ in range(3):  # a confirmed routing change may let the rollout go on at once
            record, acted = await self._step(record, live)
            if not acted:
                break
        return record

    def _live(self, record: RolloutRecord) -> _Live:
        key = (record.name, record.revision)
        if key not in self.live:
            router = self.router_for(record)
            self.live[key] = _Live(
                plan=self.plan_for(record),
                router=router,
                providers=Providers(router, probes=probe_results(self.store)),
            )
            self.receipt_paths_for(record)
        return self.live[key]

    async def _step(self, record: RolloutRecord, live: _Live) -> tuple[RolloutRecord, bool]:
        state = RolloutState.from_dict(record.state)
        now = self.clock.now()
        if live.plan.slos and not state.phase.terminal:
            await self._refresh_budget(live, now)
        measurements = tuple(live.done)
        commands = tuple(self.store.pending_commands(record.name))
        obs = Observations(
            measurements=measurements,
            commands=commands,
            applied_generation=live.applied[0] if live.applied else None,
            applied_at=live.applied[1] if live.applied else None,
            stale_router_generation=live.stale_router_generation,
            budget=live.budget,
        )
        outcome = reconcile(live.plan, state, obs, now)
        changed = (
            outcome.state != state or outcome.decisions or outcome.receipts or outcome.consumed
        )
        receipts = [
            Receipt(
                receipt_id=str(uuid.uuid4()),
                rollout=record.name,
                revision=record.revision,
                operation=draft.operation,
                timestamp=now + i * 1e-6,  # keeps their order when listed by time
                body=draft.body,
            )
            for i, draft in enumerate(outcome.receipts)
        ]
        if changed:
            record = self.store.save(
                replace(
                    record,
                    phase=str(outcome.state.phase),
                    state=outcome.state.to_dict(),
                    updated_at=now,
                ),
                decisions=[
                    Decision(record.name, record.revision, now, d.kind, d.reason, d.step, d.data)
                    for d in outcome.decisions
                ],
                receipts=receipts,
                consumed_commands=list(outcome.consumed),
            )
        # Only now, with the new state stored, act on it.
        live.done.clear()
        live.stale_router_generation = None
        if receipts:
            self.receipt_paths_for(record)
        new_state = outcome.state
        acted = False
        routing_needed = outcome.actions or (
            not new_state.routing_settled or (not live.asserted and not new_state.phase.terminal)
        )
        if routing_needed:
            acted = await self._apply_routing(live, new_state.routing)
        live.asserted = True
        self._start_measurements(record, new_state, live, now)
        return record, acted

    async def _refresh_budget(self, live: _Live, now: float) -> None:
        """Keep ``live.budget`` at most ``refresh_s`` old. The first evaluation is awaited (a
        rollout never starts on a budget not yet read); later ones run in the background."""
        source = self.budget_source
        if source is None:
            return
        task = live.budget_task
        if task is not None and task.done():
            live.budget_task = None
            if task.cancelled() or task.exception() is not None:
                live.budget = BudgetObservation(now, error="the SLO evaluation failed")
            else:
                live.budget = task.result()
        if live.budget is None and live.budget_task is None:
            live.budget = await source.observe(live.plan.slos, now)
            return
        due = live.budget is None or now - live.budget.at >= source.refresh_s
        if due and live.budget_task is None:
            live.budget_task = asyncio.create_task(source.observe(live.plan.slos, now))

    async def _apply_routing(self, live: _Live, routing: Routing) -> bool:
        try:
            served = await live.router.set_routing(routing)
        except StaleRoutingError as err:
            live.stale_router_generation = err.current_generation
            return True
        except RouterError as err:
            if live.router_error != err.message:
                log.warning("router: %s", err.one_line())
            live.router_error = err.message
            return False
        live.router_error = None
        live.applied = (served.generation, self.clock.now())
        return True

    # ------------------------------------------------------------------ measurements

    def _start_measurements(
        self, record: RolloutRecord, state: RolloutState, live: _Live, now: float
    ) -> None:
        if state.phase.terminal:
            return
        plan = live.plan
        runs: list[tuple[RunState, tuple[Metric, ...]]] = []
        if state.step_run is not None:
            runs.append((state.step_run, plan.step_metrics.get(state.step_index, ())))
        if state.background_run is not None:
            runs.append((state.background_run, plan.background_metrics))
        for run, metrics in runs:
            by_name = {m.name: m for m in metrics}
            for name in analysis_run.due_metrics(run, metrics, now):
                key = (run.name, name)
                if key in live.in_flight:
                    continue
                metric = by_name[name]
                context = MeasureContext(
                    rollout=record.name,
                    service=plan.rollout.service,
                    now=now,
                    time_scale=plan.time_scale,
                    run_started_at=run.started_at,
                    final_look=metric.count is not None
                    and run.metric(name).count + 1 >= metric.count,
                )
                task = asyncio.create_task(self._measure(live, run.name, by_name[name], context))
                live.in_flight[key] = task
                task.add_done_callback(functools.partial(self._collect, live, key))

    def _collect(
        self, live: _Live, key: tuple[str, str], task: asyncio.Task[MeasurementResult]
    ) -> None:
        live.in_flight.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            live.done.append(task.result())

    async def _measure(
        self, live: _Live, run_name: str, metric: Metric, context: MeasureContext
    ) -> MeasurementResult:
        started = self.clock.now()
        provider = live.providers.for_metric(metric)
        try:
            result = await asyncio.wait_for(
                provider.measure(metric, context), MEASUREMENT_TIMEOUT_S
            )
        except TimeoutError:
            result = ProviderResult(phase=Phase.ERROR, message="the measurement timed out")
        except CoalmineError as err:
            result = ProviderResult(phase=Phase.ERROR, message=err.one_line())
        except Exception as err:  # a provider bug must not stop the controller
            log.exception("provider %s failed", metric.provider_name)
            result = ProviderResult(phase=Phase.ERROR, message=f"provider failed: {err!r}")
        measurement: Measurement = analysis_run.measurement_from(
            metric, result, started, self.clock.now()
        )
        return MeasurementResult(run_name=run_name, metric=metric.name, measurement=measurement)

    # ------------------------------------------------------------------ receipts

    def receipt_paths_for(self, record: RolloutRecord) -> list[Path]:
        """Write every receipt of this revision that has no file yet (after a crash too)."""
        receipts = [r for r in self.store.receipts(record.name) if r.revision == record.revision]
        paths = [write_receipt(self.receipts_dir, r, i + 1) for i, r in enumerate(receipts)]
        for path in paths:
            if path not in self.receipt_paths:
                self.receipt_paths.append(path)
        return paths

"""The controller's decision core: ``reconcile(plan, state, observations, now)``.

A pure function. It reads no clock and does no I/O: the runner gives it what happened since the
last step (measurements taken, user commands, what the router confirmed) and carries out the
actions it returns, after the new state has been stored. Re-running a step with the same inputs
gives the same result, which is what makes restarts safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from coalmine.analysis import run as analysis_run
from coalmine.analysis.run import RunState
from coalmine.analysis.types import Measurement, Phase
from coalmine.rollout.budget import (
    BudgetObservation,
    BurnSignal,
    PolicyVerdict,
    how_to_proceed,
    release_policy,
)
from coalmine.rollout.state import PauseReason, PendingRollback, Plan, RolloutPhase, RolloutState
from coalmine.spec.model import Analysis, Metric, Pause, SetHeaderRoute, SetWeight
from coalmine.store.base import Command
from coalmine.traffic.base import HeaderRoute, Routing

COMMANDS = ("promote", "pause", "resume", "abort", "retry", "undo", "approve")


@dataclass(frozen=True)
class MeasurementResult:
    run_name: str  # the RunState.name it was taken for; results for an older run are dropped
    metric: str
    measurement: Measurement


@dataclass(frozen=True)
class Observations:
    measurements: tuple[MeasurementResult, ...] = ()
    commands: tuple[Command, ...] = ()
    applied_generation: int | None = None  # the routing generation the router confirmed
    applied_at: float | None = None
    stale_router_generation: int | None = None  # the router refused ours: it is at this one
    # the service's SLOs as last evaluated (None: not evaluated; unknown budget when the plan
    # has SLOs)
    budget: BudgetObservation | None = None


@dataclass(frozen=True)
class SetRouting:
    routing: Routing


@dataclass(frozen=True)
class DecisionDraft:
    kind: str
    reason: str
    step: int | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptDraft:
    operation: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    state: RolloutState
    actions: tuple[SetRouting, ...]
    decisions: tuple[DecisionDraft, ...]
    receipts: tuple[ReceiptDraft, ...]
    consumed: tuple[int, ...]


def reconcile(plan: Plan, state: RolloutState, obs: Observations, now: float) -> Outcome:
    step = _Reconciler(plan, state, now, obs.budget)
    if state.phase == RolloutPhase.PENDING:
        step.start()
    step.note_router(obs)
    for command in obs.commands:
        step.command(command)
    step.record(obs.measurements)
    if not step.state.phase.terminal:
        step.watch_burn()
    if not step.state.phase.terminal:
        step.watch_background()
    if not step.state.phase.terminal:
        step.recheck_held()
        step.advance()
    return step.outcome(tuple(c.id for c in obs.commands))


def command_problem(state: RolloutState, name: str) -> str | None:
    """Why ``name`` cannot apply to a rollout in ``state`` (None when it can)."""
    phase = state.phase
    if name not in COMMANDS:
        return f"unknown command {name!r}; use one of {', '.join(COMMANDS)}"
    if name == "retry":
        ok = phase in (RolloutPhase.ABORTED, RolloutPhase.ROLLED_BACK)
        return None if ok else f"only an aborted or rolled-back rollout can be retried ({phase})"
    if name == "undo":
        return (
            None
            if phase == RolloutPhase.HEALTHY
            else (f"only a Healthy (fully promoted) rollout can be undone ({phase}); use abort")
        )
    if phase.terminal:
        return f"the rollout is {phase}; nothing to {name}"
    if name == "resume" and phase != RolloutPhase.PAUSED:
        return f"the rollout is not paused ({phase})"
    if name == "pause" and state.pause_reason == PauseReason.USER:
        return "the rollout is already paused"
    if name == "promote" and state.pause_reason == PauseReason.BUDGET:
        return (
            "the release policy holds it (error budget); approve it (a fix, or an emergency "
            "with --emergency) or abort it"
        )
    return None


def phase_name(weight: int, routes: tuple[HeaderRoute, ...]) -> str:
    """The reference document's names: ``canary`` (test tenants only), ``5_percent``, ..."""
    if weight == 0:
        return "canary" if routes else "none"
    return f"{weight}_percent"


def run_evidence(run: RunState, metrics: tuple[Metric, ...]) -> dict[str, Any]:
    """What a receipt keeps of an analysis run: per metric its conditions, last value,
    counters, phase and the reason."""
    by_name = {m.name: m for m in metrics}
    out: dict[str, Any] = {"run": run.name, "phase": str(run.phase), "message": run.message}
    checks: dict[str, Any] = {}
    for result in run.metrics:
        metric = by_name.get(result.name)
        last = result.measurements[-1] if result.measurements else None
        checks[result.name] = {
            "phase": str(result.phase),
            "status": _status_word(result.phase),
            "success_condition": metric.success_condition if metric else None,
            "failure_condition": metric.failure_condition if metric else None,
            "value": last.value if last else None,
            "details": last.details if last else {},
            "message": (last.message if last else "") or result.message,
            "measurements": result.count + result.error,
            "failed": result.failed,
            "inconclusive": result.inconclusive,
            "errors": result.error,
            "dry_run": result.dry_run,
        }
    out["metrics"] = checks
    return out


def _status_word(phase: Phase) -> str:
    return {
        Phase.SUCCESSFUL: "PASS",
        Phase.FAILED: "FAIL",
        Phase.ERROR: "ERROR",
        Phase.INCONCLUSIVE: "INCONCLUSIVE",
    }.get(phase, "RUNNING")


class _Reconciler:
    """One reconcile step. Mutable only while it runs; produces an immutable Outcome."""

    def __init__(
        self, plan: Plan, state: RolloutState, now: float, budget: BudgetObservation | None = None
    ) -> None:
        self.plan = plan
        self.state = state
        self.now = now
        self.budget = budget
        self.actions: list[SetRouting] = []
        self.decisions: list[DecisionDraft] = []
        self.receipts: list[ReceiptDraft] = []

    # ------------------------------------------------------------------ bookkeeping

    def outcome(self, consumed: tuple[int, ...]) -> Outcome:
        return Outcome(
            self.state, tuple(self.actions), tuple(self.decisions), tuple(self.receipts), consumed
        )

    def decide(self, kind: str, reason: str, **data: Any) -> None:
        self.decisions.append(DecisionDraft(kind, reason, self.state.step_index, data))

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def route(self, weight: int, routes: tuple[HeaderRoute, ...], reason: str) -> None:
        before = self.state
        self.state = before.with_routing(weight, routes)
        self.actions.append(SetRouting(self.state.routing))
        self.decide(
            "routing-set",
            reason,
            canary_weight=weight,
            header_routes=[r.name for r in routes],
            previous_weight=before.canary_weight,
            generation=self.state.generation,
        )

    @property
    def steps(self) -> tuple[Any, ...]:
        return self.plan.rollout.steps

    def _base_receipt(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rollout": self.plan.name,
            "service": self.plan.rollout.service,
            "version": self.plan.rollout.canary_version,
            "previous_version": self.plan.stable_version,
        }
        if self.plan.slos:
            out["rollout_class"] = self.plan.rollout_class
            out["budget_policy"] = self.state.budget
            if self.state.approval is not None:
                out["approval"] = self.state.approval
        return out

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.set(
            phase=RolloutPhase.PROGRESSING,
            started_at=self.now,
            phase_started_at=self.now,
            message=f"started: {len(self.steps)} steps",
        )
        self.decide("started", f"rollout started with {len(self.steps)} steps")
        if not self.plan.slos:
            self.decide(
                "budget-policy",
                f"no SLO for service {self.plan.rollout.service!r}: the error-budget release "
                "policy does not apply",
            )
        elif self.budget is not None and self.plan.rollout_class in ("fix", "rollback"):
            for burn in self.budget.page_burns():
                # the incident a fix (or rollback) is released for: noted, not acted upon
                self.burn_applies(burn)
        # Whatever the router serves now, the rollout begins from all-stable.
        self.route(0, (), "a rollout starts with all traffic on the stable version")

    def note_router(self, obs: Observations) -> None:
        stale = obs.stale_router_generation
        if stale is not None and stale >= self.state.generation:
            # Someone else (another revision, a manual override) moved the router's generation
            # past ours: take the next one and assert what this rollout wants.
            old = self.state.generation
            pending = self.state.pending_rollback
            self.set(
                generation=stale + 1, applied_generation=min(self.state.applied_generation, stale)
            )
            if pending and pending.generation == old:
                self.set(pending_rollback=replace(pending, generation=stale + 1))
            self.actions.append(SetRouting(self.state.routing))
            self.decide(
                "routing-reasserted",
                f"the router was at generation {stale}; routing sent again as "
                f"generation {stale + 1}",
                generation=stale + 1,
            )
        applied = obs.applied_generation
        if applied is None or applied <= self.state.applied_generation:
            return
        self.set(applied_generation=min(applied, self.state.generation))
        pending = self.state.pending_rollback
        if pending and applied >= pending.generation:
            applied_at = obs.applied_at if obs.applied_at is not None else self.now
            self.rollback_receipt(pending, applied_at)
            self.set(pending_rollback=None)

    def command(self, command: Command) -> None:
        problem = command_problem(self.state, command.name)
        if problem:
            self.decide("command-rejected", f"{command.name}: {problem}", command=command.name)
            return
        handler = getattr(self, f"cmd_{command.name}")
        handler(command.args)

    # ------------------------------------------------------------------ user commands

    def cmd_promote(self, args: dict[str, Any]) -> None:
        if args.get("full"):
            self.decide("promoted-full", "promoted by user: skip every remaining step")
            self._end_step_run("skipped by a full promotion")
            self.set(step_index=len(self.steps), step_started_at=None, pause_reason=None)
            self.set(phase=RolloutPhase.PROGRESSING, paused_at=None)
            return
        reason = self.state.pause_reason
        bg = self.state.background_run
        if reason == PauseReason.INCONCLUSIVE and bg is not None and bg.phase == Phase.INCONCLUSIVE:
            self.set(background_run=None)  # start watching again from scratch
        self.decide("promoted", "promoted by user: the current step is accepted and skipped")
        self.set(phase=RolloutPhase.PROGRESSING, pause_reason=None, paused_at=None)
        self._end_step_run("skipped by promote")
        self.next_step()

    def cmd_pause(self, args: dict[str, Any]) -> None:
        self.decide("paused", "paused by user")
        self.set(
            phase=RolloutPhase.PAUSED,
            pause_reason=PauseReason.USER,
            paused_at=self.now,
            message="paused by user",
        )

    def cmd_resume(self, args: dict[str, Any]) -> None:
        reason = self.state.pause_reason
        self.set(phase=RolloutPhase.PROGRESSING, pause_reason=None)
        if reason == PauseReason.BUDGET:
            self.set(paused_at=None)
            self.decide("resumed", "resumed by user: the release policy is checked again")
        elif reason == PauseReason.USER:
            started = self.state.step_started_at
            if started is not None and self.state.paused_at is not None:
                # a timed pause does not count the time the user held the rollout
                started += self.now - self.state.paused_at
            self.set(step_started_at=started, paused_at=None)
            self.decide("resumed", "resumed by user")
        elif reason == PauseReason.PAUSE_STEP:
            self.set(paused_at=None)
            self.decide("resumed", "resumed by user: the pause step is over")
            self.next_step()
        else:  # inconclusive: measure again
            self.set(paused_at=None)
            if self.state.background_run and self.state.background_run.phase == Phase.INCONCLUSIVE:
                self.set(background_run=None)
            if self.state.step_run and self.state.step_run.phase == Phase.INCONCLUSIVE:
                self.set(step_run=None)
            self.decide("resumed", "resumed by user: the inconclusive analysis runs again")

    def cmd_abort(self, args: dict[str, Any]) -> None:
        burn = args.get("burn")
        if isinstance(burn, dict):  # from Alertmanager's webhook (coalmine slo webhook)
            try:
                signal = BurnSignal.from_dict(burn)
            except (KeyError, TypeError, ValueError) as err:
                self.decide(
                    "command-rejected", f"abort: unreadable burn details ({err!r})", command="abort"
                )
                return
            if self.burn_applies(signal):
                self.burn_rollback(signal)
            return
        self.rollback(
            "aborted-by-user",
            failure_reason=str(args.get("reason") or "aborted by user"),
            final_phase=RolloutPhase.ABORTED,
        )

    def cmd_retry(self, args: dict[str, Any]) -> None:
        fresh = RolloutState(
            generation=self.state.generation,
            applied_generation=self.state.applied_generation,
            rollbacks=self.state.rollbacks,
            pending_rollback=self.state.pending_rollback,
            canary_weight=self.state.canary_weight,
            header_routes=self.state.header_routes,
            approval=self.state.approval,  # an approval holds for the whole revision
        )
        self.state = fresh
        self.decide("retried", "retried by user: the rollout starts again from its first step")
        self.start()

    def cmd_approve(self, args: dict[str, Any]) -> None:
        emergency = bool(args.get("emergency"))
        approval = {
            "at": self.now,
            "by": str(args.get("by") or "unknown"),
            "emergency": emergency,
            "reason": str(args.get("reason") or ""),
        }
        self.set(approval=approval)
        what = "an emergency release" if emergency else "the release"
        self.decide(
            "approved",
            f"approved by {approval['by']}: {what}"
            + (f" ({approval['reason']})" if approval["reason"] else ""),
            approval=approval,
        )

    def cmd_undo(self, args: dict[str, Any]) -> None:
        self.rollback(
            "undo",
            failure_reason=str(args.get("reason") or "undone by user"),
            final_phase=RolloutPhase.ROLLED_BACK,
        )

    # ------------------------------------------------------------------ measurements

    def record(self, results: tuple[MeasurementResult, ...]) -> None:
        for result in results:
            for attr, metrics in (
                ("step_run", self.plan.step_metrics.get(self.state.step_index, ())),
                ("background_run", self.plan.background_metrics),
            ):
                run: RunState | None = getattr(self.state, attr)
                if run is None or run.name != result.run_name or run.phase.completed:
                    continue
                updated = analysis_run.record(
                    run, metrics, result.metric, result.measurement, self.now
                )
                self._note_metric_changes(run, updated)
                self.set(**{attr: updated})

    def _note_metric_changes(self, before: RunState, after: RunState) -> None:
        for old, new in zip(before.metrics, after.metrics, strict=True):
            if new.phase != old.phase and new.phase.completed:
                last = new.measurements[-1].message if new.measurements else ""
                self.decide(
                    f"metric-{str(new.phase).lower()}",
                    f"metric {new.name!r} of {after.name} is {new.phase}"
                    + (" (dry run: not acted upon)" if new.dry_run else "")
                    + (f": {last}" if last else ""),
                    run=after.name,
                    metric=new.name,
                )

    # ------------------------------------------------------------------ background analysis

    def watch_background(self) -> None:
        bg = self.plan.rollout.background
        if bg is None or self.state.phase == RolloutPhase.PROMOTING:
            return
        run = self.state.background_run
        if run is None:
            if self.state.step_index >= bg.starting_step and self.state.step_index < len(
                self.steps
            ):
                name = f"background-{self.state.step_index}"
                self.set(
                    background_run=analysis_run.start_run(
                        name, self.plan.background_metrics, self.now
                    )
                )
                self.decide("analysis-started", f"background analysis {name} started", run=name)
            return
        if not run.phase.completed or self.state.pause_reason == PauseReason.INCONCLUSIVE:
            return
        self._act_on_run(run, self.plan.background_metrics, background=True)

    def _act_on_run(self, run: RunState, metrics: tuple[Metric, ...], background: bool) -> bool:
        """React to a completed run; returns True when the rollout may go on."""
        what = "background analysis" if background else "analysis"
        if run.phase in (Phase.FAILED, Phase.ERROR):
            self.decide(
                f"analysis-{str(run.phase).lower()}",
                f"{what} {run.name}: {run.message}",
                run=run.name,
            )
            self.rollback(
                "analysis-failed",
                failure_reason=run.message,
                final_phase=RolloutPhase.ROLLED_BACK,
                evidence=run_evidence(run, metrics),
            )
            return False
        if run.phase == Phase.INCONCLUSIVE:
            self.decide("analysis-inconclusive", f"{what} {run.name}: {run.message}", run=run.name)
            self.set(
                phase=RolloutPhase.PAUSED,
                pause_reason=PauseReason.INCONCLUSIVE,
                paused_at=self.now,
                message=f"paused: {what} inconclusive, a human decides (promote, resume or abort)",
            )
            return False
        return True

    # ------------------------------------------------------------------ steps

    def advance(self) -> None:
        for _ in range(4 * len(self.steps) + 8):
            state = self.state
            if state.phase.terminal or state.phase == RolloutPhase.PAUSED:
                return
            if not state.routing_settled:
                return  # wait until the router serves what the state says
            if state.phase == RolloutPhase.PROMOTING:
                self.finish_promotion()
                return
            if state.step_index >= len(self.steps):
                if not self.gate("promotion to 100%"):
                    return
                self.begin_promotion()
                continue
            if state.step_started_at is None:
                step = self.steps[state.step_index]
                label = f"step {state.step_index + 1}/{len(self.steps)}"
                if not self.gate(label):
                    return
                factor = self.pause_factor()
                scaled = (
                    f" (x{factor:g} by the release policy: {step.duration * factor:g}s)"
                    if isinstance(step, Pause) and step.duration is not None and factor != 1
                    else ""
                )
                self.set(step_started_at=self.now)
                self.decide("step-started", f"{label}: {_describe(step)}{scaled}")
            if not self.run_step(self.steps[state.step_index]):
                return

    def run_step(self, step: Any) -> bool:
        """Work on the current step; True when it completed and the loop may go on."""
        state = self.state
        if isinstance(step, SetWeight):
            if state.canary_weight != step.weight:
                self.change_weight(step.weight)
                return True  # loops back, then waits for the router
            self.next_step()
            return True
        if isinstance(step, SetHeaderRoute):
            routes = tuple(r for r in state.header_routes if r.name != step.name)
            if step.matches:
                routes += (HeaderRoute(step.name, step.matches),)
            if routes != state.header_routes:
                if not state.header_routes and routes and state.canary_weight == 0:
                    self.set(phase_started_at=self.now, phase_runs=())
                verb = "added" if step.matches else "removed"
                self.route(state.canary_weight, routes, f"header route {step.name!r} {verb}")
                return True
            self.next_step()
            return True
        if isinstance(step, Pause):
            if step.duration is None:
                self.set(
                    phase=RolloutPhase.PAUSED,
                    pause_reason=PauseReason.PAUSE_STEP,
                    paused_at=self.now,
                    message="paused until promoted",
                )
                self.decide("paused", "pause step without duration: waiting for promote")
                return False
            assert state.step_started_at is not None
            until = state.step_started_at + step.duration * self.pause_factor()
            if self.now >= until:
                self.next_step()
                return True
            self.set(message=f"pausing until {until:.3f}")
            return False
        if isinstance(step, Analysis):
            return self.run_analysis_step()
        raise AssertionError(f"unknown step {step!r}")

    def run_analysis_step(self) -> bool:
        metrics = self.plan.step_metrics.get(self.state.step_index, ())
        name = f"step-{self.state.step_index}"
        run = self.state.step_run
        if run is None or run.name != name:
            run = analysis_run.start_run(name, metrics, self.now)
            self.set(step_run=run, message=f"analysis {name} running")
            self.decide("analysis-started", f"analysis {name} started", run=name)
        if not run.phase.completed:
            return False
        if not self._act_on_run(run, metrics, background=False):
            return False
        self.decide("analysis-successful", f"analysis {name}: {run.message}", run=name)
        self.next_step()
        return True

    def _end_step_run(self, reason: str) -> None:
        run = self.state.step_run
        if run is not None and not run.phase.completed:
            metrics = self.plan.step_metrics.get(self.state.step_index, ())
            self.set(step_run=analysis_run.terminate(run, metrics, self.now, reason))

    def next_step(self) -> None:
        run = self.state.step_run
        if run is not None:
            metrics = self.plan.step_metrics.get(self.state.step_index, ())
            self.set(phase_runs=(*self.state.phase_runs, run_evidence(run, metrics)))
        self.set(step_index=self.state.step_index + 1, step_started_at=None, step_run=None)

    # ------------------------------------------------------------------ traffic phases

    def change_weight(self, weight: int) -> None:
        state = self.state
        old = phase_name(state.canary_weight, state.header_routes)
        if weight > state.canary_weight:
            if old != "none":
                self.complete_phase(old)
            self.receipts.append(
                ReceiptDraft(
                    "traffic_promoted",
                    {
                        **self._base_receipt(),
                        "from_phase": old,
                        "to_phase": phase_name(weight, state.header_routes),
                        "from_traffic_percent": state.canary_weight,
                        "to_traffic_percent": weight,
                        "promotion_based_on": self._promotion_basis(),
                        "step": state.step_index,
                        "status": "promoted",
                    },
                )
            )
            self.set(phase_started_at=self.now, phase_runs=())
        self.route(weight, state.header_routes, f"step {state.step_index + 1}: setWeight {weight}")

    def _promotion_basis(self) -> str:
        runs = self.state.phase_runs
        if not runs:
            return "steps_completed"
        return "analysis_passed:" + ",".join(r["run"] for r in runs)

    def complete_phase(self, name: str) -> None:
        runs = list(self.state.phase_runs)
        if self.state.background_run is not None:
            runs.append(run_evidence(self.state.background_run, self.plan.background_metrics))
        checks: dict[str, Any] = {}
        for run in runs:
            for metric, check in run["metrics"].items():
                checks[f"{run['run']}/{metric}"] = check
        all_pass = all(c["status"] in ("PASS", "RUNNING") or c["dry_run"] for c in checks.values())
        self.receipts.append(
            ReceiptDraft(
                "canary_phase_complete",
                {
                    **self._base_receipt(),
                    "phase": name,
                    "traffic_percent": self.state.canary_weight,
                    "duration_minutes": round((self.now - self.state.phase_started_at) / 60, 3),
                    "duration_seconds": round(self.now - self.state.phase_started_at, 3),
                    "time_scale": self.plan.time_scale,
                    "sli_checks": checks,
                    "analysis_runs": runs,
                    "promotion_recommendation": "PROMOTE" if all_pass else "HOLD",
                    "status": "ready_for_next_phase",
                },
            )
        )
        self.set(phases_completed=(*self.state.phases_completed, name))

    def begin_promotion(self) -> None:
        state = self.state
        self.set(phase=RolloutPhase.PROMOTING, message="promoting to 100%")
        self.decide("promoting", "every step is complete: all traffic moves to the new version")
        if state.canary_weight != 100 or state.header_routes:
            if state.canary_weight != 100:
                self.change_weight(100)
            if self.state.header_routes:
                self.route(100, (), "full promotion removes the header routes")

    def finish_promotion(self) -> None:
        state = self.state
        bg = state.background_run
        if bg is not None and not bg.phase.completed:
            bg = analysis_run.terminate(
                bg, self.plan.background_metrics, self.now, "the rollout is fully promoted"
            )
            self.set(background_run=bg)
        final = phase_name(100, ())
        self.set(phases_completed=(*self.state.phases_completed, final))
        runs = list(self.state.phase_runs)
        if bg is not None:
            runs.append(run_evidence(bg, self.plan.background_metrics))
        failing = [
            f"{r['run']}/{m}"
            for r in runs
            for m, c in r["metrics"].items()
            if c["status"] in ("FAIL", "ERROR") and not c["dry_run"]
        ]
        self.receipts.append(
            ReceiptDraft(
                "deployment_complete",
                {
                    **self._base_receipt(),
                    "previous_stable": self.plan.stable_version,
                    "phases_completed": list(self.state.phases_completed),
                    "total_duration_hours": round((self.now - state.started_at) / 3600, 4),
                    "total_duration_seconds": round(self.now - state.started_at, 3),
                    "time_scale": self.plan.time_scale,
                    "rollbacks_triggered": state.rollbacks,
                    "final_sli_status": "all_passing"
                    if not failing
                    else "failing:" + ",".join(failing),
                    "final_analysis": runs,
                    "status": "complete",
                },
            )
        )
        self.set(
            phase=RolloutPhase.HEALTHY,
            finished_at=self.now,
            message=f"{self.plan.rollout.canary_version} serves all traffic",
        )
        self.decide("healthy", "fully promoted: the new version serves 100% of traffic")

    # ------------------------------------------------------------------ release policy

    def verdict(self) -> PolicyVerdict:
        return release_policy(
            self.plan.rollout_class,
            self.budget,
            thresholds=self.plan.slos[0].release,
            approval=self.state.approval,
            accelerate=self.plan.accelerate,
        )

    def pause_factor(self) -> float:
        """What the release policy applied to the current step does to a timed pause."""
        budget = self.state.budget
        if not self.plan.slos or not budget:
            return 1.0
        return float(budget.get("pause_factor", 1.0))

    def gate(self, what: str) -> bool:
        """Apply the release policy before a step (or the promotion). False: the rollout is
        held (paused, reason BudgetPolicy) until an approval or a healthier budget lets it go."""
        if not self.plan.slos:
            return True
        verdict = self.verdict()
        data = verdict.to_dict()
        self.set(budget=data)
        self.decide("budget-policy", f"{what}: {verdict.reason}", budget_policy=data)
        if verdict.notify and self.state.notified_tier != str(verdict.tier):
            self.set(notified_tier=str(verdict.tier))
            self.decide("budget-notify", f"SRE notification: {verdict.reason}", budget_policy=data)
        if verdict.allowed:
            return True
        self.hold(verdict)
        return False

    def hold(self, verdict: PolicyVerdict) -> None:
        hint = how_to_proceed(verdict, self.plan.name)
        self.set(
            phase=RolloutPhase.PAUSED,
            pause_reason=PauseReason.BUDGET,
            paused_at=self.now,
            message=f"held by the release policy: {verdict.reason}",
        )
        self.decide("budget-held", f"{verdict.reason}; {hint}", budget_policy=verdict.to_dict())
        self.receipts.append(
            ReceiptDraft(
                "release_held",
                {
                    **self._base_receipt(),
                    "step": self.state.step_index,
                    "traffic_percent": self.state.canary_weight,
                    "how_to_proceed": hint,
                    "status": "held",
                },
            )
        )

    def recheck_held(self) -> None:
        """A rollout held by the policy goes on by itself once the policy allows it."""
        if self.state.phase != RolloutPhase.PAUSED or self.state.pause_reason != PauseReason.BUDGET:
            return
        verdict = self.verdict()
        if verdict.allowed:
            self.set(phase=RolloutPhase.PROGRESSING, pause_reason=None, paused_at=None)
            self.decide("resumed", f"the release policy allows it now: {verdict.reason}")
            return
        before = self.state.budget or {}
        data = verdict.to_dict()
        if any(before.get(k) != data[k] for k in ("tier", "needs_approval", "approved")):
            self.set(budget=data, message=f"held by the release policy: {verdict.reason}")
            hint = how_to_proceed(verdict, self.plan.name)
            self.decide("budget-held", f"{verdict.reason}; {hint}", budget_policy=data)

    def watch_burn(self) -> None:
        """A page (fast-burn) alert evaluated by coalmine's engine rolls the rollout back."""
        if not self.plan.slos or self.budget is None:
            return
        burns = self.budget.page_burns()
        firing = {b.key for b in burns}
        still = tuple(k for k in self.state.burns_ignored if k in firing)
        if still != self.state.burns_ignored:
            self.set(burns_ignored=still)  # a burn that stopped counts again if it comes back
        for burn in burns:
            if burn.key in self.state.burns_ignored:
                continue
            if self.burn_applies(burn):
                self.burn_rollback(burn)
                return

    def burn_applies(self, burn: BurnSignal) -> bool:
        """Whether a fast burn rolls this rollout back. Not for a rollback-class rollout (it
        lowers risk), nor for a fix when the burn was already firing as the fix started (it is
        the incident the fix is for); those are recorded once."""
        cls = self.plan.rollout_class
        if burn.key in self.state.burns_ignored:
            return False
        if cls == "rollback":
            why = "a rollback-class rollout is never rolled back by a burn"
        elif cls == "fix" and (
            self.state.started_at == self.now  # seen as the fix starts
            or (burn.starts_at is not None and burn.starts_at < self.state.started_at)
        ):
            why = "it was already firing when this fix started: the fix is released for it"
        else:
            return True
        self.set(burns_ignored=(*self.state.burns_ignored, burn.key))
        self.decide("burn-not-acted", f"{burn.describe()}; {why}", burn=burn.to_dict())
        return False

    def burn_rollback(self, burn: BurnSignal) -> None:
        self.rollback(
            "budget-burn",
            failure_reason=f"{burn.describe()} during the rollout",
            final_phase=RolloutPhase.ROLLED_BACK,
            burn=burn.to_dict(),
        )

    # ------------------------------------------------------------------ rollback

    def rollback(
        self,
        operation_reason: str,
        *,
        failure_reason: str,
        final_phase: RolloutPhase,
        evidence: dict[str, Any] | None = None,
        burn: dict[str, Any] | None = None,
    ) -> None:
        state = self.state
        failed_phase = phase_name(state.canary_weight, state.header_routes)
        if state.phase == RolloutPhase.HEALTHY:
            failed_phase = "100_percent"
        self._end_step_run("the rollout was rolled back")
        bg = self.state.background_run
        if bg is not None and not bg.phase.completed:
            self.set(
                background_run=analysis_run.terminate(
                    bg, self.plan.background_metrics, self.now, "the rollout was rolled back"
                )
            )
        previous = state.canary_weight
        self.route(
            0, (), f"rollback ({operation_reason}): all traffic back to {self.plan.stable_version}"
        )
        self.set(
            phase=final_phase,
            finished_at=self.now,
            pause_reason=None,
            rollbacks=state.rollbacks + 1,
            message=failure_reason,
            pending_rollback=PendingRollback(
                decided_at=self.now,
                generation=self.state.generation,
                operation_reason=operation_reason,
                failure_reason=failure_reason,
                phase_failed=failed_phase,
                previous_weight=previous,
                evidence=evidence or {},
                burn=burn,
            ),
        )
        self.decide(
            "rolled-back" if final_phase == RolloutPhase.ROLLED_BACK else "aborted",
            f"{operation_reason}: {failure_reason}",
            previous_weight=previous,
            **({"burn": burn} if burn else {}),
        )

    def rollback_receipt(self, pending: PendingRollback, applied_at: float) -> None:
        failed = _failed_metric(pending.evidence)
        self.receipts.append(
            ReceiptDraft(
                "rollback_executed",
                {
                    **self._base_receipt(),
                    "version_rolled_back": self.plan.rollout.canary_version,
                    "version_restored": self.plan.stable_version,
                    "phase_failed": pending.phase_failed,
                    "trigger": pending.operation_reason,
                    "failure_reason": pending.failure_reason,
                    **({"failed_metric": failed} if failed else {}),
                    **({"burn": pending.burn} if pending.burn else {}),
                    "traffic_percent_before": pending.previous_weight,
                    "duration_at_phase_seconds": round(
                        pending.decided_at - self.state.phase_started_at, 3
                    ),
                    "decided_at": pending.decided_at,
                    "traffic_switched_at": applied_at,
                    "rollback_duration_ms": round(
                        max(0.0, applied_at - pending.decided_at) * 1000, 1
                    ),
                    "analysis": pending.evidence,
                    "status": "rolled_back",
                },
            )
        )


def _failed_metric(evidence: dict[str, Any]) -> dict[str, Any] | None:
    for name, check in evidence.get("metrics", {}).items():
        if check["status"] in ("FAIL", "ERROR") and not check["dry_run"]:
            value = check["value"]
            out: dict[str, Any] = {
                "name": name,
                "condition": check["success_condition"] or check["failure_condition"],
                "message": check["message"],
            }
            if isinstance(value, dict):
                out["baseline"] = value.get("stable")
                out["canary"] = value.get("canary")
            else:
                out["canary"] = value
            return out
    return None


def _describe(step: Any) -> str:
    if isinstance(step, SetWeight):
        return f"setWeight {step.weight}"
    if isinstance(step, Pause):
        return "pause" + (
            f" {step.duration:g}s" if step.duration is not None else " (until promoted)"
        )
    if isinstance(step, Analysis):
        return "analysis " + ", ".join(t.template_name for t in step.templates)
    if isinstance(step, SetHeaderRoute):
        return f"setHeaderRoute {step.name}" + ("" if step.matches else " (remove)")
    return type(step).__name__

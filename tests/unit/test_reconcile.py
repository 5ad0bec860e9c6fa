"""The controller's pure decision core, driven on a simulated clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from coalmine.analysis.types import Measurement, Phase
from coalmine.rollout.reconcile import (
    MeasurementResult,
    Observations,
    Outcome,
    command_problem,
    reconcile,
)
from coalmine.rollout.state import PauseReason, Plan, RolloutPhase, RolloutState
from coalmine.spec.model import (
    Analysis,
    BackgroundAnalysis,
    HeaderMatch,
    Metric,
    Pause,
    Rollout,
    SetHeaderRoute,
    SetWeight,
    TemplateRef,
)
from coalmine.store.base import Command

T0 = 1_700_000_000.0


def metric(
    name: str = "errors",
    count: int | None = 2,
    interval: float | None = 10.0,
    failure_limit: int = 0,
) -> Metric:
    return Metric(
        name=name,
        provider={"plugin": {"coalmine/router": {"query": "error-rate", "version": "canary"}}},
        interval=interval,
        count=count,
        success_condition="result < 0.05",
        failure_limit=failure_limit,
    )


def plan(
    steps: tuple[Any, ...],
    step_metrics: dict[int, tuple[Metric, ...]] | None = None,
    background: BackgroundAnalysis | None = None,
    background_metrics: tuple[Metric, ...] = (),
) -> Plan:
    rollout = Rollout(
        name="shop", steps=steps, background=background, canary_version="v2", service="shop"
    )
    return Plan(
        rollout=rollout,
        step_metrics=step_metrics or {},
        background_metrics=background_metrics,
        stable_version="v1",
    )


def analysis() -> Analysis:
    return Analysis(templates=(TemplateRef("t"),))


@dataclass
class Sim:
    """Plays the runner: confirms routing at once, feeds measurements, keeps history.

    Every tick round-trips the state through JSON, as the store does, so the tests also prove
    that a controller restarted between any two ticks decides the same.
    """

    plan: Plan
    now: float = T0
    state: RolloutState = field(default_factory=RolloutState)
    router_generation: int = 0
    router_up: bool = True
    weights: list[int] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    receipts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    applied: tuple[int, float] | None = None
    next_id: int = 1

    def tick(self, measurements: tuple[MeasurementResult, ...] = ()) -> Outcome:
        obs = Observations(
            measurements=measurements,
            commands=tuple(self.commands),
            applied_generation=self.applied[0] if self.applied else None,
            applied_at=self.applied[1] if self.applied else None,
        )
        self.commands = []
        out = reconcile(self.plan, self.state, obs, self.now)
        self.state = RolloutState.from_dict(json.loads(json.dumps(out.state.to_dict())))
        self.decisions += [d.kind for d in out.decisions]
        self.receipts += [(r.operation, r.body) for r in out.receipts]
        for action in out.actions:
            if self.router_up:
                self.router_generation = action.routing.generation
                self.weights.append(action.routing.canary_weight)
                self.applied = (action.routing.generation, self.now + 0.01)
        return out

    def settle(self, ticks: int = 5) -> None:
        for _ in range(ticks):
            self.tick()

    def command(self, name: str, **args: Any) -> None:
        self.commands.append(Command(self.next_id, "shop", name, args, self.now))
        self.next_id += 1

    def measure(self, run_phase_value: float, which: str = "step") -> tuple[MeasurementResult, ...]:
        run = self.state.step_run if which == "step" else self.state.background_run
        assert run is not None, f"no {which} run"
        phase = Phase.SUCCESSFUL if run_phase_value < 0.05 else Phase.FAILED
        return tuple(
            MeasurementResult(
                run.name,
                m.name,
                Measurement(
                    phase=phase,
                    started_at=self.now,
                    finished_at=self.now,
                    value=run_phase_value,
                    message=f"result={run_phase_value}",
                ),
            )
            for m in run.metrics
        )

    def advance(self, seconds: float) -> None:
        self.now += seconds


def operations(sim: Sim) -> list[str]:
    return [op for op, _ in sim.receipts]


def test_happy_path_walks_every_step_and_promotes() -> None:
    sim = Sim(
        plan((SetWeight(20), Pause(60), analysis(), SetWeight(100)), step_metrics={2: (metric(),)})
    )
    sim.settle()
    assert sim.state.phase == RolloutPhase.PROGRESSING
    assert sim.state.canary_weight == 20 and sim.state.step_index == 1
    sim.advance(59)
    sim.settle()
    assert sim.state.step_index == 1, "a 60 s pause must not end after 59 s"
    sim.advance(1)
    sim.settle()
    assert sim.state.step_index == 2 and sim.state.step_run is not None
    sim.tick(sim.measure(0.01))
    assert sim.state.step_index == 2, "count 2: one measurement is not enough"
    sim.advance(10)
    sim.tick(sim.measure(0.01))
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY
    assert sim.weights == [0, 20, 100]
    assert operations(sim) == [
        "traffic_promoted",
        "canary_phase_complete",
        "traffic_promoted",
        "deployment_complete",
    ]
    complete = dict(sim.receipts)["deployment_complete"]
    assert complete["phases_completed"] == ["20_percent", "100_percent"]
    assert complete["version"] == "v2" and complete["previous_stable"] == "v1"
    phase = sim.receipts[1][1]
    assert phase["phase"] == "20_percent"
    assert phase["sli_checks"]["step-2/errors"]["status"] == "PASS"


def test_failed_analysis_rolls_back_and_receipt_waits_for_the_router() -> None:
    sim = Sim(plan((SetWeight(10), analysis(), SetWeight(100)), step_metrics={1: (metric(),)}))
    sim.settle()
    out = sim.tick(sim.measure(0.3))
    assert sim.state.phase == RolloutPhase.ROLLED_BACK
    assert [a.routing.canary_weight for a in out.actions] == [0]
    assert "rolled-back" in sim.decisions
    assert "rollback_executed" not in operations(sim), "the receipt waits for the router"
    sim.tick()
    receipt = dict(sim.receipts)["rollback_executed"]
    assert receipt["version_rolled_back"] == "v2" and receipt["version_restored"] == "v1"
    assert receipt["phase_failed"] == "10_percent"
    assert receipt["failed_metric"]["name"] == "errors"
    assert receipt["failed_metric"]["canary"] == 0.3
    assert receipt["rollback_duration_ms"] == 10.0
    assert sim.state.pending_rollback is None
    assert sim.weights[-1] == 0


def test_no_progress_while_the_router_has_not_confirmed() -> None:
    sim = Sim(plan((SetWeight(10), Pause(1), SetWeight(50))))
    sim.router_up = False
    for _ in range(5):
        sim.advance(5)
        sim.tick()
    assert sim.state.step_index == 0 and sim.state.canary_weight == 0
    sim.router_up = True
    sim.tick()  # the runner sends the desired routing again; modelled by the next action
    assert sim.state.phase == RolloutPhase.PROGRESSING


def test_inconclusive_analysis_pauses_for_a_human_then_promote_goes_on() -> None:
    sim = Sim(plan((SetWeight(10), analysis(), SetWeight(100)), step_metrics={1: (metric(),)}))
    sim.settle()
    run = sim.state.step_run
    assert run is not None
    no_data = MeasurementResult(
        run.name,
        "errors",
        Measurement(Phase.INCONCLUSIVE, sim.now, sim.now, None, "no data: canary had 0 requests"),
    )
    sim.tick((no_data,))
    assert sim.state.phase == RolloutPhase.PAUSED
    assert sim.state.pause_reason == PauseReason.INCONCLUSIVE
    sim.advance(3600)
    sim.settle()
    assert sim.state.phase == RolloutPhase.PAUSED, "never promoted without evidence"
    sim.command("promote")
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY


def test_resume_after_inconclusive_measures_again() -> None:
    sim = Sim(plan((SetWeight(10), analysis()), step_metrics={1: (metric(count=1),)}))
    sim.settle()
    run = sim.state.step_run
    assert run is not None
    sim.tick(
        (
            MeasurementResult(
                run.name,
                "errors",
                Measurement(Phase.INCONCLUSIVE, sim.now, sim.now, None, "no data"),
            ),
        )
    )
    sim.command("resume")
    sim.settle()
    assert sim.state.phase == RolloutPhase.PROGRESSING
    assert sim.state.step_run is not None and sim.state.step_run.metrics[0].count == 0
    sim.tick(sim.measure(0.0))
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY


def test_pause_without_duration_waits_for_promote() -> None:
    sim = Sim(plan((SetWeight(10), Pause(None), SetWeight(40))))
    sim.settle()
    sim.advance(10_000)
    sim.settle()
    assert sim.state.phase == RolloutPhase.PAUSED
    assert sim.state.pause_reason == PauseReason.PAUSE_STEP
    sim.command("promote")
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY and sim.weights == [0, 10, 40, 100]


def test_user_pause_holds_and_does_not_eat_the_pause_timer() -> None:
    sim = Sim(plan((SetWeight(10), Pause(60), SetWeight(40))))
    sim.settle()
    sim.advance(30)
    sim.command("pause")
    sim.settle()
    sim.advance(100)
    sim.settle()
    assert sim.state.phase == RolloutPhase.PAUSED and sim.state.canary_weight == 10
    sim.command("resume")
    sim.settle()
    sim.advance(29)
    sim.settle()
    assert sim.state.canary_weight == 10, "30 s of the pause remained after resume"
    sim.advance(1)
    sim.settle()
    assert sim.state.canary_weight == 100


def test_abort_then_retry_then_full_promotion_then_undo() -> None:
    sim = Sim(plan((SetWeight(10), Pause(None), SetWeight(50))))
    sim.settle()
    sim.command("abort", reason="wrong build")
    sim.settle()
    assert sim.state.phase == RolloutPhase.ABORTED and sim.state.canary_weight == 0
    assert dict(sim.receipts)["rollback_executed"]["failure_reason"] == "wrong build"
    sim.command("retry")
    sim.settle()
    assert sim.state.phase == RolloutPhase.PAUSED and sim.state.canary_weight == 10
    sim.command("promote", full=True)
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY and sim.state.canary_weight == 100
    sim.command("undo")
    sim.settle()
    assert sim.state.phase == RolloutPhase.ROLLED_BACK and sim.state.canary_weight == 0
    assert operations(sim).count("rollback_executed") == 2


def test_commands_that_do_not_apply_are_rejected_with_a_reason() -> None:
    sim = Sim(plan((SetWeight(10), Pause(None))))
    sim.settle()
    assert command_problem(sim.state, "undo") is not None
    assert command_problem(sim.state, "retry") is not None
    sim.command("undo")
    sim.settle()
    assert "command-rejected" in sim.decisions
    assert sim.state.phase == RolloutPhase.PAUSED


def test_background_analysis_starts_at_its_step_and_rolls_back_on_failure() -> None:
    bg = BackgroundAnalysis(analysis(), starting_step=2)
    sim = Sim(
        plan(
            (SetWeight(5), Pause(30), SetWeight(20), Pause(60), SetWeight(50)),
            background=bg,
            background_metrics=(metric(count=None),),
        )
    )
    sim.settle()
    assert sim.state.background_run is None, "startingStep 2 not reached yet"
    sim.advance(30)
    sim.settle()
    assert sim.state.background_run is not None and sim.state.canary_weight == 20
    sim.tick(sim.measure(0.01, "background"))
    sim.advance(10)
    sim.tick(sim.measure(0.5, "background"))
    assert sim.state.phase == RolloutPhase.ROLLED_BACK and sim.state.canary_weight == 0


def test_background_run_is_terminated_at_promotion_and_reported() -> None:
    bg = BackgroundAnalysis(analysis(), starting_step=0)
    sim = Sim(
        plan((SetWeight(50), Pause(10)), background=bg, background_metrics=(metric(count=None),))
    )
    sim.settle()
    sim.tick(sim.measure(0.01, "background"))
    sim.advance(10)
    sim.settle()
    assert sim.state.phase == RolloutPhase.HEALTHY
    final = dict(sim.receipts)["deployment_complete"]
    assert final["final_sli_status"] == "all_passing"
    assert final["final_analysis"][0]["metrics"]["errors"]["measurements"] == 1


def test_header_routes_are_set_and_removed_and_cleared_at_rollback() -> None:
    route = SetHeaderRoute("testers", (HeaderMatch("X-Tenant", "exact", "t1"),))
    sim = Sim(plan((route, SetWeight(10), SetHeaderRoute("testers"), Pause(None))))
    sim.settle()
    assert [r.name for r in sim.state.header_routes] == []
    assert sim.state.canary_weight == 10 and sim.state.phase == RolloutPhase.PAUSED
    sim2 = Sim(plan((route, Pause(None))))
    sim2.settle()
    assert [r.name for r in sim2.state.header_routes] == ["testers"]
    sim2.command("abort")
    sim2.settle()
    assert sim2.state.header_routes == () and sim2.state.canary_weight == 0


def test_a_router_ahead_of_us_gets_the_routing_again_with_a_newer_generation() -> None:
    sim = Sim(plan((SetWeight(10), Pause(None))))
    sim.tick()
    out = reconcile(sim.plan, sim.state, Observations(stale_router_generation=41), sim.now)
    assert out.state.generation == 42
    assert [a.routing.generation for a in out.actions] == [42]
    assert out.actions[0].routing.canary_weight == out.state.canary_weight


def test_reconcile_is_deterministic() -> None:
    p = plan((SetWeight(10), analysis(), SetWeight(100)), step_metrics={1: (metric(),)})
    a = reconcile(p, RolloutState(), Observations(), T0)
    b = reconcile(p, RolloutState(), Observations(), T0)
    assert a == b

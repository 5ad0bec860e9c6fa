"""The error-budget release policy and rollback on burn in the controller's pure core, on a
simulated clock (every tick round-trips the state through JSON, as the store does)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from coalmine.rollout.budget import BudgetObservation, BurnSignal, SloBudget, release_policy
from coalmine.rollout.reconcile import Observations, Outcome, command_problem, reconcile
from coalmine.rollout.state import PauseReason, Plan, RolloutPhase, RolloutState
from coalmine.slo.policy import Tier, release_tier
from coalmine.slo.spec import (
    HOUR,
    MINUTE,
    ReleaseThresholds,
    RouterSource,
    Sli,
    Slo,
    Window,
    default_alerting,
)
from coalmine.spec.model import Pause, SetWeight
from tests.unit.test_reconcile import T0, Sim

DAY = 86400.0
SLO = Slo(
    name="shop-availability",
    service="shop",
    objective=99.9,
    sli=Sli("availability", RouterSource()),
    window=Window(rolling_s=30 * DAY),
    alerting=default_alerting(30 * DAY),
)
STEPS = (SetWeight(10), Pause(60), SetWeight(50))
EXPECTED_TIER = {0.8: Tier.NORMAL, 0.35: Tier.CAUTIOUS, 0.1: Tier.PROTECTED, -0.1: Tier.FROZEN}


def budget_plan(rollout_class: str = "feature", steps: tuple[Any, ...] = STEPS, **kw: Any) -> Plan:
    from coalmine.spec.model import Rollout

    rollout = Rollout(name="shop", steps=steps, canary_version="v2", service="shop")
    return Plan(
        rollout=rollout,
        step_metrics={},
        stable_version="v1",
        rollout_class=rollout_class,
        slos=(SLO,),
        **kw,
    )


def observation(
    remaining: float | None, *burns: BurnSignal, at: float = T0, error: str | None = None
) -> BudgetObservation:
    th = SLO.release
    slo = SloBudget(SLO.name, remaining, release_tier(remaining, th), th, firing=burns)
    return BudgetObservation(at, (slo,), error=error)


def page_burn(long_rate: float = 20.1, short_rate: float | None = 22.3, **kw: Any) -> BurnSignal:
    return BurnSignal(
        slo=SLO.name,
        rule="page-1h",
        severity="page",
        long_s=HOUR,
        short_s=5 * MINUTE,
        factor=14.4,
        long_rate=long_rate,
        short_rate=short_rate,
        **kw,
    )


@dataclass
class BudgetSim(Sim):
    budget: BudgetObservation | None = None
    reasons: list[tuple[str, str]] | None = None

    def tick(self, measurements: tuple[Any, ...] = ()) -> Outcome:
        obs = Observations(
            measurements=measurements,
            commands=tuple(self.commands),
            applied_generation=self.applied[0] if self.applied else None,
            applied_at=self.applied[1] if self.applied else None,
            budget=self.budget,
        )
        self.commands = []
        out = reconcile(self.plan, self.state, obs, self.now)
        self.state = RolloutState.from_dict(json.loads(json.dumps(out.state.to_dict())))
        self.decisions += [d.kind for d in out.decisions]
        self.reasons = (self.reasons or []) + [(d.kind, d.reason) for d in out.decisions]
        self.receipts += [(r.operation, json.loads(json.dumps(r.body))) for r in out.receipts]
        for action in out.actions:
            self.router_generation = action.routing.generation
            self.weights.append(action.routing.canary_weight)
            self.applied = (action.routing.generation, self.now + 0.01)
        return out

    def reason(self, kind: str) -> str:
        return next(r for k, r in reversed(self.reasons or []) if k == kind)

    def receipt(self, operation: str) -> dict[str, Any]:
        return next(body for op, body in reversed(self.receipts) if op == operation)


def held(sim: BudgetSim) -> bool:
    return sim.state.phase == RolloutPhase.PAUSED and sim.state.pause_reason == PauseReason.BUDGET


# --------------------------------------------------------------------------- tier x class

ALLOWED = {
    (Tier.NORMAL, "feature"): True,
    (Tier.NORMAL, "fix"): True,
    (Tier.NORMAL, "rollback"): True,
    (Tier.CAUTIOUS, "feature"): True,
    (Tier.CAUTIOUS, "fix"): True,
    (Tier.CAUTIOUS, "rollback"): True,
    (Tier.PROTECTED, "feature"): False,
    (Tier.PROTECTED, "fix"): False,  # until approved
    (Tier.PROTECTED, "rollback"): True,
    (Tier.FROZEN, "feature"): False,
    (Tier.FROZEN, "fix"): False,
    (Tier.FROZEN, "rollback"): True,
}


@pytest.mark.parametrize("remaining", list(EXPECTED_TIER))
@pytest.mark.parametrize("cls", ["feature", "fix", "rollback"])
def test_each_tier_and_class_starts_or_is_held(remaining: float, cls: str) -> None:
    tier = EXPECTED_TIER[remaining]
    sim = BudgetSim(budget_plan(cls), budget=observation(remaining))
    sim.settle()
    policy = [r for k, r in sim.reasons or [] if k == "budget-policy"]
    assert policy and policy[0].startswith(f"step 1/3: {tier}"), policy
    assert sim.state.budget is not None and sim.state.budget["tier"] == str(tier)
    if ALLOWED[(tier, cls)]:
        assert sim.state.canary_weight == 10 and sim.weights == [0, 10]
        assert not held(sim)
        promoted = sim.receipt("traffic_promoted")
        assert promoted["budget_policy"]["tier"] == str(tier)
        assert promoted["budget_policy"]["slo"] == SLO.name
        assert promoted["budget_policy"]["remaining"] == remaining
        assert promoted["rollout_class"] == cls
    else:
        assert held(sim), sim.state
        assert sim.weights == [0], "a held rollout never sends traffic to the canary"
        receipt = sim.receipt("release_held")
        assert receipt["budget_policy"]["tier"] == str(tier)
        assert receipt["budget_policy"]["allowed"] is False
        assert "coalmine rollout approve shop" in receipt["how_to_proceed"] or (
            "features wait" in receipt["how_to_proceed"]
        )
        assert "budget-held" in sim.decisions
        assert sim.state.message.startswith("held by the release policy")


# --------------------------------------------------------------------------- cautious


def test_cautious_doubles_pauses_and_notifies_once() -> None:
    sim = BudgetSim(budget_plan(), budget=observation(0.35))
    sim.settle()
    assert sim.state.step_index == 1 and sim.state.canary_weight == 10
    assert "x2 by the release policy: 120s" in sim.reason("step-started")
    sim.advance(61)
    sim.settle()
    assert sim.state.step_index == 1, "a 60 s pause lasts 120 s in the cautious tier"
    sim.advance(60)
    sim.settle()
    assert sim.weights == [0, 10, 50, 100]
    assert sim.decisions.count("budget-notify") == 1, "one notification per tier, not per step"
    assert sim.decisions.count("budget-policy") >= 3  # each step and the promotion
    assert "SRE notification" in sim.reason("budget-notify")
    assert sim.receipt("traffic_promoted")["budget_policy"]["notify"] is True


def test_normal_keeps_pauses_and_accelerates_only_when_asked() -> None:
    sim = BudgetSim(budget_plan(), budget=observation(0.8))
    sim.settle()
    sim.advance(60)
    sim.settle()
    assert sim.weights == [0, 10, 50, 100] and "budget-notify" not in sim.decisions

    fast = BudgetSim(budget_plan(accelerate=True), budget=observation(0.8))
    fast.settle()
    fast.advance(29)
    fast.settle()
    assert fast.weights == [0, 10]
    fast.advance(1)
    fast.settle()
    assert fast.weights == [0, 10, 50, 100], "accelerated: the 60 s pause lasts 30 s"
    assert "accelerated: pauses x0.5" in fast.receipt("traffic_promoted")["budget_policy"]["reason"]


# --------------------------------------------------------------------------- protected, frozen


def test_protected_holds_a_fix_until_it_is_approved() -> None:
    sim = BudgetSim(budget_plan("fix"), budget=observation(0.1))
    sim.settle()
    assert held(sim)
    assert command_problem(sim.state, "promote") is not None, "promote cannot skip the policy"
    sim.advance(600)
    sim.settle()
    assert held(sim) and sim.decisions.count("budget-held") == 1, "waiting is not re-recorded"
    sim.command("approve", by="sre-alice", reason="INC-42")
    sim.settle()
    assert not held(sim) and sim.state.canary_weight == 10
    assert "approved by sre-alice" in sim.reason("approved")
    promoted = sim.receipt("traffic_promoted")
    assert promoted["approval"]["by"] == "sre-alice"
    assert promoted["budget_policy"]["approved"] is True
    assert promoted["budget_policy"]["pause_factor"] == 2.0


def test_protected_feature_cannot_be_approved_but_goes_on_when_the_budget_recovers() -> None:
    sim = BudgetSim(budget_plan("feature"), budget=observation(0.1))
    sim.settle()
    sim.command("approve", by="sre")
    sim.settle()
    assert held(sim), "no approval lets a feature out of the protected tier"
    sim.budget = observation(0.6, at=T0 + 60)
    sim.advance(60)
    sim.settle()
    assert not held(sim) and sim.state.canary_weight == 10
    assert "the release policy allows it now" in sim.reason("resumed")


def test_a_rollout_is_held_mid_way_when_the_budget_drops() -> None:
    sim = BudgetSim(budget_plan(), budget=observation(0.8))
    sim.settle()
    assert sim.state.canary_weight == 10
    sim.budget = observation(0.05, at=T0 + 30)
    sim.advance(61)
    sim.settle()
    assert held(sim) and sim.state.canary_weight == 10, "held at its weight, not moved on"
    assert sim.receipt("release_held")["traffic_percent"] == 10


def test_frozen_allows_rollbacks_and_approved_emergencies_only() -> None:
    rollback = BudgetSim(budget_plan("rollback"), budget=observation(-0.1))
    rollback.settle()
    assert rollback.state.canary_weight == 10

    fix = BudgetSim(budget_plan("fix"), budget=observation(-0.1))
    fix.settle()
    assert held(fix)
    assert "--emergency" in fix.receipt("release_held")["how_to_proceed"]
    fix.command("approve", by="sre")
    fix.settle()
    assert held(fix), "a plain approval is not an emergency"
    fix.command("approve", by="sre", emergency=True)
    fix.settle()
    assert not held(fix) and fix.state.canary_weight == 10
    policy = fix.receipt("traffic_promoted")["budget_policy"]
    assert policy["tier"] == "frozen" and policy["emergency"] is True
    assert "postmortem" in policy["reason"]

    feature = BudgetSim(budget_plan("feature"), budget=observation(-0.1))
    feature.settle()
    feature.command("approve", by="sre", emergency=True)
    feature.settle()
    assert feature.state.canary_weight == 10, "an approved emergency feature may go"


# --------------------------------------------------------------------------- unknown budget


@pytest.mark.parametrize(
    ("budget", "words"),
    [
        (None, "have not been evaluated yet"),
        (BudgetObservation(T0, error="database is locked"), "database is locked"),
        (
            BudgetObservation(
                T0, (SloBudget(SLO.name, None, Tier.CAUTIOUS, SLO.release, error="timed out"),)
            ),
            "timed out",
        ),
        (observation(None), "no events in the SLO period"),
    ],
)
def test_an_unknown_budget_is_cautious_with_its_reason(
    budget: BudgetObservation | None, words: str
) -> None:
    sim = BudgetSim(budget_plan(), budget=budget)
    sim.settle()
    reason = sim.reason("budget-policy")
    assert "cautious" in reason and words in reason, reason
    assert sim.state.budget is not None and sim.state.budget["tier"] == "cautious"
    assert "x2 by the release policy" in sim.reason("step-started"), "never treated as healthy"
    assert "budget-notify" in sim.decisions


def test_an_unknown_budget_never_beats_a_known_worse_one() -> None:
    th = ReleaseThresholds()
    budget = BudgetObservation(
        T0,
        (
            SloBudget("a", None, Tier.CAUTIOUS, th, error="timed out"),
            SloBudget("b", -0.2, Tier.FROZEN, th),
        ),
    )
    verdict = release_policy("feature", budget, thresholds=th)
    assert verdict.tier == Tier.FROZEN and verdict.slo == "b" and not verdict.allowed


def test_without_slos_the_policy_is_off_and_says_so() -> None:
    sim = BudgetSim(replace(budget_plan(), slos=()), budget=observation(-1.0))
    sim.settle()
    assert sim.state.canary_weight == 10 and sim.state.budget is None
    assert "does not apply" in sim.reason("budget-policy")
    assert "budget_policy" not in sim.receipt("traffic_promoted")


# --------------------------------------------------------------------------- rollback on burn


def test_a_page_burn_from_the_engine_rolls_back_with_its_numbers() -> None:
    sim = BudgetSim(budget_plan(), budget=observation(0.7))
    sim.settle()
    assert sim.state.canary_weight == 10
    sim.budget = observation(0.6, page_burn(), at=T0 + 20)
    sim.advance(20)
    sim.tick()
    assert sim.state.phase == RolloutPhase.ROLLED_BACK and sim.weights[-1] == 0
    sim.tick()  # the router confirms: the receipt is written
    receipt = sim.receipt("rollback_executed")
    burn = receipt["burn"]
    assert (burn["slo"], burn["rule"], burn["long"], burn["short"]) == (
        SLO.name,
        "page-1h",
        "1h",
        "5m",
    )
    assert burn["factor"] == 14.4 and burn["long_rate"] == 20.1 and burn["short_rate"] == 22.3
    assert burn["source"] == "engine"
    assert receipt["trigger"] == "budget-burn"
    assert "burn rate 20.1 over 1h and 22.3 over 5m, above 14.4" in receipt["failure_reason"]
    assert receipt["budget_policy"]["tier"] == "normal"


def test_a_ticket_burn_does_not_roll_back() -> None:
    ticket = replace(page_burn(3.5, 4.0), rule="ticket-1d", severity="ticket", factor=3.0)
    sim = BudgetSim(budget_plan(), budget=observation(0.7, ticket))
    sim.settle()
    assert sim.state.phase == RolloutPhase.PROGRESSING and sim.state.canary_weight == 10


def test_an_alertmanager_abort_rolls_back_with_the_alert_details() -> None:
    sim = BudgetSim(budget_plan(), budget=observation(0.7))
    sim.settle()
    burn = page_burn(20.1, None, source="alertmanager", starts_at=T0 + 5)
    sim.advance(10)
    sim.command("abort", reason="burn", burn=burn.to_dict())
    sim.tick()
    sim.tick()
    assert sim.state.phase == RolloutPhase.ROLLED_BACK
    receipt = sim.receipt("rollback_executed")
    assert receipt["burn"]["source"] == "alertmanager" and receipt["burn"]["short_rate"] is None
    assert "unknown over 5m" in receipt["failure_reason"]


def test_a_fix_is_not_rolled_back_by_the_burn_it_was_released_for() -> None:
    sim = BudgetSim(budget_plan("fix"), budget=observation(0.7, page_burn()))
    sim.settle()
    assert sim.state.canary_weight == 10, "the burn was firing before the fix started"
    assert sim.decisions.count("burn-not-acted") == 1
    # an Alertmanager repeat of the same, older burn changes nothing either
    sim.command("abort", burn=page_burn(source="alertmanager", starts_at=T0 - 300).to_dict())
    sim.tick()
    assert sim.state.phase == RolloutPhase.PROGRESSING
    # the burn stops, then fires again during the fix: that one is the fix's
    sim.budget = observation(0.7, at=T0 + 10)
    sim.advance(10)
    sim.tick()
    sim.budget = observation(0.6, page_burn(30.0, 31.0), at=T0 + 20)
    sim.advance(10)
    sim.tick()
    assert sim.state.phase == RolloutPhase.ROLLED_BACK


def test_a_feature_started_during_a_burn_rolls_back_at_once() -> None:
    sim = BudgetSim(budget_plan("feature"), budget=observation(0.7, page_burn()))
    sim.settle()
    assert sim.state.phase == RolloutPhase.ROLLED_BACK and 10 not in sim.weights


def test_a_rollback_class_rollout_is_never_rolled_back_by_a_burn() -> None:
    sim = BudgetSim(budget_plan("rollback"), budget=observation(0.7))
    sim.settle()
    sim.budget = observation(0.6, page_burn(), at=T0 + 5)
    sim.advance(5)
    sim.settle()
    assert sim.state.phase == RolloutPhase.PROGRESSING
    assert "never rolled back by a burn" in sim.reason("burn-not-acted")
    assert sim.decisions.count("burn-not-acted") == 1, "recorded once, not every tick"


# --------------------------------------------------------------------------- plumbing


def test_config_slos_and_the_snapshot_carry_class_and_slos(tmp_path: Path) -> None:
    from coalmine.errors import SpecError
    from coalmine.rollout.plan import snapshot
    from coalmine.rollout.snapshot import plan_from_record
    from coalmine.spec.config import parse_config
    from coalmine.store.base import RolloutRecord

    slos = tmp_path / "slos.yaml"
    slos.write_text(
        "slos:\n  - name: shop-availability\n    service: shop\n    objective: 99.9\n"
        "    sli: {type: availability, source: router}\n    window: 30d\n"
    )
    config_text = (
        "environments:\n  local:\n    slos: [slos.yaml]\n    services:\n      shop:\n"
        "        stable: {url: 'http://127.0.0.1:9001'}\n"
        "        canary: {url: 'http://127.0.0.1:9002'}\n"
    )
    env = parse_config(config_text, "coalmine.yaml", tmp_path, env={}).environment()
    assert env.slos == (str(slos),)
    with pytest.raises(SpecError, match=r"missing\.yaml"):
        parse_config(config_text.replace("slos.yaml", "missing.yaml"), "c.yaml", tmp_path, env={})

    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: shop\n"
        "  annotations: {coalmine.dev/class: fix}\nspec:\n  strategy:\n    canary:\n"
        "      steps: [{setWeight: 10}]\n"
    )
    service = env.services["shop"]
    for override, expected in ((None, "fix"), ("rollback", "rollback")):
        spec = snapshot(
            [str(rollout)], service, "local", 1.0, slo_paths=env.slos, rollout_class=override
        )
        slos.write_text("slos: []\n")  # later edits do not change a running rollout
        record = RolloutRecord("shop", 1, "Pending", {}, spec, 0.0, 0.0)
        plan = plan_from_record(record)
        assert plan.rollout_class == expected
        assert [s.name for s in plan.slos] == ["shop-availability"]
        slos.write_text(spec["slo_files"][str(slos)])

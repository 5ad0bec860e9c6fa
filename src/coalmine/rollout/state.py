"""The persisted state of one rollout revision and the resolved plan it follows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from coalmine.analysis.run import RunState
from coalmine.slo.spec import Slo
from coalmine.spec.model import HeaderMatch, Metric, Rollout
from coalmine.traffic.base import HeaderRoute, Routing


class RolloutPhase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    HEALTHY = "Healthy"
    ABORTED = "Aborted"
    ROLLED_BACK = "RolledBack"

    @property
    def terminal(self) -> bool:
        return self in (RolloutPhase.HEALTHY, RolloutPhase.ABORTED, RolloutPhase.ROLLED_BACK)


class PauseReason(StrEnum):
    PAUSE_STEP = "CanaryPauseStep"  # a `pause: {}` step waits for a human
    INCONCLUSIVE = "InconclusiveAnalysis"  # not enough evidence: a human decides
    USER = "PausedByUser"
    BUDGET = "BudgetPolicy"  # the release policy holds it: approval or a healthier budget


@dataclass(frozen=True)
class Plan:
    """A rollout with every analysis resolved to its metrics (args substituted).

    ``step_metrics[i]`` holds the metrics of step ``i`` when it is an analysis step.
    """

    rollout: Rollout
    step_metrics: dict[int, tuple[Metric, ...]]
    background_metrics: tuple[Metric, ...] = ()
    stable_version: str = "stable"
    time_scale: float = 1.0
    # the release policy: feature | fix | rollback (coalmine.dev/class or --class)
    rollout_class: str = "feature"
    slos: tuple[Slo, ...] = ()  # the service's SLOs; none: the budget policy does not apply
    accelerate: bool = False  # normal tier: pauses shortened by the SLO's accelerateFactor

    @property
    def name(self) -> str:
        return self.rollout.name


@dataclass(frozen=True)
class PendingRollback:
    """A rollback that was decided and sent to the router; the receipt is written once the
    router confirms, so that it can state how long the traffic switch took."""

    decided_at: float
    generation: int
    operation_reason: str  # "analysis-failed", "aborted-by-user", "undo"
    failure_reason: str
    phase_failed: str
    previous_weight: int
    evidence: dict[str, Any] = field(default_factory=dict)
    burn: dict[str, Any] | None = None  # the fast burn that triggered it (BurnSignal.to_dict)


@dataclass(frozen=True)
class RolloutState:
    phase: RolloutPhase = RolloutPhase.PENDING
    step_index: int = 0
    step_started_at: float | None = None
    canary_weight: int = 0
    header_routes: tuple[HeaderRoute, ...] = ()
    generation: int = 0  # of the routing this state wants
    applied_generation: int = 0  # the router confirmed this one
    pause_reason: PauseReason | None = None
    paused_at: float | None = None
    step_run: RunState | None = None
    background_run: RunState | None = None
    message: str = ""
    started_at: float = 0.0
    finished_at: float | None = None
    phase_started_at: float = 0.0  # when the current traffic phase (weight level) began
    phase_runs: tuple[dict[str, Any], ...] = ()  # analysis evidence gathered in this phase
    phases_completed: tuple[str, ...] = ()
    rollbacks: int = 0
    pending_rollback: PendingRollback | None = None
    # release policy: the verdict applied to the current step (PolicyVerdict.to_dict), the
    # approval on record, the tier last notified, and fast burns recorded but not acted upon
    budget: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    notified_tier: str | None = None
    burns_ignored: tuple[str, ...] = ()

    @property
    def routing(self) -> Routing:
        return Routing(
            canary_weight=self.canary_weight,
            header_routes=self.header_routes,
            generation=self.generation,
        )

    def with_routing(self, weight: int, routes: tuple[HeaderRoute, ...]) -> RolloutState:
        return replace(
            self, canary_weight=weight, header_routes=routes, generation=self.generation + 1
        )

    @property
    def routing_settled(self) -> bool:
        return self.applied_generation >= self.generation

    # ----------------------------------------------------------------- JSON round trip

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["step_run"] = self.step_run.to_dict() if self.step_run else None
        data["background_run"] = self.background_run.to_dict() if self.background_run else None
        data["header_routes"] = [asdict(r) for r in self.header_routes]
        data["phase_runs"] = list(self.phase_runs)
        data["phases_completed"] = list(self.phases_completed)
        data["burns_ignored"] = list(self.burns_ignored)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        pending = data.get("pending_rollback")
        return cls(
            **{
                **data,
                "phase": RolloutPhase(data["phase"]),
                "pause_reason": PauseReason(data["pause_reason"])
                if data.get("pause_reason")
                else None,
                "header_routes": tuple(
                    HeaderRoute(r["name"], tuple(HeaderMatch(**m) for m in r["matches"]))
                    for r in data.get("header_routes", ())
                ),
                "step_run": RunState.from_dict(data["step_run"]) if data.get("step_run") else None,
                "background_run": RunState.from_dict(data["background_run"])
                if data.get("background_run")
                else None,
                "phase_runs": tuple(data.get("phase_runs", ())),
                "phases_completed": tuple(data.get("phases_completed", ())),
                "burns_ignored": tuple(data.get("burns_ignored", ())),
                "pending_rollback": PendingRollback(**pending) if pending else None,
            }
        )

"""The error budget as the controller's pure core sees it: what the runner observed of a
service's SLOs (:class:`BudgetObservation`), and the release policy's verdict for one rollout
(:func:`release_policy`).

No I/O here. The runner builds observations with :func:`observe` from the engine's results;
``reconcile`` asks :func:`release_policy` before every step and acts on fast burns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coalmine.slo.engine import SloResult
from coalmine.slo.policy import Tier, data_gap, evaluation_tier, release_decision, worst_tier
from coalmine.slo.spec import ReleaseThresholds, Slo, format_span

_TIER_ORDER = (Tier.NORMAL, Tier.CAUTIOUS, Tier.PROTECTED, Tier.FROZEN)


@dataclass(frozen=True)
class BurnSignal:
    """A burn-rate alert that fires: from coalmine's engine or from Alertmanager's webhook."""

    slo: str
    rule: str
    severity: str  # page | ticket
    long_s: float
    short_s: float
    factor: float
    long_rate: float | None = None  # None: not known (Alertmanager only states the long one)
    short_rate: float | None = None
    source: str = "engine"  # engine | alertmanager
    starts_at: float | None = None  # when it started firing, when known (Alertmanager)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.slo}/{self.rule}"

    def describe(self) -> str:
        def rate(value: float | None, span: float) -> str:
            shown = "unknown" if value is None else f"{value:.3g}"
            return f"{shown} over {format_span(span)}"

        return (
            f"fast burn of SLO {self.slo} ({self.rule}, {self.source}): burn rate "
            f"{rate(self.long_rate, self.long_s)} and {rate(self.short_rate, self.short_s)}, "
            f"above {self.factor:.4g}"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slo": self.slo,
            "rule": self.rule,
            "severity": self.severity,
            "long": format_span(self.long_s),
            "short": format_span(self.short_s),
            "factor": self.factor,
            "long_rate": self.long_rate,
            "short_rate": self.short_rate,
            "source": self.source,
            "long_s": self.long_s,
            "short_s": self.short_s,
        }
        if self.starts_at is not None:
            out["starts_at"] = self.starts_at
        if self.details:
            out["details"] = dict(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BurnSignal:
        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            slo=str(data["slo"]),
            rule=str(data["rule"]),
            severity=str(data.get("severity", "page")),
            long_s=float(data["long_s"]),
            short_s=float(data["short_s"]),
            factor=float(data["factor"]),
            long_rate=number("long_rate"),
            short_rate=number("short_rate"),
            source=str(data.get("source", "engine")),
            starts_at=number("starts_at"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class SloBudget:
    """One SLO's budget at an evaluation. ``error``: it could not be evaluated (tier cautious).
    ``data_gap``: it was, but on incomplete data (a source not collected, a rule without data):
    ``remaining`` is what the stored buckets say and the tier is at least cautious."""

    slo: str
    remaining: float | None
    tier: Tier
    thresholds: ReleaseThresholds = field(default_factory=ReleaseThresholds)
    firing: tuple[BurnSignal, ...] = ()
    exhaustion_s: float | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    data_gap: str | None = None


@dataclass(frozen=True)
class BudgetObservation:
    """The service's SLOs as last evaluated. ``error``: the evaluation as a whole failed."""

    at: float
    slos: tuple[SloBudget, ...] = ()
    error: str | None = None

    @property
    def worst(self) -> Tier:
        tiers = [s.tier for s in self.slos]
        if self.error is not None or not self.slos:
            tiers.append(Tier.CAUTIOUS)
        return worst_tier(tiers)

    def page_burns(self) -> tuple[BurnSignal, ...]:
        return tuple(b for s in self.slos for b in s.firing if b.severity == "page")


def slo_budget(slo: Slo, result: SloResult) -> SloBudget:
    """What the controller keeps of one engine result."""
    firing = tuple(
        BurnSignal(
            slo=slo.name,
            rule=r.rule.name,
            severity=r.rule.severity,
            long_s=r.rule.long_s,
            short_s=r.rule.short_s,
            factor=r.rule.factor,
            long_rate=r.long.burn_rate,
            short_rate=r.short.burn_rate,
            source="engine",
        )
        for r in result.rules
        if r.state == "firing"
    )
    return SloBudget(
        slo=slo.name,
        remaining=result.budget.remaining,
        tier=evaluation_tier(result, slo.release),
        thresholds=slo.release,
        firing=firing,
        exhaustion_s=result.exhaustion_s,
        notes=result.notes,
        data_gap=data_gap(result),
    )


def failed_budget(slo: Slo, error: str) -> SloBudget:
    """An SLO whose evaluation failed: unknown budget, so cautious (never "all good")."""
    return SloBudget(slo.name, None, Tier.CAUTIOUS, slo.release, error=error)


def observe(at: float, outcomes: Sequence[tuple[Slo, SloResult | str]]) -> BudgetObservation:
    """Results per SLO (an engine result, or the error text of a failed evaluation)."""
    return BudgetObservation(
        at,
        tuple(
            failed_budget(slo, got) if isinstance(got, str) else slo_budget(slo, got)
            for slo, got in outcomes
        ),
    )


# --------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class PolicyVerdict:
    allowed: bool
    tier: Tier
    reason: str
    rollout_class: str
    slo: str | None  # the SLO that set the tier (the worst); None when the budget is unknown
    remaining: float | None
    pause_factor: float
    notify: bool
    needs_approval: bool
    approved: bool
    emergency: bool
    error: str | None = None
    data_gap: str | None = None  # the chosen SLO's data is incomplete (see SloBudget)

    def to_dict(self) -> dict[str, Any]:
        """The receipts' ``budget_policy`` field (and the decision's data)."""
        out: dict[str, Any] = {
            "tier": str(self.tier),
            "remaining": self.remaining,
            "slo": self.slo,
            "reason": self.reason,
            "class": self.rollout_class,
            "allowed": self.allowed,
            "pause_factor": self.pause_factor,
            "notify": self.notify,
            "needs_approval": self.needs_approval,
            "approved": self.approved,
            "emergency": self.emergency,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.data_gap is not None:
            out["data_gap"] = self.data_gap
        return out


def _worst(slos: Sequence[SloBudget]) -> SloBudget:
    """The SLO with the strictest tier; among equals an unknown or incomplete budget first, then
    the least budget left."""
    return max(
        slos,
        key=lambda s: (
            _TIER_ORDER.index(s.tier),
            s.error is not None or s.data_gap is not None,
            s.remaining is None,
            -(s.remaining or 0.0),
        ),
    )


def release_policy(
    rollout_class: str,
    budget: BudgetObservation | None,
    *,
    thresholds: ReleaseThresholds,
    approval: Mapping[str, Any] | None = None,
    accelerate: bool = False,
) -> PolicyVerdict:
    """The policy's verdict for a rollout of ``rollout_class`` given the last observation.

    No observation, or a failed evaluation, is an unknown budget: ``cautious``, with the cause
    in the reason; an SLO evaluated on incomplete data (``data_gap``) is at least ``cautious``.
    ``approval`` is the rollout's approval on record (``{"emergency": bool}``).
    ``thresholds`` is used when no SLO could be read (its pause factor)."""
    approved = approval is not None
    emergency = bool(approval and approval.get("emergency"))
    error: str | None = None
    slo: str | None = None
    remaining: float | None = None
    gap: str | None = None
    t = thresholds
    if budget is None:
        error = "the service's SLOs have not been evaluated yet"
    elif budget.error is not None:
        error = budget.error
    elif not budget.slos:
        error = "no SLO of the service could be evaluated"
    if error is None:
        assert budget is not None
        chosen = _worst(budget.slos)
        tier, slo, remaining, t = chosen.tier, chosen.slo, chosen.remaining, chosen.thresholds
        gap = chosen.data_gap
        if chosen.error is not None:
            error = f"SLO {chosen.slo}: {chosen.error}"
    else:
        tier = Tier.CAUTIOUS
    decision = release_decision(
        tier,
        rollout_class,
        approved,
        emergency=emergency,
        budget_remaining=remaining,
        thresholds=t,
        slo=slo,
        data_gap=gap,
    )
    tier = decision.tier
    reason = decision.reason
    if error is not None and tier is Tier.CAUTIOUS:
        what = (
            "rollbacks are never held back"
            if rollout_class == "rollback"
            else f"{rollout_class} allowed with pauses x{t.pause_factor:g} and an SRE notification"
        )
        reason = f"cautious: error budget unknown ({error}); {what}"
    pause_factor = decision.pause_factor
    if decision.allowed and decision.accelerate and accelerate:
        pause_factor = decision.accelerate_factor
        reason += f"; accelerated: pauses x{pause_factor:g}"
    return PolicyVerdict(
        allowed=decision.allowed,
        tier=tier,
        reason=reason,
        rollout_class=rollout_class,
        slo=slo,
        remaining=remaining,
        pause_factor=pause_factor,
        notify=decision.notify,
        needs_approval=decision.needs_approval,
        approved=approved,
        emergency=emergency,
        error=error,
        data_gap=gap,
    )


def how_to_proceed(verdict: PolicyVerdict, rollout: str) -> str:
    """One sentence for a held rollout: what lets it go on."""
    t = verdict.tier
    if t is Tier.FROZEN:
        return (
            f"an emergency release needs `coalmine rollout approve {rollout} --emergency`; "
            f"otherwise abort it (traffic goes back to stable) or wait for the budget"
        )
    if verdict.needs_approval:
        return f"`coalmine rollout approve {rollout}` lets this fix go on"
    return (
        "features wait until the budget recovers out of the protected tier; "
        f"`coalmine rollout abort {rollout}` sends traffic back to stable"
    )

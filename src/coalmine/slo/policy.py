"""The budget-driven release policy (pure): the error budget left sets a tier, the tier and the
rollout's class set what a release may do.

========== ============================== =================================================
tier       budget remaining (defaults)    releases
========== ============================== =================================================
normal     above 50%                      allowed; pauses may be shortened (x0.5) on request
cautious   20% to 50%                     allowed; pauses x2; a notification
protected  above 0, below 20%             fixes (approved) and rollbacks only; a notification
frozen     0 or less (exhausted)          rollbacks; emergencies with an approval
========== ============================== =================================================

A rollback is never held back: it lowers risk, and the framework promises one within minutes.
An unknown budget (no data in the SLO period) is ``cautious``: no data is never "all good". So is
a gap in the data (:func:`data_gap`: a source that could not be collected, or a rule in the
``no_data`` state): the tier is then at least ``cautious``, whatever the stored buckets say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from coalmine.slo.engine import SloResult
from coalmine.slo.spec import ReleaseThresholds, format_span

ROLLOUT_CLASSES = ("feature", "fix", "rollback")


class Tier(StrEnum):
    NORMAL = "normal"
    CAUTIOUS = "cautious"
    PROTECTED = "protected"
    FROZEN = "frozen"


_ORDER = (Tier.NORMAL, Tier.CAUTIOUS, Tier.PROTECTED, Tier.FROZEN)


def release_tier(budget_remaining: float | None, thresholds: ReleaseThresholds) -> Tier:
    """The tier for a budget remaining fraction (1.0 = untouched, negative = overspent)."""
    if budget_remaining is None:
        return Tier.CAUTIOUS
    if budget_remaining <= 0:
        return Tier.FROZEN
    if budget_remaining > thresholds.normal_above:
        return Tier.NORMAL
    if budget_remaining >= thresholds.cautious_above:
        return Tier.CAUTIOUS
    return Tier.PROTECTED


def data_gap(result: SloResult) -> str | None:
    """Why ``result`` cannot vouch for its budget (None: it can): the sources that could not be
    collected, and the windows without data of rules in the ``no_data`` state."""
    gaps = [
        f"SLO {result.slo} could not be collected from {f.source} ({f.reason}); "
        "the budget is unknown"
        for f in result.collection_failures
    ]
    rules = result.no_data_rules
    if rules:
        empty = {w.window_s for r in rules for w in (r.long, r.short) if w.total <= 0}
        spans = ", ".join(format_span(s) for s in sorted(empty))
        names = ", ".join(r.rule.name for r in rules)
        plural = "s" if len(empty) > 1 else ""
        gaps.append(
            f"SLO {result.slo} has no data in window{plural} {spans} ({names}, missingData: alert)"
        )
    return "; ".join(gaps) or None


def evaluation_tier(result: SloResult, thresholds: ReleaseThresholds) -> Tier:
    """The tier of an evaluation: its budget's, but at least ``cautious`` with a data gap."""
    tier = release_tier(result.budget.remaining, thresholds)
    return worst_tier((tier, Tier.CAUTIOUS)) if data_gap(result) else tier


def worst_tier(tiers: Iterable[Tier]) -> Tier:
    """The strictest of several tiers (a service with several SLOs gets its worst one)."""
    return max(tiers, key=_ORDER.index, default=Tier.NORMAL)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tier: Tier
    pause_factor: float  # multiply every pause by this (1.0: unchanged)
    accelerate: bool  # the rollout may shorten its pauses by ``accelerate_factor``
    accelerate_factor: float
    notify: bool  # tell the SRE channel
    needs_approval: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tier": str(self.tier)}


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value * 100:.1f}%"


def release_decision(
    tier: Tier,
    rollout_class: str,
    approved: bool = False,
    *,
    emergency: bool = False,
    budget_remaining: float | None = None,
    thresholds: ReleaseThresholds | None = None,
    slo: str | None = None,
    data_gap: str | None = None,
) -> Decision:
    """What a rollout of ``rollout_class`` (feature, fix or rollback) may do in ``tier``.

    ``approved``: an SRE approval is on record. ``emergency``: the release is declared an
    emergency (only matters when frozen). ``budget_remaining``/``slo`` only feed the reason.
    ``data_gap`` (see :func:`data_gap`) makes ``normal`` ``cautious`` and joins the reason."""
    if rollout_class not in ROLLOUT_CLASSES:
        raise ValueError(f"unknown rollout class {rollout_class!r}")
    if data_gap and tier is Tier.NORMAL:
        tier = Tier.CAUTIOUS
    t = thresholds or ReleaseThresholds()
    who = f" of SLO {slo}" if slo else ""
    budget = f"error budget{who} {_pct(budget_remaining)} remaining"
    normal, cautious = f"{t.normal_above * 100:g}%", f"{t.cautious_above * 100:g}%"

    def decide(allowed: bool, reason: str, **kw: Any) -> Decision:
        base: dict[str, Any] = {
            "pause_factor": 1.0,
            "accelerate": False,
            "accelerate_factor": t.accelerate_factor,
            "notify": True,
            "needs_approval": False,
        }
        base.update(kw)
        if data_gap and tier is not Tier.CAUTIOUS:
            reason += f"; also {data_gap}"
        return Decision(allowed=allowed, tier=tier, reason=reason, **base)

    if tier is Tier.NORMAL:
        return decide(
            True,
            f"normal: {budget}, above {normal}; {rollout_class} allowed, pauses may be "
            f"shortened to x{t.accelerate_factor:g}",
            accelerate=True,
            notify=False,
        )
    if tier is Tier.CAUTIOUS:
        if rollout_class == "rollback":
            return decide(True, f"cautious: {data_gap or budget}; rollbacks are never held back")
        if data_gap:
            detail = data_gap
        elif budget_remaining is None:
            detail = "no events in the SLO period, budget unknown"
        else:
            detail = f"{budget}, between {cautious} and {normal}"
        return decide(
            True,
            f"cautious: {detail}; {rollout_class} allowed with pauses x{t.pause_factor:g} and "
            "an SRE notification",
            pause_factor=t.pause_factor,
        )
    if tier is Tier.PROTECTED:
        if rollout_class == "rollback":
            return decide(True, f"protected: {budget}, below {cautious}; rollbacks allowed")
        if rollout_class == "feature":
            return decide(
                False,
                f"protected: {budget}, below {cautious}; only fixes and rollbacks, no features",
            )
        if approved:
            return decide(
                True,
                f"protected: {budget}, below {cautious}; approved fix allowed with pauses "
                f"x{t.pause_factor:g}",
                pause_factor=t.pause_factor,
                needs_approval=True,
            )
        return decide(
            False,
            f"protected: {budget}, below {cautious}; a fix needs an SRE approval",
            needs_approval=True,
        )
    # frozen
    if rollout_class == "rollback":
        return decide(True, f"frozen: {budget}, budget exhausted; rollbacks allowed")
    if not emergency:
        return decide(
            False,
            f"frozen: {budget}, budget exhausted; emergency releases only (declare an "
            "emergency and get an approval)",
        )
    if approved:
        return decide(
            True,
            f"frozen: {budget}, budget exhausted; approved emergency {rollout_class} allowed "
            f"with pauses x{t.pause_factor:g}; a postmortem is due",
            pause_factor=t.pause_factor,
            needs_approval=True,
        )
    return decide(
        False,
        f"frozen: {budget}, budget exhausted; an emergency {rollout_class} needs an approval",
        needs_approval=True,
    )

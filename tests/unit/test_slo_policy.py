"""The budget-driven release policy: tier boundaries and what each class of rollout may do."""

from __future__ import annotations

import pytest

from coalmine.slo.policy import Tier, release_decision, release_tier, worst_tier
from coalmine.slo.spec import ReleaseThresholds

DEFAULT = ReleaseThresholds()


@pytest.mark.parametrize(
    ("remaining", "tier"),
    [
        (1.0, Tier.NORMAL),
        (0.5000001, Tier.NORMAL),
        (0.5, Tier.CAUTIOUS),  # "20-50%" includes 50%
        (0.2, Tier.CAUTIOUS),  # ...and 20%
        (0.1999999, Tier.PROTECTED),
        (0.0000001, Tier.PROTECTED),
        (0.0, Tier.FROZEN),
        (-2.5, Tier.FROZEN),  # overspent
        (None, Tier.CAUTIOUS),  # no data is not "all good"
    ],
)
def test_tier_boundaries(remaining: float | None, tier: Tier) -> None:
    assert release_tier(remaining, DEFAULT) is tier


def test_thresholds_are_configurable() -> None:
    strict = ReleaseThresholds(normal_above=0.8, cautious_above=0.4)
    assert release_tier(0.7, strict) is Tier.CAUTIOUS
    assert release_tier(0.3, strict) is Tier.PROTECTED
    assert worst_tier([Tier.NORMAL, Tier.PROTECTED, Tier.CAUTIOUS]) is Tier.PROTECTED
    assert worst_tier([]) is Tier.NORMAL


def test_normal_allows_everything_and_may_accelerate() -> None:
    for cls in ("feature", "fix", "rollback"):
        d = release_decision(Tier.NORMAL, cls, budget_remaining=0.72, slo="api")
        assert d.allowed and d.accelerate and d.accelerate_factor == 0.5
        assert d.pause_factor == 1.0 and not d.notify and not d.needs_approval
        assert d.reason.startswith("normal: error budget of SLO api 72.0% remaining, above 50%")


def test_cautious_lengthens_pauses_and_notifies() -> None:
    d = release_decision(Tier.CAUTIOUS, "feature", budget_remaining=0.35)
    assert d.allowed and d.pause_factor == 2.0 and d.notify and not d.accelerate
    assert "35.0% remaining, between 20% and 50%" in d.reason and "pauses x2" in d.reason
    custom = ReleaseThresholds(pause_factor=3)
    assert release_decision(Tier.CAUTIOUS, "fix", thresholds=custom).pause_factor == 3
    unknown = release_decision(Tier.CAUTIOUS, "feature", budget_remaining=None)
    assert "budget unknown" in unknown.reason
    rollback = release_decision(Tier.CAUTIOUS, "rollback", budget_remaining=0.35)
    assert rollback.allowed and rollback.pause_factor == 1.0


def test_protected_allows_only_approved_fixes_and_rollbacks() -> None:
    feature = release_decision(Tier.PROTECTED, "feature", approved=True, budget_remaining=0.1)
    assert not feature.allowed
    assert "10.0% remaining, below 20%; only fixes and rollbacks" in feature.reason
    fix = release_decision(Tier.PROTECTED, "fix", budget_remaining=0.1)
    assert not fix.allowed and fix.needs_approval and "needs an SRE approval" in fix.reason
    approved = release_decision(Tier.PROTECTED, "fix", approved=True, budget_remaining=0.1)
    assert approved.allowed and approved.needs_approval and approved.pause_factor == 2.0
    rollback = release_decision(Tier.PROTECTED, "rollback", budget_remaining=0.1)
    assert rollback.allowed and not rollback.needs_approval and rollback.notify


def test_frozen_allows_rollbacks_and_approved_emergencies_only() -> None:
    for cls in ("feature", "fix"):
        d = release_decision(Tier.FROZEN, cls, approved=True, budget_remaining=-0.4)
        assert not d.allowed and "emergency releases only" in d.reason
        assert "-40.0% remaining" in d.reason
    unapproved = release_decision(Tier.FROZEN, "fix", emergency=True, budget_remaining=-0.4)
    assert not unapproved.allowed and unapproved.needs_approval
    emergency = release_decision(
        Tier.FROZEN, "fix", approved=True, emergency=True, budget_remaining=-0.4
    )
    assert emergency.allowed and emergency.needs_approval and emergency.notify
    assert "postmortem" in emergency.reason
    rollback = release_decision(Tier.FROZEN, "rollback", budget_remaining=0.0)
    assert rollback.allowed and not rollback.needs_approval


def test_unknown_class_is_a_bug() -> None:
    with pytest.raises(ValueError):
        release_decision(Tier.NORMAL, "hotfix")


def test_reasons_are_one_line_and_serialisable() -> None:
    for tier in Tier:
        for cls in ("feature", "fix", "rollback"):
            d = release_decision(tier, cls, budget_remaining=0.3)
            assert "\n" not in d.reason and d.to_dict()["tier"] == str(tier)

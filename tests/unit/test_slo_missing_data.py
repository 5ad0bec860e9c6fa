"""A gap in the data (a rule in ``no_data``, a source not collected) is never a healthy budget:
the tier is at least cautious, for the CLI (``evaluation_tier``) and the controller
(``rollout.budget``), with a reason that says why."""

from __future__ import annotations

from dataclasses import replace

from coalmine.rollout.budget import observe, release_policy, slo_budget
from coalmine.slo.engine import Bucket, CollectionFailure, SloResult, evaluate
from coalmine.slo.policy import Tier, data_gap, evaluation_tier, release_decision
from coalmine.slo.spec import DAY, HOUR, MINUTE, RouterSource, Sli, Slo, Window, default_alerting

NOW = 1_717_200_000.0


def make_slo(name: str = "api", missing_data: str = "alert") -> Slo:
    return Slo(
        name=name,
        service="api",
        objective=99.0,
        sli=Sli("availability", RouterSource()),
        window=Window(rolling_s=7 * DAY),
        alerting=default_alerting(7 * DAY),
        missing_data=missing_data,  # type: ignore[arg-type]
    )


def good_until(end: float) -> list[Bucket]:
    """A clean day of traffic up to ``end``."""
    start = end - DAY
    return [Bucket(start + i * MINUTE, 100, 100) for i in range(round((end - start) / MINUTE))]


def quiet_last_10_minutes(slo: Slo) -> SloResult:
    return evaluate(slo, good_until(NOW - 10 * MINUTE), NOW)


def test_a_rule_without_data_makes_a_full_budget_cautious() -> None:
    slo = make_slo()
    result = quiet_last_10_minutes(slo)
    assert result.budget.remaining == 1.0
    assert [r.rule.name for r in result.no_data_rules] == ["page-1h"]  # its 5m window is empty
    assert result.to_dict()["no_data_rules"] == ["page-1h"]
    assert evaluation_tier(result, slo.release) is Tier.CAUTIOUS
    assert data_gap(result) == "SLO api has no data in window 5m (page-1h, missingData: alert)"


def test_missing_data_ignore_is_the_user_s_choice_and_stays_normal() -> None:
    slo = make_slo(missing_data="ignore")
    result = quiet_last_10_minutes(slo)
    assert data_gap(result) is None and evaluation_tier(result, slo.release) is Tier.NORMAL


def test_the_controller_sees_no_data_as_cautious_with_the_reason() -> None:
    slo = make_slo()
    budget = slo_budget(slo, quiet_last_10_minutes(slo))
    assert budget.tier is Tier.CAUTIOUS and budget.remaining == 1.0
    verdict = release_policy(
        "feature",
        observe(NOW, [(slo, quiet_last_10_minutes(slo))]),
        thresholds=slo.release,
        accelerate=True,
    )
    assert verdict.tier is Tier.CAUTIOUS and verdict.pause_factor == 2.0
    assert verdict.reason == (
        "cautious: SLO api has no data in window 5m (page-1h, missingData: alert); feature "
        "allowed with pauses x2 and an SRE notification"
    )


def test_a_failed_collection_makes_a_healthy_result_cautious() -> None:
    slo = make_slo(missing_data="ignore")
    result = evaluate(slo, good_until(NOW), NOW)
    assert evaluation_tier(result, slo.release) is Tier.NORMAL and not result.stale
    down = replace(
        result,
        collection_failures=(CollectionFailure("prometheus", "connection refused"),),
    )
    assert down.stale and down.to_dict()["stale"] is True
    assert down.to_dict()["collection_failures"] == [
        {"source": "prometheus", "reason": "connection refused"}
    ]
    assert evaluation_tier(down, slo.release) is Tier.CAUTIOUS
    verdict = release_policy("fix", observe(NOW, [(slo, down)]), thresholds=slo.release)
    assert verdict.reason.startswith(
        "cautious: SLO api could not be collected from prometheus (connection refused); "
        "the budget is unknown; fix allowed with pauses x2"
    )


def test_several_slos_take_the_strictest_and_name_the_gap() -> None:
    healthy, quiet = make_slo("healthy", "ignore"), make_slo("quiet")
    outcomes = [
        (healthy, evaluate(healthy, good_until(NOW), NOW)),
        (quiet, quiet_last_10_minutes(quiet)),
    ]
    verdict = release_policy("feature", observe(NOW, outcomes), thresholds=healthy.release)
    assert verdict.tier is Tier.CAUTIOUS and verdict.slo == "quiet"
    assert "SLO quiet has no data in window 5m" in verdict.reason
    # a known protected budget elsewhere is stricter than a gap: it wins
    spent = evaluate(healthy, [*good_until(NOW), Bucket(NOW - HOUR * 3, 0, 1300)], NOW)
    assert evaluation_tier(spent, healthy.release) is Tier.PROTECTED
    worst = release_policy(
        "feature", observe(NOW, [(healthy, spent), outcomes[1]]), thresholds=healthy.release
    )
    assert worst.tier is Tier.PROTECTED and not worst.allowed


def test_release_decision_never_stays_normal_with_a_gap() -> None:
    decision = release_decision(
        Tier.NORMAL, "feature", budget_remaining=0.9, data_gap="SLO api has no data in window 5m"
    )
    assert decision.tier is Tier.CAUTIOUS and not decision.accelerate
    assert decision.pause_factor == 2.0
    assert decision.reason.startswith("cautious: SLO api has no data in window 5m; feature")

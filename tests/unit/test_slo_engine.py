"""The error-budget and burn-rate engine: closed-form cases and properties."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coalmine.slo.engine import Bucket, evaluate, more_bad_to_fire, traffic_guard
from coalmine.slo.spec import (
    DAY,
    HOUR,
    MINUTE,
    AlertRule,
    Budgeting,
    RouterSource,
    Sli,
    Slo,
    Window,
    default_alerting,
)

NOW = 1_717_200_000.0  # a whole minute (2024-06-01T00:00:00Z)


def make_slo(objective: float = 99.9, window: Window | None = None, **kw: object) -> Slo:
    window = window or Window(rolling_s=30 * DAY)
    fields: dict[str, object] = {
        "name": "api",
        "service": "api",
        "objective": objective,
        "sli": Sli("availability", RouterSource()),
        "window": window,
        "alerting": default_alerting(window.nominal_s),
    }
    fields.update(kw)
    return Slo(**fields)  # type: ignore[arg-type]


def steady(
    start: float, end: float, total: float, bad: float, step: float = MINUTE
) -> list[Bucket]:
    """One bucket per step in [start, end) with the same counts."""
    n = round((end - start) / step)
    return [Bucket(start + i * step, total - bad, total) for i in range(n)]


def rule(result: object, name: str) -> object:
    return next(r for r in result.rules if r.rule.name == name)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- closed forms


def test_constant_error_rate_gives_exact_burn_rate_budget_and_exhaustion() -> None:
    slo = make_slo(objective=99.5)  # 0.5% allowed
    buckets = steady(NOW - 3 * DAY, NOW, total=400, bad=1)  # 0.25% errors: burn 0.5
    result = evaluate(slo, buckets, NOW)
    for window in result.windows:
        assert window.burn_rate == pytest.approx(0.5)
        assert window.total == pytest.approx(400 * window.window_s / MINUTE)
    assert result.sli == pytest.approx(0.9975)
    assert result.budget.allowed == pytest.approx(0.005 * 400 * 3 * 1440)
    assert result.budget.consumed == pytest.approx(0.5)
    assert result.budget.remaining == pytest.approx(0.5)
    assert not result.budget.exhausted
    # at burn 0.5 the remaining half of a 30-day budget lasts 30 days
    assert result.exhaustion_s == pytest.approx(30 * DAY)
    assert all(r.state == "ok" for r in result.rules) and result.state == "ok"


def test_overspent_budget_is_negative_and_exhausted() -> None:
    slo = make_slo(objective=99.5)
    result = evaluate(slo, steady(NOW - DAY, NOW, total=100, bad=2), NOW)  # 2%: burn 4
    assert result.budget.consumed == pytest.approx(4.0)
    assert result.budget.remaining == pytest.approx(-3.0)
    assert result.budget.exhausted and result.exhaustion_s == 0.0
    # burn 4 > 3 (ticket-1d) but below 6 and 14.4 (pages)
    assert rule(result, "ticket-1d").state == "firing"  # type: ignore[attr-defined]
    assert rule(result, "page-6h").state == "ok"  # type: ignore[attr-defined]
    assert result.state == "ticket"


def test_ratios_are_sums_not_averages_of_ratios() -> None:
    slo = make_slo(objective=99.0)
    # a busy minute with 1% errors and an idle one with 100% errors
    buckets = [Bucket(NOW - 2 * MINUTE, 990, 1000), Bucket(NOW - MINUTE, 0, 1)]
    result = evaluate(slo, buckets, NOW)
    five = next(w for w in result.windows if w.window_s == 5 * MINUTE)
    assert five.bad == pytest.approx(11) and five.total == 1001
    assert five.error_ratio == pytest.approx(11 / 1001)  # not (0.01 + 1.0) / 2


def test_only_complete_buckets_count() -> None:
    slo = make_slo()
    buckets = [*steady(NOW - HOUR, NOW, total=100, bad=0), Bucket(NOW, 0, 1000)]
    result = evaluate(slo, buckets, NOW + 30)  # half-way through the minute at NOW
    assert result.end == NOW
    assert result.period.bad == 0 and result.period.total == 6000


def test_windows_never_reach_before_a_calendar_month_in_its_timezone() -> None:
    # Berlin is UTC+1 in February: March starts at 2024-02-29T23:00Z
    march = datetime(2024, 2, 29, 23, tzinfo=UTC).timestamp()
    now = datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    slo = make_slo(objective=99.0, window=Window(calendar="month", timezone="Europe/Berlin"))
    buckets = [
        *steady(march - 2 * DAY, march, total=10, bad=10),  # February in Berlin: all bad
        *steady(march, march + HOUR, total=10, bad=1),  # 2024-03-01 00:00-01:00 Berlin
        *steady(march + HOUR, now, total=10, bad=0),
    ]
    result = evaluate(slo, buckets, now)
    assert result.period_start == march
    # April starts at 2024-03-31T22:00Z (summer time): the month is 31 days minus one hour
    assert result.period_end - result.period_start == 31 * DAY - HOUR
    assert result.period.bad == 60 and result.period.total == 25 * 60 * 10
    three_days = next(w for w in result.windows if w.window_s == 3 * DAY)
    assert three_days.clipped and three_days.start == march
    assert three_days.bad == 60  # none of February's errors
    one_hour = next(w for w in result.windows if w.window_s == HOUR)
    assert not one_hour.clipped and one_hour.bad == 0


def test_timeslices_count_slices() -> None:
    slo = make_slo(
        objective=99.0,
        window=Window(rolling_s=7 * DAY),
        budgeting=Budgeting("timeslices", 5 * MINUTE, 0.9),
    )
    slo = replace(slo, alerting=default_alerting(7 * DAY))
    buckets: list[Bucket] = []
    start = NOW - 2 * HOUR  # 24 slices of 5 minutes
    for s in range(24):
        t0 = start + s * 5 * MINUTE
        if s == 3:
            continue  # no data: left out (missingData: ignore)
        bad = 2 if s in (5, 6) else 1  # 80% good in slices 5 and 6, 90% elsewhere
        buckets.extend(Bucket(t0 + m * MINUTE, 10 - bad, 10) for m in range(5))
    result = evaluate(slo, buckets, NOW)
    assert result.unit_s == 5 * MINUTE
    assert result.period.total == 23 and result.period.bad == 2
    assert result.sli == pytest.approx(21 / 23)
    slices_in_week = 7 * DAY / (5 * MINUTE)
    assert result.budget.allowed == pytest.approx(0.01 * slices_in_week)
    assert result.budget.spent == 2
    assert result.budget.consumed == pytest.approx(2 / (0.01 * slices_in_week))


def test_no_nan_anywhere_with_idle_windows_and_broken_buckets() -> None:
    slo = make_slo()
    buckets = [
        Bucket(NOW - 2 * DAY, 90, 100),
        Bucket(NOW - 2 * DAY + MINUTE, math.nan, 100),
        Bucket(NOW - 2 * DAY + 2 * MINUTE, 5, math.inf),
    ]
    result = evaluate(slo, buckets, NOW)
    assert result.period.total == 100  # the two broken buckets are ignored...
    assert any("non-finite" in n for n in result.notes)  # ...and said so
    one_hour = next(w for w in result.windows if w.window_s == HOUR)
    assert one_hour.total == 0 and one_hour.error_ratio is None and one_hour.burn_rate is None
    assert result.budget.remaining == pytest.approx(1 - 0.1 / 0.001)
    json.dumps(result.to_dict(), allow_nan=False)  # raises on any NaN or infinity


def test_no_data_at_all_leaves_budget_unknown() -> None:
    result = evaluate(make_slo(), [], NOW)
    assert result.sli is None and result.budget.remaining is None
    assert result.budget.consumed is None and result.exhaustion_s is None
    assert result.state == "ok" and any("no events" in n for n in result.notes)


# --------------------------------------------------------------------------- missing data


def idle_last_hours() -> list[Bucket]:
    """Traffic until 2 hours ago, nothing since."""
    return steady(NOW - DAY, NOW - 2 * HOUR, total=100, bad=0)


def test_missing_data_ignore_does_not_alert() -> None:
    result = evaluate(make_slo(missing_data="ignore"), idle_last_hours(), NOW)
    page = rule(result, "page-1h")
    assert page.state == "ok" and page.long.burn_rate is None  # type: ignore[attr-defined]
    assert result.state == "ok"


def test_missing_data_alert_is_a_distinct_state() -> None:
    result = evaluate(make_slo(missing_data="alert"), idle_last_hours(), NOW)
    assert rule(result, "page-1h").state == "no_data"  # type: ignore[attr-defined]
    assert rule(result, "ticket-3d").state == "ok"  # its windows (3d, 6h) still hold events
    assert result.state == "no_data"


def test_missing_data_bad_counts_each_empty_bucket_as_one_bad_event() -> None:
    slo = make_slo(objective=99.0, missing_data="bad")
    observed_from = NOW - DAY
    result = evaluate(slo, idle_last_hours(), NOW, observed_from=observed_from)
    one_hour = next(w for w in result.windows if w.window_s == HOUR)
    assert (
        one_hour.missing == 60 and one_hour.bad == 60 and one_hour.burn_rate == pytest.approx(100)
    )
    assert rule(result, "page-1h").state == "firing"  # type: ignore[attr-defined]
    assert result.state == "page"
    # the period counts 120 empty minutes as bad, but nothing before observed_from
    assert result.period.missing == 120
    assert result.period.total == 22 * 60 * 100 + 120


# --------------------------------------------------------------------------- rules


def test_more_bad_events_to_fire_is_exact() -> None:
    slo = make_slo(objective=99.0)
    base = steady(NOW - 2 * DAY, NOW, total=50, bad=0)
    result = evaluate(slo, base, NOW)
    page = rule(result, "page-1h")
    n = page.more_bad_to_fire  # type: ignore[attr-defined]
    assert n is not None and n > 1

    def with_bad(k: int) -> str:
        extra = Bucket(NOW - MINUTE, 50, 50 + k)  # the last minute gets k extra bad events
        buckets = [b for b in base if b.start != NOW - MINUTE] + [extra]
        return rule(evaluate(slo, buckets, NOW), "page-1h").state  # type: ignore[attr-defined,no-any-return]

    assert with_bad(n) == "firing"
    assert with_bad(n - 1) == "ok"


def test_more_bad_to_fire_cannot_when_threshold_is_total() -> None:
    result = evaluate(make_slo(), steady(NOW - HOUR, NOW, 10, 0), NOW)
    stat = result.windows[0]
    assert more_bad_to_fire(stat, 1.0) is None
    assert more_bad_to_fire(stat, 0.0) == 1


def test_for_keeps_a_rule_pending_until_it_held_long_enough() -> None:
    slo = make_slo(objective=99.0)
    fast = AlertRule("fast", "page", HOUR, 5 * MINUTE, 2, for_s=3 * MINUTE)  # above 2% errors
    slo = replace(slo, alerting=(fast,))

    def state(burst_minutes: int) -> str:
        cut = NOW - burst_minutes * MINUTE
        buckets = steady(NOW - DAY, cut, total=100, bad=0) + steady(cut, NOW, total=100, bad=100)
        return rule(evaluate(slo, buckets, NOW), "fast").state  # type: ignore[attr-defined,no-any-return]

    # 2 bad minutes: 200 of 6000 in 1h (3.3%) now, but 1.7% a minute ago
    assert state(2) == "pending"
    # 6 bad minutes: above 2% at each of the last 4 minute boundaries (3 minutes)
    assert state(6) == "firing"
    assert state(0) == "ok"


def test_reason_names_windows_and_numbers() -> None:
    slo = make_slo(objective=99.0)
    result = evaluate(slo, steady(NOW - DAY, NOW, total=100, bad=50), NOW)
    page = rule(result, "page-1h")
    assert page.state == "firing"  # type: ignore[attr-defined]
    assert "burn 50" in page.reason and "3000 bad of 6000" in page.reason  # type: ignore[attr-defined]
    assert "above 14.4" in page.reason  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- low traffic


def test_low_traffic_guard_warns_when_one_failure_pages() -> None:
    slo = make_slo(objective=99.9)
    per_minute = traffic_guard(slo, 1 / 60)  # a probe per minute
    page = next(g for g in per_minute if g.rule == "page-1h")
    # 60 events in 1h, threshold 14.4 x 0.1% = 1.44%: 0.864 bad events -> 1 fires it
    assert page.expected_long == pytest.approx(60)
    assert page.bad_to_fire == 1 and page.single_event_fires
    assert "single failed event" in page.message
    busy = next(g for g in traffic_guard(slo, 10.0) if g.rule == "page-1h")
    assert busy.bad_to_fire == math.floor(0.0144 * 36000) + 1 and not busy.single_event_fires


def test_low_traffic_guard_numbers_agree_with_the_engine() -> None:
    slo = make_slo(objective=99.9)
    rate = 2.0  # events per second: 120 a minute
    guard = next(g for g in traffic_guard(slo, rate) if g.rule == "page-1h")
    k = guard.bad_to_fire
    assert k is not None

    def state(bad: int) -> str:
        buckets = steady(NOW - DAY, NOW, total=120, bad=0)
        last = [b for b in buckets if b.start < NOW - MINUTE] + [
            Bucket(NOW - MINUTE, 120 - bad, 120)
        ]
        return rule(evaluate(slo, last, NOW), "page-1h").state  # type: ignore[attr-defined,no-any-return]

    assert k <= 120  # fits in one minute of traffic
    assert state(k) == "firing"
    assert state(k - 1) == "ok"


def test_observed_traffic_feeds_the_guard() -> None:
    result = evaluate(
        make_slo(), steady(NOW - DAY, NOW, total=1, bad=0), NOW, observed_from=NOW - DAY
    )
    page = next(g for g in result.guards if g.rule == "page-1h")
    assert page.events_per_s == pytest.approx(1 / 60)
    assert page.single_event_fires


# --------------------------------------------------------------------------- properties

counts = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 50)), min_size=1, max_size=80)


def buckets_from(pairs: list[tuple[int, int]]) -> list[Bucket]:
    start = NOW - len(pairs) * MINUTE
    return [Bucket(start + i * MINUTE, good, good + bad) for i, (good, bad) in enumerate(pairs)]


@settings(max_examples=60, deadline=None)
@given(counts, st.integers(0, 79), st.integers(1, 20))
def test_burn_rate_is_monotone_in_bad_events(
    pairs: list[tuple[int, int]], where: int, more: int
) -> None:
    slo = make_slo(objective=99.0)
    before = evaluate(slo, buckets_from(pairs), NOW)
    i = where % len(pairs)
    worse = list(pairs)
    worse[i] = (worse[i][0], worse[i][1] + more)
    after = evaluate(slo, buckets_from(worse), NOW)
    for a, b in zip(before.windows, after.windows, strict=True):
        if a.burn_rate is not None:
            assert b.burn_rate is not None and b.burn_rate >= a.burn_rate - 1e-12
    if before.budget.remaining is not None:
        assert after.budget.remaining is not None
        assert after.budget.remaining <= before.budget.remaining + 1e-12


@settings(max_examples=60, deadline=None)
@given(counts, st.sampled_from(["bad", "ignore", "alert"]), st.floats(90, 99.99))
def test_remaining_plus_consumed_is_one(
    pairs: list[tuple[int, int]], missing: str, objective: float
) -> None:
    slo = make_slo(objective=objective, missing_data=missing)
    result = evaluate(slo, buckets_from(pairs), NOW, observed_from=NOW - 2 * HOUR)
    budget = result.budget
    if budget.remaining is None:
        assert budget.consumed is None and result.period.total == 0
    else:
        assert budget.consumed is not None
        assert budget.remaining + budget.consumed == pytest.approx(1.0)
    json.dumps(result.to_dict(), allow_nan=False)

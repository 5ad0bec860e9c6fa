"""The error-budget and burn-rate engine: pure, no I/O, ``now`` passed in.

Input: an :class:`~coalmine.slo.spec.Slo` and its buckets of ``(start, good, total)`` at the
SLO's resolution. Ratios are always ``sum(bad) / sum(total)`` over the buckets of a window, never
averages of ratios, so an idle minute weighs nothing and a busy one weighs what it served.

Semantics (docs/slo.md has the long form):

* Only complete units count: the evaluation ends at ``end = floor(now / unit) * unit`` where the
  unit is the bucket resolution (occurrences) or the time slice (timeslices).
* A window of length ``w`` is ``[end - w, end)`` clipped to the SLO period: it never reaches
  before the rolling period's start or the calendar month's first instant.
* Timeslices: the buckets of a slice are summed; a slice with events is good when
  ``good / total >= good_ratio``. Each slice then counts as one event (good or bad).
* Missing data is a unit (bucket or slice) without events, after ``observed_from``:
  ``bad`` counts it as one bad event; ``ignore`` leaves it out (a window without events has no
  ratio and never alerts); ``alert`` leaves it out too, and a rule whose window has no events
  is in the distinct state ``no_data``. Nothing is ever NaN: a ratio without events is None.
* A rule fires when the burn rate over its long and its short window are both above its factor
  (for ``for_s``: at every unit boundary of the last ``for_s``; before that it is pending).
* Budget: occurrences allow ``(1 - objective) * events in the period``; timeslices allow
  ``(1 - objective) * slices in the whole period``. ``consumed = bad / allowed`` and
  ``remaining = 1 - consumed`` (negative when overspent: exhausted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from coalmine.slo.spec import AlertRule, Slo, format_span

RuleStateName = Literal["firing", "pending", "ok", "no_data"]
SloStateName = Literal["page", "ticket", "no_data", "pending", "ok"]
CURRENT_WINDOW_S = 3600.0  # the burn rate time-to-exhaustion is projected from


@dataclass(frozen=True)
class Bucket:
    start: float  # epoch seconds, a multiple of the SLO's resolution
    good: float
    total: float


@dataclass(frozen=True)
class WindowStat:
    """Sums over one window. ``good``/``total`` include synthetic bad events (``missing``)."""

    window_s: float  # the length asked for
    start: float  # after clipping to the period
    end: float
    good: float
    total: float
    missing: int  # units without events counted as bad (policy ``bad``)
    clipped: bool  # the window would have reached before the period start
    allowed_error: float

    @property
    def bad(self) -> float:
        return self.total - self.good

    @property
    def error_ratio(self) -> float | None:
        return self.bad / self.total if self.total > 0 else None

    @property
    def burn_rate(self) -> float | None:
        ratio = self.error_ratio
        return None if ratio is None else ratio / self.allowed_error

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": format_span(self.window_s),
            "window_s": self.window_s,
            "start": self.start,
            "end": self.end,
            "good": self.good,
            "bad": self.bad,
            "total": self.total,
            "missing_units": self.missing,
            "clipped": self.clipped,
            "error_ratio": self.error_ratio,
            "burn_rate": self.burn_rate,
        }


@dataclass(frozen=True)
class RuleResult:
    rule: AlertRule
    threshold: float  # error ratio above which a window burns too fast: factor * (1 - objective)
    long: WindowStat
    short: WindowStat
    state: RuleStateName
    more_bad_to_fire: int | None  # extra bad events now that would fire it (None: cannot)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.rule.name,
            "severity": self.rule.severity,
            "factor": self.rule.factor,
            "for_s": self.rule.for_s,
            "threshold_error_ratio": self.threshold,
            "long": self.long.to_dict(),
            "short": self.short.to_dict(),
            "state": self.state,
            "more_bad_events_to_fire": self.more_bad_to_fire,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TrafficGuard:
    """How many bad events (among the expected traffic) fire a rule."""

    rule: str
    severity: str
    events_per_s: float
    expected_long: float
    expected_short: float
    bad_to_fire: int | None  # None: the rule cannot fire (threshold >= 100%)
    single_event_fires: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    method: str
    allowed: float  # bad events (or slices) the period allows
    spent: float  # bad events (or slices) so far
    consumed: float | None  # fraction of the budget spent; None without data
    remaining: float | None  # 1 - consumed, negative when overspent

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exhausted": self.exhausted}


@dataclass(frozen=True)
class CollectionFailure:
    """A source that could not be read at this evaluation: the result only knows the buckets
    stored before, so it is stale."""

    source: str  # prometheus | router | probe
    reason: str  # one line, without credentials

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SloResult:
    slo: str
    service: str
    objective: float
    sli_description: str
    now: float
    end: float  # the evaluation covers complete units up to here
    unit_s: float
    period_start: float
    period_end: float
    period: WindowStat  # the period so far
    sli: float | None
    budget: Budget
    windows: tuple[WindowStat, ...]  # every alert window, shortest first
    rules: tuple[RuleResult, ...]
    state: SloStateName
    current_window_s: float
    exhaustion_s: float | None  # at the burn rate over current_window_s; 0 when exhausted
    guards: tuple[TrafficGuard, ...]
    notes: tuple[str, ...] = field(default=())
    collection_failures: tuple[CollectionFailure, ...] = field(default=())

    @property
    def stale(self) -> bool:
        """New observations could not be collected: the numbers may miss recent events."""
        return bool(self.collection_failures)

    @property
    def no_data_rules(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.state == "no_data")

    @property
    def current_burn_rate(self) -> float | None:
        stat = next((w for w in self.windows if w.window_s == self.current_window_s), None)
        return None if stat is None else stat.burn_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": self.slo,
            "service": self.service,
            "objective": self.objective,
            "sli_description": self.sli_description,
            "now": self.now,
            "end": self.end,
            "unit_s": self.unit_s,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "period": self.period.to_dict(),
            "sli": self.sli,
            "budget": self.budget.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
            "rules": [r.to_dict() for r in self.rules],
            "state": self.state,
            "current_window": format_span(self.current_window_s),
            "current_burn_rate": self.current_burn_rate,
            "exhaustion_s": self.exhaustion_s,
            "guards": [g.to_dict() for g in self.guards],
            "notes": list(self.notes),
            "stale": self.stale,
            "collection_failures": [f.to_dict() for f in self.collection_failures],
            "no_data_rules": [r.rule.name for r in self.no_data_rules],
        }


# --------------------------------------------------------------------------- counting


def _index(t: float, unit: float) -> int:
    """The unit a time falls in (tolerant to float noise on boundaries)."""
    return math.floor(t / unit + 1e-9)


def _first_index(t: float, unit: float) -> int:
    """The first unit that starts at or after ``t``."""
    return math.ceil(t / unit - 1e-9)


class _Series:
    """Dense per-unit good/total over ``[first, last)`` with prefix sums."""

    def __init__(
        self, first: int, last: int, good: list[float], total: list[float], missing: list[int]
    ):
        self.first, self.last = first, last
        self._g = [0.0]
        self._t = [0.0]
        self._m = [0]
        for g, t, m in zip(good, total, missing, strict=True):
            self._g.append(self._g[-1] + g)
            self._t.append(self._t[-1] + t)
            self._m.append(self._m[-1] + m)

    def sums(self, lo: int, hi: int) -> tuple[float, float, int]:
        """Good, total and missing over units ``[lo, hi)`` (clipped to the series)."""
        a = min(max(lo, self.first), self.last) - self.first
        b = min(max(hi, self.first), self.last) - self.first
        if b <= a:
            return 0.0, 0.0, 0
        return self._g[b] - self._g[a], self._t[b] - self._t[a], self._m[b] - self._m[a]


def _series(
    slo: Slo,
    buckets: Iterable[Bucket],
    period_start: float,
    end: float,
    observed_from: float | None,
    notes: list[str],
) -> _Series:
    unit = slo.unit_s
    first, last = _first_index(period_start, unit), _index(end, unit)
    last = max(last, first)
    n = last - first
    raw_good = [0.0] * n
    raw_total = [0.0] * n
    bad_buckets = 0
    for b in buckets:
        if not (math.isfinite(b.good) and math.isfinite(b.total)) or b.good < 0 or b.total < 0:
            bad_buckets += 1
            continue
        if b.start < period_start or b.start >= end:
            continue
        i = _index(b.start, unit) - first
        if 0 <= i < n:
            raw_good[i] += min(b.good, b.total)
            raw_total[i] += b.total
    if bad_buckets:
        notes.append(f"{bad_buckets} bucket(s) with negative or non-finite counts were ignored")
    if slo.budgeting.method == "timeslices":
        threshold = slo.budgeting.good_ratio
        pairs = zip(raw_good, raw_total, strict=True)
        good = [1.0 if t > 0 and g / t >= threshold else 0.0 for g, t in pairs]
        total = [1.0 if t > 0 else 0.0 for t in raw_total]
    else:
        good, total = raw_good, raw_total
    missing = [0] * n
    if slo.missing_data == "bad":
        since = first if observed_from is None else max(first, _first_index(observed_from, unit))
        for i in range(max(since - first, 0), n):
            if total[i] == 0:
                total[i] = 1.0
                missing[i] = 1
        count = sum(missing)
        if count:
            notes.append(
                f"{count} {'slice' if slo.budgeting.method == 'timeslices' else 'bucket'}(s) "
                "without data counted as bad (missingData: bad)"
            )
    return _Series(first, last, good, total, missing)


def _window(
    series: _Series, slo: Slo, window_s: float, end_index: int, period_start: float
) -> WindowStat:
    unit = slo.unit_s
    k = max(1, round(window_s / unit))
    lo = end_index - k
    good, total, missing = series.sums(lo, end_index)
    end = end_index * unit
    return WindowStat(
        window_s=window_s,
        start=max(end - window_s, period_start),
        end=end,
        good=good,
        total=total,
        missing=missing,
        clipped=lo < series.first,
        allowed_error=slo.allowed_error,
    )


# --------------------------------------------------------------------------- rules


def _above(stat: WindowStat, threshold: float) -> bool:
    return stat.total > 0 and stat.bad > threshold * stat.total


def more_bad_to_fire(stat: WindowStat, threshold: float) -> int | None:
    """Extra bad events (each adding one to the total) that push this window above
    ``threshold``; 0 when it already is, None when it cannot be (threshold >= 1)."""
    if _above(stat, threshold):
        return 0
    if threshold >= 1:
        return None
    need = (threshold * stat.total - stat.bad) / (1 - threshold)
    return max(0, math.floor(need + 1e-9) + 1)


def _fmt_ratio(r: float | None) -> str:
    return "no data" if r is None else f"{r * 100:.3g}%"


def fmt_count(value: float) -> str:
    """Event counts: whole numbers as such (no 2.88e+06), fractions with two decimals."""
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


def fmt_burn(b: float | None) -> str:
    return "n/a" if b is None else f"{b:.3g}"


def _describe_window(stat: WindowStat) -> str:
    span = format_span(stat.window_s)
    if stat.total <= 0:
        return f"{span}: no events"
    clip = ", clipped to the period start" if stat.clipped else ""
    counts = f"{fmt_count(stat.bad)} bad of {fmt_count(stat.total)}"
    return (
        f"{span}: burn {fmt_burn(stat.burn_rate)} ({counts}, {_fmt_ratio(stat.error_ratio)}{clip})"
    )


def _rule(
    series: _Series, slo: Slo, rule: AlertRule, end_index: int, period_start: float
) -> RuleResult:
    threshold = rule.factor * slo.allowed_error
    long = _window(series, slo, rule.long_s, end_index, period_start)
    short = _window(series, slo, rule.short_s, end_index, period_start)
    limit = f"above {rule.factor:.4g} (error ratio {_fmt_ratio(threshold)})"
    windows = f"{_describe_window(long)}; {_describe_window(short)}"
    more_long = more_bad_to_fire(long, threshold)
    more_short = more_bad_to_fire(short, threshold)
    more = None if more_long is None or more_short is None else max(more_long, more_short)
    state: RuleStateName
    if long.total <= 0 or short.total <= 0:
        if slo.missing_data == "alert":
            state = "no_data"
            reason = f"{rule.name} reports no data: {windows} (missingData: alert)"
        else:
            state = "ok"
            reason = f"{rule.name} cannot fire without events: {windows}"
        return RuleResult(rule, threshold, long, short, state, more, reason)
    if _above(long, threshold) and _above(short, threshold):
        steps = round(rule.for_s / slo.unit_s)
        held = all(
            _above(_window(series, slo, rule.long_s, end_index - j, period_start), threshold)
            and _above(_window(series, slo, rule.short_s, end_index - j, period_start), threshold)
            for j in range(1, steps + 1)
        )
        if held:
            state, verb = "firing", "fires"
        else:
            state, verb = "pending", f"is pending (must hold for {format_span(rule.for_s)})"
        reason = f"{rule.name} ({rule.severity}) {verb}: both windows burn {limit}: {windows}"
    else:
        state = "ok"
        which = [format_span(s.window_s) for s in (long, short) if not _above(s, threshold)]
        extra = "" if more is None else f"; {more} more bad event(s) now would fire it"
        reason = (
            f"{rule.name} ({rule.severity}) does not fire: {' and '.join(which)} not {limit}: "
            f"{windows}{extra}"
        )
    return RuleResult(rule, threshold, long, short, state, more, reason)


# --------------------------------------------------------------------------- low traffic


def traffic_guard(slo: Slo, events_per_s: float) -> tuple[TrafficGuard, ...]:
    """For each rule: how many bad events among the expected traffic fire it.

    With ``T`` events expected in the long window, the long window fires above
    ``threshold * T`` bad events, so at least ``floor(threshold * T) + 1`` are needed (the short
    window then needs them close together). Timeslices count slices, whatever the traffic."""
    out = []
    rate = 1.0 / slo.budgeting.slice_s if slo.budgeting.method == "timeslices" else events_per_s
    what = "bad time slice" if slo.budgeting.method == "timeslices" else "failed event"
    advice = (
        "consider a lower objective, longer slices or a higher factor"
        if slo.budgeting.method == "timeslices"
        else "consider timeslices, a longer window or more traffic (synthetic probes)"
    )
    for rule in slo.alerting:
        threshold = rule.factor * slo.allowed_error
        t_long, t_short = rate * rule.long_s, rate * rule.short_s
        bad: int | None = None if threshold >= 1 else math.floor(threshold * t_long + 1e-9) + 1
        single = bad == 1
        if bad is None:
            message = (
                f"{rule.name} can never fire: its threshold {threshold * 100:.3g}% is not below "
                "100%; lower the factor"
            )
        elif single:
            message = (
                f"a single {what} would fire {rule.name} ({rule.severity}): about "
                f"{t_long:.3g} expected in {format_span(rule.long_s)}; {advice}"
            )
        else:
            message = (
                f"{rule.name} ({rule.severity}) fires after {bad} {what}s among about "
                f"{t_long:.3g} in {format_span(rule.long_s)}"
            )
        out.append(
            TrafficGuard(rule.name, rule.severity, rate, t_long, t_short, bad, single, message)
        )
    return tuple(out)


# --------------------------------------------------------------------------- evaluation


def _state(rules: Sequence[RuleResult]) -> SloStateName:
    firing = {r.rule.severity for r in rules if r.state == "firing"}
    if "page" in firing:
        return "page"
    if "ticket" in firing:
        return "ticket"
    if any(r.state == "no_data" for r in rules):
        return "no_data"
    if any(r.state == "pending" for r in rules):
        return "pending"
    return "ok"


def _budget(slo: Slo, period: WindowStat, period_start: float, period_end: float) -> Budget:
    if slo.budgeting.method == "timeslices":
        slices = (period_end - period_start) / slo.budgeting.slice_s
        allowed = slo.allowed_error * slices
    else:
        allowed = slo.allowed_error * period.total
    if period.total <= 0:
        return Budget(slo.budgeting.method, allowed, 0.0, None, None)
    consumed = period.bad / allowed
    return Budget(slo.budgeting.method, allowed, period.bad, consumed, 1.0 - consumed)


def evaluate(
    slo: Slo,
    buckets: Iterable[Bucket],
    now: float,
    *,
    observed_from: float | None = None,
    traffic_per_s: float | None = None,
    current_window_s: float = CURRENT_WINDOW_S,
) -> SloResult:
    """Everything ``slo status`` and ``slo explain`` show, at ``now``.

    ``observed_from``: when data for this SLO started (missing data before it is not counted as
    bad). ``traffic_per_s``: the expected traffic for the low-traffic guard (default: the SLO's
    ``traffic``, else what the period observed)."""
    notes: list[str] = []
    unit = slo.unit_s
    end_index = _index(now, unit)
    end = end_index * unit
    if slo.window.rolling_s is not None:
        period_start, period_end = end - slo.window.rolling_s, end
    else:
        period_start, period_end = slo.window.period(now)
    series = _series(slo, buckets, period_start, end, observed_from, notes)
    good, total, missing = series.sums(series.first, series.last)
    period = WindowStat(
        end - period_start, period_start, end, good, total, missing, False, slo.allowed_error
    )
    rules = tuple(_rule(series, slo, r, end_index, period_start) for r in slo.alerting)
    spans = sorted({current_window_s} | {w for r in slo.alerting for w in (r.long_s, r.short_s)})
    windows = tuple(_window(series, slo, w, end_index, period_start) for w in spans)
    budget = _budget(slo, period, period_start, period_end)
    current = next(w for w in windows if w.window_s == current_window_s)
    exhaustion = _exhaustion(budget, current.burn_rate, period_end - period_start)
    rate = traffic_per_s if traffic_per_s is not None else slo.traffic_per_s
    if rate is None and period.total > 0 and slo.budgeting.method == "occurrences":
        covered = max(end - max(period_start, observed_from or period_start), unit)
        rate = (period.total - period.missing) / covered
    guards = traffic_guard(slo, rate) if rate is not None else ()
    if period.total <= 0:
        notes.append("no events in the SLO period yet: budget and SLI unknown")
    return SloResult(
        slo=slo.name,
        service=slo.service,
        objective=slo.objective,
        sli_description=slo.sli.describe(),
        now=now,
        end=end,
        unit_s=unit,
        period_start=period_start,
        period_end=period_end,
        period=period,
        sli=None if period.total <= 0 else period.good / period.total,
        budget=budget,
        windows=windows,
        rules=rules,
        state=_state(rules),
        current_window_s=current_window_s,
        exhaustion_s=exhaustion,
        guards=guards,
        notes=tuple(notes),
    )


def _exhaustion(budget: Budget, burn: float | None, period_s: float) -> float | None:
    """Seconds until the budget is gone at burn rate ``burn`` (1 spends it in one period)."""
    if budget.remaining is None:
        return None
    if budget.remaining <= 0:
        return 0.0
    if burn is None or burn <= 0:
        return None
    return budget.remaining * period_s / burn

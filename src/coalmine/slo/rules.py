"""Prometheus recording and alerting rules for SLOs (``coalmine slo rules``).

The core is :class:`RuleInput`, a small self-contained description of one SLO as PromQL
templates, and :func:`render_rules`, which turns a list of them into a rule file that
``promtool check rules`` accepts. :func:`rule_input_from_slo` builds a RuleInput from the
spec's :class:`~coalmine.slo.spec.Slo`.

Choices (docs/slo.md, "Prometheus rules and Alertmanager", has the long form):

* Every window's error ratio is ``sum(bad over W) / sum(total over W)`` straight from the raw
  counters, never an average of shorter ratios: averaging 5-minute ratios over 30 days gives a
  quiet night's minute the weight of a busy afternoon's (the Sloth/Pyrra 30-day bias).
* Idle windows: the denominator is filtered with ``> 0``, so a window without events has no
  ratio at all (not NaN, not 0) and no alert can fire on it; a missing bad-events series
  (no error has ever happened) counts as 0 with ``or vector(0)``.
* Burn rate = error ratio / (1 - objective); budget remaining = 1 - burn rate over the whole
  SLO window; an alert fires when the long and the short window both burn above the factor.
* Alerts carry the table's rule name (label ``rule``) and both measured burn rates
  (annotations ``burn_rate_long``/``burn_rate_short``), which coalmine's receipts quote.
* Names are escaped for where they land: PromQL string literals in selectors, text that
  expands to itself in alert labels and annotations (both are Go templates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from coalmine.errors import SpecError
from coalmine.slo.spec import (
    BUDGET_SHARES,
    DAY,
    HOUR,
    WINDOW_PLACEHOLDER,
    ProbeSource,
    PrometheusSource,
    RouterSource,
    Slo,
    format_span,
    prom_duration,
)

Severity = Literal["page", "ticket"]
MissingData = Literal["bad", "ignore", "alert"]

BURN_ALERT = "CoalmineSLOBurnRate"
NO_DATA_ALERT = "CoalmineSLONoData"
ERROR_RATIO = "coalmine:slo_error_ratio:rate{}"
BURN_RATE = "coalmine:slo_burn_rate:rate{}"
BUDGET_REMAINING = "coalmine:slo_error_budget_remaining:ratio"
CURRENT_WINDOW_S = HOUR  # always recorded: `coalmine slo status` shows the 1h burn rate too

ROUTER_REQUESTS = "coalmine_router_requests_total"
ROUTER_DURATION = "coalmine_router_request_duration_seconds"


@dataclass(frozen=True)
class BurnRule:
    """One multi-window burn-rate alert: long AND short window burn faster than ``factor``."""

    severity: Severity
    long_s: float
    short_s: float
    factor: float
    for_s: float = 0.0
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.severity}-{format_span(self.long_s)}"


@dataclass(frozen=True)
class RuleInput:
    """One SLO as PromQL. ``total`` and exactly one of ``good``/``bad`` are templates holding
    ``{{window}}`` that return the events (as a rate or a count: the same kind for both) in the
    window ending at evaluation time; they are wrapped in ``sum()``, so any labels vanish."""

    slo: str
    service: str
    objective: float  # percent, strictly between 0 and 100
    total: str
    window_s: float  # the SLO window (30d, 28d, 7d)
    rules: tuple[BurnRule, ...]
    good: str | None = None
    bad: str | None = None
    missing_data: MissingData = "ignore"
    runbook_url: str | None = None
    notes: tuple[str, ...] = ()  # approximations the rules make; written as file comments
    where: dict[str, Any] = field(default_factory=dict)  # file/line for errors

    @property
    def allowed_error(self) -> float:
        return 1.0 - self.objective / 100.0

    def windows(self) -> list[float]:
        """Every window a ratio is recorded for, shortest first."""
        spans = {self.window_s, CURRENT_WINDOW_S} | {
            w for r in self.rules for w in (r.long_s, r.short_s)
        }
        return sorted(s for s in spans if s <= self.window_s)


# --------------------------------------------------------------------------- tables


def google_table(window_s: float) -> tuple[BurnRule, ...]:
    """The SRE workbook's table scaled to an SLO window: each rule spends the same share of the
    budget in its long window (2% in 1h, 5% in 6h, 10% in 1d, 10% in 3d), so the factor is
    ``share * window / long``: 14.4/6/3/1 for 30d, 13.44/5.6/2.8/0.933 for 28d."""
    return tuple(
        BurnRule(sev, long_s, short_s, share * window_s / long_s, name=name)
        for name, sev, long_s, short_s, share in BUDGET_SHARES
    )


def exhaustion_s(window_s: float, factor: float) -> float:
    """Seconds a full budget lasts at burn rate ``factor`` (1 spends it in one window)."""
    return window_s / factor


def human_span(seconds: float) -> str:
    """``180000`` -> ``~2.1 days``; ``7200`` -> ``~2 hours``; for annotations."""
    if seconds >= 2 * DAY:
        return f"~{seconds / DAY:.2g} days" if seconds < 10 * DAY else f"~{seconds / DAY:.0f} days"
    if seconds >= 2 * HOUR:
        return f"~{seconds / HOUR:.0f} hours"
    return f"~{max(seconds / 60, 1):.0f} minutes"


def factor_text(factor: float) -> str:
    """The factor as a label value: ``14.4``, ``13.44``, ``0.9333``."""
    return f"{factor:.4g}"


def _literal(value: float) -> str:
    """A float as a PromQL literal, precise enough to agree with the engine at the boundary."""
    return f"{value:.12g}"


# --------------------------------------------------------------------------- validation


def _fail(inp: RuleInput, fld: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError(
        f"SLO {inp.slo!r}: {message}",
        file=inp.where.get("file"),
        line=inp.where.get("line"),
        field=fld,
        hint=hint,
    )


def validate(inp: RuleInput) -> None:
    """Raise SpecError for an input that would give a wrong or rejected rule file."""
    if not inp.slo.strip() or not inp.service.strip():
        raise _fail(inp, "name", "the SLO and its service need non-empty names")
    if not (0.0 < inp.objective < 100.0) or not math.isfinite(inp.objective):
        raise _fail(inp, "objective", f"objective {inp.objective!r} is not between 0 and 100")
    if (inp.good is None) == (inp.bad is None):
        raise _fail(inp, "sli", "give exactly one of the good and the bad events query")
    for name, template in (("total", inp.total), ("good", inp.good), ("bad", inp.bad)):
        if template is not None and WINDOW_PLACEHOLDER not in template:
            raise _fail(
                inp,
                f"sli.{name}",
                f"the {name} events query has no {WINDOW_PLACEHOLDER}",
                "write it as e.g. sum(rate(http_requests_total[{{window}}]))",
            )
    if inp.window_s <= 0:
        raise _fail(inp, "window", "the SLO window must be longer than zero")
    if not inp.rules:
        raise _fail(inp, "alerting", "no burn-rate rules", "use google_table(window)")
    for i, rule in enumerate(inp.rules):
        fld = f"alerting[{i}]"
        if rule.severity not in ("page", "ticket"):
            raise _fail(inp, f"{fld}.severity", f"unknown severity {rule.severity!r}")
        if not (rule.factor > 0 and math.isfinite(rule.factor)):
            raise _fail(inp, f"{fld}.factor", f"burn-rate factor {rule.factor!r} is not positive")
        if not (0 < rule.short_s < rule.long_s):
            raise _fail(inp, fld, "the short window must be shorter than the long one")
        if rule.long_s > inp.window_s:
            raise _fail(
                inp,
                f"{fld}.long",
                f"window {format_span(rule.long_s)} is longer than the SLO window "
                f"{format_span(inp.window_s)}",
                "alert windows must fit in the SLO window",
            )
        for span in (rule.long_s, rule.short_s):
            if span % 1:
                raise _fail(inp, fld, f"window {span!r}s is not a whole number of seconds")


# --------------------------------------------------------------------------- rendering


def _q(value: str) -> str:
    """A PromQL string literal (double-quoted, escaped)."""
    return json.dumps(value, ensure_ascii=False)


def _selector(name: str, inp: RuleInput) -> str:
    return f"{name}{{slo={_q(inp.slo)}, service={_q(inp.service)}}}"


def _text(value: str) -> str:
    """Literal text in a Prometheus template (alert labels and annotations are Go templates):
    every ``{`` becomes an action printing it, so no name can open or join an action."""
    return value.replace("{", '{{ "{" }}')


def _short_rate(span: float) -> str:
    """A template printing the recorded burn rate over ``span`` of the alert's own SLO; the
    names come from ``$labels``, never from text pasted into the template."""
    record = BURN_RATE.format(prom_duration(span))
    return (
        f'{{{{ with printf "{record}{{slo=%q, service=%q}}" $labels.slo $labels.service '
        '| query }}{{ . | first | value | printf "%.4g" }}{{ end }}'
    )


def _window_expr(template: str, span: float) -> str:
    return template.replace(WINDOW_PLACEHOLDER, prom_duration(span))


def error_ratio_expr(inp: RuleInput, span: float) -> str:
    """``sum(bad) / sum(total)`` over one window: absent when the window has no events,
    clamped to [0, 1] against scrape skew between the two counters."""
    total = f"(sum({_window_expr(inp.total, span)}) > 0)"
    if inp.bad is not None:
        ratio = f"(sum({_window_expr(inp.bad, span)}) or vector(0)) / {total}"
    else:
        assert inp.good is not None
        ratio = f"1 - (sum({_window_expr(inp.good, span)}) or vector(0)) / {total}"
    return f"clamp({ratio}, 0, 1)"


def _annotations(inp: RuleInput, rule: BurnRule) -> dict[str, str]:
    long_, short = format_span(rule.long_s), format_span(rule.short_s)
    slo, service = _text(inp.slo), _text(inp.service)
    share = rule.factor * rule.long_s / inp.window_s
    lasts = exhaustion_s(inp.window_s, rule.factor)
    summary = (
        f"{slo} ({service}) burns its error budget over {factor_text(rule.factor)}x "
        f"the sustainable rate over {long_} and {short}"
    )
    description = (
        f'Burn rate over {long_}: {{{{ $value | printf "%.3g" }}}} (objective '
        f"{inp.objective:g}%, alert above {factor_text(rule.factor)}). At "
        f"{factor_text(rule.factor)}x a full {format_span(inp.window_s)} error budget is gone in "
        f"{human_span(lasts)} ({format_span(lasts)}); {share:.0%} of it is spent every {long_}."
    )
    runbook = f"coalmine slo explain {slo} shows the numbers behind this alert. " + (
        f"A rollout of {service} in progress is rolled back by coalmine; otherwise "
        "find the change or dependency that started the errors "
        "(coalmine rollout history, coalmine rollout undo)."
        if rule.severity == "page"
        else "Plan the fix before the budget runs out; releases slow down as it shrinks."
    )
    out = {
        "summary": summary,
        "description": description,
        "runbook": runbook,
        # the alert's value is the long window's burn rate (the left side of its `and`)
        "burn_rate_long": '{{ $value | printf "%.4g" }}',
        "burn_rate_short": _short_rate(rule.short_s),
    }
    if inp.runbook_url:
        out["runbook_url"] = _text(inp.runbook_url)
    return out


def _template_labels(labels: dict[str, str]) -> dict[str, str]:
    """An alert's labels: templates too, expanding to exactly ``labels``."""
    return {name: _text(value) for name, value in labels.items()}


def _group(inp: RuleInput) -> dict[str, Any]:
    labels = {"slo": inp.slo, "service": inp.service}
    allowed = inp.allowed_error
    rules: list[dict[str, Any]] = []
    for span in inp.windows():
        suffix = prom_duration(span)
        rules.append(
            {
                "record": ERROR_RATIO.format(suffix),
                "expr": error_ratio_expr(inp, span),
                "labels": dict(labels),
            }
        )
    for span in inp.windows():
        suffix = prom_duration(span)
        rules.append(
            {
                "record": BURN_RATE.format(suffix),
                "expr": f"{_selector(ERROR_RATIO.format(suffix), inp)} / {_literal(allowed)}",
                "labels": dict(labels),
            }
        )
    period = prom_duration(inp.window_s)
    rules.append(
        {
            "record": BUDGET_REMAINING,
            "expr": f"1 - {_selector(BURN_RATE.format(period), inp)}",
            "labels": dict(labels),
        }
    )
    for rule in inp.rules:
        long_, short = prom_duration(rule.long_s), prom_duration(rule.short_s)
        factor = _literal(rule.factor)
        alert: dict[str, Any] = {
            "alert": BURN_ALERT,
            "expr": (
                f"{_selector(BURN_RATE.format(long_), inp)} > {factor} and "
                f"{_selector(BURN_RATE.format(short), inp)} > {factor}"
            ),
        }
        if rule.for_s:
            alert["for"] = prom_duration(rule.for_s)
        alert["labels"] = _template_labels(
            {
                "severity": rule.severity,
                **labels,
                "rule": rule.label,
                "long_window": long_,
                "short_window": short,
                "burn_rate_factor": factor_text(rule.factor),
                "time_to_exhaustion": prom_duration(exhaustion_s(inp.window_s, rule.factor)),
            }
        )
        alert["annotations"] = _annotations(inp, rule)
        rules.append(alert)
    if inp.missing_data == "alert":
        shortest = min(r.short_s for r in inp.rules)
        rules.append(
            {
                "alert": NO_DATA_ALERT,
                "expr": f"absent({_selector(ERROR_RATIO.format(prom_duration(shortest)), inp)})",
                "for": prom_duration(shortest),
                "labels": _template_labels({"severity": "ticket", **labels}),
                "annotations": {
                    "summary": f"{_text(inp.slo)} ({_text(inp.service)}) has had no events for "
                    f"{format_span(2 * shortest)} (missingData: alert)",
                    "runbook": "Check that the service and the metrics scrape are up.",
                },
            }
        )
    return {"name": f"coalmine-slo-{inp.slo}", "rules": rules}


def render_rules(inputs: Sequence[RuleInput]) -> str:
    """The rule file (YAML, ``groups:``): one group per SLO, recording rules first so the
    alerts of the same evaluation see fresh values."""
    seen: set[str] = set()
    notes: list[str] = []
    for inp in inputs:
        validate(inp)
        if inp.slo in seen:
            raise _fail(inp, "name", "two SLOs have this name", "SLO names must be unique")
        seen.add(inp.slo)
        notes.extend(f"{inp.slo}: {note}" for note in inp.notes)
    doc = {"groups": [_group(inp) for inp in inputs]}
    header = [
        "# Generated by `coalmine slo rules`; regenerate instead of editing.",
        "# Error ratios are sum(bad)/sum(total) over each window, never averaged ratios.",
        *(f"# NOTE {n}" for n in notes),
    ]
    body = yaml.safe_dump(doc, sort_keys=False, width=10_000, allow_unicode=True)
    return "\n".join(header) + "\n" + body


# --------------------------------------------------------------------------- from the spec


def _router_le(threshold_ms: float, buckets: Iterable[float]) -> str | None:
    """The router histogram's ``le`` label for a threshold, when it is a bucket bound."""
    from prometheus_client.utils import floatToGoString

    seconds = threshold_ms / 1000.0
    for bound in buckets:
        if math.isclose(bound, seconds, rel_tol=1e-9):
            return str(floatToGoString(bound))
    return None


def rule_input_from_slo(slo: Slo) -> RuleInput:
    """Map a loaded SLO onto PromQL; SpecError when Prometheus cannot compute it."""
    where: dict[str, Any] = (
        {"file": slo.location.file, "line": slo.location.line} if slo.location else {}
    )
    notes: list[str] = []

    def fail(fld: str, message: str, hint: str) -> SpecError:
        return SpecError(
            f"SLO {slo.name!r}: {message}",
            file=where.get("file"),
            line=where.get("line"),
            field=fld,
            hint=hint,
        )

    if slo.budgeting.method != "occurrences":
        raise fail(
            "budgeting",
            "time-slice budgeting has no Prometheus rule equivalent",
            "coalmine evaluates it itself (coalmine slo status); use occurrences for rules",
        )
    source = slo.sli.source
    good: str | None = None
    bad: str | None = None
    if isinstance(source, RouterSource):
        svc = f"service={_q(slo.service)}"
        total = f"rate({ROUTER_REQUESTS}{{{svc}}}[{WINDOW_PLACEHOLDER}])"
        errors = f'rate({ROUTER_REQUESTS}{{{svc}, code_class="5xx"}}[{WINDOW_PLACEHOLDER}])'
        if slo.sli.type == "availability":
            bad = errors
        else:
            from coalmine.traffic.proxy import LATENCY_BUCKETS

            assert slo.sli.threshold_ms is not None
            le = _router_le(slo.sli.threshold_ms, LATENCY_BUCKETS)
            if le is None:
                raise fail(
                    "sli.threshold",
                    f"{slo.sli.threshold_ms:g}ms is not a bound of the router's latency histogram",
                    "use one of " + ", ".join(f"{b * 1000:g}ms" for b in LATENCY_BUCKETS),
                )
            total = f"rate({ROUTER_DURATION}_count{{{svc}}}[{WINDOW_PLACEHOLDER}])"
            fast = f'rate({ROUTER_DURATION}_bucket{{{svc}, le="{le}"}}[{WINDOW_PLACEHOLDER}])'
            good = f"sum({fast}) - (sum({errors}) or vector(0))"
            notes.append(
                "the router histogram has no status label: every 5xx is counted as slow, so a "
                "slow 5xx counts twice (the ratio is clamped at 100%; an upper bound)"
            )
    elif isinstance(source, PrometheusSource):
        total, good, bad = source.total, source.good, source.bad
    elif isinstance(source, ProbeSource):
        raise fail(
            "sli.source",
            "probe results are kept by coalmine, Prometheus has no series for them",
            "leave this SLO to coalmine's engine, or use source: prometheus with "
            "blackbox_exporter's probe_success",
        )
    else:  # pragma: no cover - the loader only builds the three sources
        raise fail("sli.source", f"unknown SLI source {source!r}", "router, probe or prometheus")
    window_s = slo.window.nominal_s
    if slo.window.rolling_s is None:
        notes.append(
            f"the calendar {slo.window.calendar} ({slo.window.timezone}) is approximated by a "
            f"rolling {format_span(window_s)} window"
        )
    if slo.missing_data == "bad":
        notes.append("missing data cannot count as bad in PromQL: idle windows have no ratio")
    rules = tuple(
        BurnRule(r.severity, r.long_s, r.short_s, r.factor, r.for_s, r.name) for r in slo.alerting
    ) or google_table(window_s)
    return RuleInput(
        slo=slo.name,
        service=slo.service,
        objective=slo.objective,
        total=total,
        good=good,
        bad=bad,
        window_s=window_s,
        rules=rules,
        missing_data=slo.missing_data,
        notes=tuple(notes),
        where=where,
    )

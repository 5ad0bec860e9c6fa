"""Import OpenSLO v1 (``apiVersion: openslo/v1``): the subset that maps onto coalmine's SLOs.

Kinds: ``SLO`` (with an inline ``indicator`` or an ``indicatorRef``), ``SLI``, ``AlertPolicy``
(inline or referenced ``AlertCondition``\\s), ``AlertCondition``, ``AlertNotificationTarget``,
``DataSource`` (a Prometheus address) and ``Service`` (accepted, nothing to map).

What maps: a ``ratioMetric`` of counters (``good`` or ``bad``, with ``total``) whose metric
source is Prometheus (``spec.query``); ``budgetingMethod`` Occurrences or Timeslices (with
``timeSliceTarget`` and ``timeSliceWindow``); a rolling ``timeWindow`` or a calendar month
(``1M``) starting at midnight on the 1st; one objective with ``target`` (0..1) or
``targetPercent``; ``burnrate`` alert conditions, whose ``lookbackWindow`` is the long window
(the short window is a twelfth of it, as in the Google SRE workbook) and ``alertAfter`` the time
the condition must hold; ``alertWhenNoData`` (missing data: alert). Anything else is an error
that names the field: nothing is silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coalmine.slo.loader import (
    LONGEST,
    MAX_UNITS,
    _multiple,
    _name,
    objective_percent,
    query_template,
    service_name,
    span,
    timezone,
)
from coalmine.slo.spec import (
    DAY,
    AlertRule,
    Budgeting,
    Location,
    PrometheusSource,
    Sli,
    Slo,
    Window,
    default_alerting,
    format_span,
)
from coalmine.spec.yamlpos import Cursor, closest

API_VERSION = "openslo/v1"
KINDS = (
    "SLO",
    "SLI",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
    "DataSource",
    "Service",
)
META_FIELDS = ("name", "displayName", "labels", "annotations")
SHORT_DIVISOR = 12  # short window = long / 12 (1h/5m, 6h/30m, 1d/2h, 3d/6h)

Finish = Callable[[Slo, Cursor, Cursor | None, str], Slo]


@dataclass
class _Objects:
    by_kind: dict[str, dict[str, Cursor]]

    def ref(self, kind: str, cur: Cursor) -> Cursor:
        name = cur.nonempty_string()
        found = self.by_kind[kind].get(name)
        if found is None:
            guess = closest(name, self.by_kind[kind])
            cur.fail(
                f"no {kind} named '{name}' in the files",
                f"did you mean '{guess}'?" if guess else f"define the {kind} or inline it",
            )
        return found


def import_objects(items: Sequence[Cursor], finish: Finish) -> list[Slo]:
    """Every OpenSLO SLO among ``items`` (each an object with ``apiVersion: openslo/v1``)."""
    objects = _Objects({k: {} for k in KINDS})
    for cur in items:
        cur.check_fields(("apiVersion", "kind", "metadata", "spec"))
        kind_cur = cur.require("kind", "SLO, SLI, AlertPolicy, ...")
        kind = kind_cur.string()
        if kind not in KINDS:
            guess = closest(kind, KINDS)
            kind_cur.fail(
                f"unknown or unsupported OpenSLO kind {kind!r}",
                f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(KINDS),
            )
        name = _metadata_name(cur)
        if name in objects.by_kind[kind]:
            cur.require("metadata").fail(f"duplicate {kind} '{name}'")
        objects.by_kind[kind][name] = cur
    return [_slo(cur, objects, finish) for cur in objects.by_kind["SLO"].values()]


def _metadata_name(cur: Cursor) -> str:
    meta = cur.require("metadata")
    meta.check_fields(META_FIELDS)
    return _name(meta.require("name"))


def _unmappable(cur: Cursor, why: str) -> None:
    cur.fail(f"cannot import {cur.key or cur.path}: {why}", "remove it or express it in slos.yaml")


# --------------------------------------------------------------------------- SLO


def _slo(cur: Cursor, objects: _Objects, finish: Finish) -> Slo:
    name = _metadata_name(cur)
    spec = cur.require("spec")
    spec.check_fields(
        (
            "description",
            "service",
            "indicator",
            "indicatorRef",
            "timeWindow",
            "budgetingMethod",
            "objectives",
            "alertPolicies",
        )
    )
    service = service_name(spec.require("service"))
    description = spec.get("description")
    indicator, ind_ref = spec.get("indicator"), spec.get("indicatorRef")
    if (indicator is None) == (ind_ref is None):
        spec.fail("give exactly one of 'indicator' and 'indicatorRef'")
    if indicator is not None:
        indicator.check_fields(("metadata", "spec"))
        sli_spec = indicator.require("spec")
    else:
        assert ind_ref is not None
        sli_spec = objects.ref("SLI", ind_ref).require("spec")
    source = _sli(sli_spec, objects)
    window_cur = spec.require("timeWindow", "[{duration: 30d, isRolling: true}]")
    window = _window(window_cur)
    method_cur = spec.require("budgetingMethod", "Occurrences or Timeslices")
    method = method_cur.string()
    if method not in ("Occurrences", "Timeslices"):
        _unmappable(method_cur, f"{method!r} (coalmine maps Occurrences and Timeslices)")
    objectives = spec.require("objectives").sequence()
    if len(objectives) != 1:
        spec.require("objectives").fail(
            f"coalmine imports exactly one objective per SLO, found {len(objectives)}",
            "split the objectives into SLOs of their own",
        )
    objective, budgeting = _objective(objectives[0], method)
    rules, missing, conditions = _alerting(spec.get("alertPolicies"), objects)
    slo = Slo(
        name=name,
        service=service,
        objective=objective,
        sli=Sli("availability", source),
        window=window,
        budgeting=budgeting,
        missing_data=missing,  # type: ignore[arg-type]
        alerting=rules or default_alerting(window.nominal_s),
        description="" if description is None else description.string(),
        location=Location(cur.file, cur.line),
        origin="openslo",
    )
    _check_conditions(slo, conditions)
    hint = "lengthen the timeWindow, or add alertPolicies with shorter lookbackWindows"
    return finish(slo, window_cur, None, hint)


def _objective(cur: Cursor, method: str) -> tuple[float, Budgeting]:
    cur.check_fields(
        (
            "displayName",
            "op",
            "value",
            "target",
            "targetPercent",
            "timeSliceTarget",
            "timeSliceWindow",
            "indicator",
            "indicatorRef",
            "compositeWeight",
        )
    )
    for key in ("op", "value", "indicator", "indicatorRef", "compositeWeight"):
        if (extra := cur.get(key)) is not None:
            _unmappable(extra, "coalmine maps ratio objectives of the SLO's own indicator")
    target, percent = cur.get("target"), cur.get("targetPercent")
    if (target is None) == (percent is None):
        cur.fail("give exactly one of 'target' and 'targetPercent'")
    if target is not None:
        ratio = target.number("target is a ratio such as 0.999")
        if not 0 < ratio < 1:
            target.fail(f"target must be strictly between 0 and 1, got {ratio:g}", "e.g. 0.999")
        objective = round(ratio * 100, 10)
    else:
        assert percent is not None
        objective = objective_percent(percent, "targetPercent is a percent number such as 99.9")
    slice_target, slice_window = cur.get("timeSliceTarget"), cur.get("timeSliceWindow")
    if method == "Occurrences":
        for extra in (slice_target, slice_window):
            if extra is not None:
                extra.fail(f"{extra.key} is for budgetingMethod: Timeslices")
        return objective, Budgeting()
    if slice_target is None or slice_window is None:
        cur.fail("Timeslices need timeSliceTarget and timeSliceWindow", "e.g. 0.95 and 1m")
    good_ratio = slice_target.number()
    if not 0 < good_ratio <= 1:
        slice_target.fail(f"timeSliceTarget must be in (0, 1], got {good_ratio:g}")
    if isinstance(slice_window.value, int | float) and not isinstance(slice_window.value, bool):
        slice_s = slice_window.number("e.g. 1m") * 60.0  # OpenSLO: a bare number is minutes
        if not 0 < slice_s <= LONGEST:
            slice_window.fail(f"must be above 0 and at most {format_span(LONGEST)}", "e.g. 1m")
    else:
        slice_s = span(slice_window, "e.g. 1m")
    if not _multiple(slice_s, 60.0):
        slice_window.fail(f"the slice {format_span(slice_s)} is not a whole number of minutes")
    return objective, Budgeting("timeslices", slice_s, good_ratio)


def _window(cur: Cursor) -> Window:
    items = cur.sequence()
    if len(items) != 1:
        cur.fail(f"timeWindow takes exactly one item, found {len(items)}")
    item = items[0]
    item.check_fields(("duration", "isRolling", "calendar"))
    duration = item.require("duration", "e.g. 30d or 1M")
    rolling_cur, calendar = item.get("isRolling"), item.get("calendar")
    rolling = rolling_cur.boolean() if rolling_cur is not None else calendar is None
    if rolling:
        if calendar is not None:
            calendar.fail("a rolling window has no calendar", "set isRolling: false")
        text = str(duration.value)
        if re.fullmatch(r"\d+[MQY]", text):
            _unmappable(duration, f"a rolling {text} has no fixed length; use e.g. 30d or 28d")
        return Window(rolling_s=span(duration, "e.g. 30d, 28d or 7d"))
    if calendar is None:
        item.fail("a calendar window needs 'calendar'", "calendar: {startTime, timeZone}")
    if duration.value != "1M":
        _unmappable(duration, f"calendar {duration.value!r} (coalmine maps calendar months, 1M)")
    calendar.check_fields(("startTime", "timeZone"))
    start = calendar.get("startTime")
    if start is not None:
        text = str(start.value).strip()
        if not re.fullmatch(r"\d{4}-\d{2}-01([ T]00:00(:00)?)?", text):
            _unmappable(start, f"{text!r}: coalmine's months start at midnight on the 1st")
    zone = calendar.get("timeZone")
    return Window(calendar="month", timezone="UTC" if zone is None else timezone(zone))


# --------------------------------------------------------------------------- SLI


def _sli(spec: Cursor, objects: _Objects) -> PrometheusSource:
    spec.check_fields(("description", "ratioMetric", "thresholdMetric"))
    if (threshold := spec.get("thresholdMetric")) is not None:
        _unmappable(threshold, "coalmine SLIs count good and total events (use ratioMetric)")
    ratio = spec.require("ratioMetric", "good (or bad) and total event counters")
    ratio.check_fields(("counter", "good", "bad", "total", "rawType", "raw"))
    for key in ("raw", "rawType"):
        if (extra := ratio.get(key)) is not None:
            _unmappable(extra, "precomputed ratios cannot be summed; give good and total")
    counter = ratio.get("counter")
    if counter is not None and not counter.boolean():
        _unmappable(counter, "gauges are not event counts; coalmine needs counters")
    good, bad = ratio.get("good"), ratio.get("bad")
    if (good is None) == (bad is None):
        ratio.fail("give exactly one of 'good' and 'bad'")
    total_q, address = _metric(ratio.require("total"), objects)
    num_q, num_address = _metric(good or bad, objects)  # type: ignore[arg-type]
    if num_address != address:
        (good or bad or ratio).fail("good/bad and total must come from the same Prometheus")
    return PrometheusSource(
        address=address,
        total=total_q,
        good=num_q if good is not None else None,
        bad=num_q if bad is not None else None,
    )


def _metric(cur: Cursor, objects: _Objects) -> tuple[str, str]:
    """The query template and the Prometheus address of one ``{metricSource: ...}``."""
    cur.check_fields(("metricSource",))
    source = cur.require("metricSource")
    source.check_fields(("metricSourceRef", "type", "spec"))
    address: str | None = None
    kind = source.get("type")
    ref = source.get("metricSourceRef")
    if ref is not None:
        data = objects.ref("DataSource", ref).require("spec")
        data.check_fields(("description", "type", "connectionDetails"))
        kind = kind or data.get("type")
        details = data.get("connectionDetails")
        if details is not None:
            details.check_fields(("url", "address"))
            found = details.get("url") or details.get("address")
            address = None if found is None else _address(found)
    if kind is None:
        source.fail("missing 'type' (or a metricSourceRef to a DataSource with one)")
    if kind.string().lower() != "prometheus":
        _unmappable(kind, f"metric source type {kind.value!r} (coalmine reads Prometheus)")
    spec = source.require("spec", "{query: ...}")
    spec.check_fields(("query", "url", "address"))
    found = spec.get("url") or spec.get("address")
    if found is not None:
        address = _address(found)
    if address is None:
        source.fail(
            "no Prometheus address",
            "add metricSourceRef to a DataSource with connectionDetails.url, or spec.url",
        )
    return query_template(spec.require("query")), address


def _address(cur: Cursor) -> str:
    from coalmine.errors import SpecError
    from coalmine.metrics.prometheus import check_url

    try:
        return check_url(cur.value, cur.key, "http://127.0.0.1:9090")
    except SpecError as err:
        cur.fail(err.message, err.hint)


# --------------------------------------------------------------------------- alerting


def _alerting(
    cur: Cursor | None, objects: _Objects
) -> tuple[tuple[AlertRule, ...], str, list[Cursor]]:
    """Rules, the missing-data policy, and the AlertCondition of each rule (to report at)."""
    if cur is None:
        return (), "ignore", []
    rules: list[AlertRule] = []
    conditions: list[Cursor] = []
    no_data = False
    for item in cur.sequence():
        if isinstance(item.value, str):
            policy = objects.ref("AlertPolicy", item)
        elif isinstance(item.value, dict) and "alertPolicyRef" in item.value:
            item.check_fields(("alertPolicyRef",))
            policy = objects.ref("AlertPolicy", item.require("alertPolicyRef"))
        else:
            item.check_fields(("kind", "metadata", "spec"))
            kind = item.require("kind").string()
            if kind != "AlertPolicy":
                item.require("kind").fail(f"expected kind AlertPolicy, got {kind!r}")
            policy = item
        new, policy_conditions, policy_no_data = _policy(policy, objects)
        rules.extend(new)
        conditions.extend(policy_conditions)
        no_data = no_data or policy_no_data
    first: dict[str, str] = {}
    for rule, condition in zip(rules, conditions, strict=True):
        name_cur = condition.require("metadata").require("name")
        here = f"{name_cur.file}:{name_cur.line}"
        if rule.name in first:
            name_cur.fail(
                f"the SLO's alert policies use AlertCondition '{rule.name}' twice",
                "reference each condition once"
                if first[rule.name] == here
                else f"the other one is at {first[rule.name]}; rename one",
            )
        first[rule.name] = here
    return tuple(rules), "alert" if no_data else "ignore", conditions


def _policy(cur: Cursor, objects: _Objects) -> tuple[list[AlertRule], list[Cursor], bool]:
    spec = cur.require("spec")
    spec.check_fields(
        (
            "description",
            "alertWhenNoData",
            "alertWhenResolved",
            "alertWhenBreaching",
            "conditions",
            "notificationTargets",
        )
    )
    breaching = spec.get("alertWhenBreaching")
    if breaching is not None and not breaching.boolean():
        _unmappable(breaching, "coalmine's burn-rate rules alert when they breach")
    resolved = spec.get("alertWhenResolved")
    if resolved is not None and resolved.boolean():
        _unmappable(
            resolved,
            "resolved notifications are the receiver's send_resolved in Alertmanager",
        )
    no_data_cur = spec.get("alertWhenNoData")
    no_data = no_data_cur is not None and no_data_cur.boolean()
    receivers = []
    for target in spec.require("notificationTargets").sequence():
        if isinstance(target.value, dict) and "targetRef" in target.value:
            target.check_fields(("targetRef",))
            receivers.append(objects.ref("AlertNotificationTarget", target.require("targetRef")))
        else:
            target.check_fields(("kind", "metadata", "spec"))
            receivers.append(target)
    names = tuple(_metadata_name(r) for r in receivers)
    rules, conditions = [], []
    for item in spec.require("conditions").sequence():
        if isinstance(item.value, dict) and "conditionRef" in item.value:
            item.check_fields(("conditionRef",))
            condition = objects.ref("AlertCondition", item.require("conditionRef"))
        else:
            item.check_fields(("kind", "metadata", "spec"))
            condition = item
        rules.append(_condition(condition, names))
        conditions.append(condition)
    return rules, conditions, no_data


def _condition(cur: Cursor, receivers: tuple[str, ...]) -> AlertRule:
    name = _metadata_name(cur)
    spec = cur.require("spec")
    spec.check_fields(("description", "severity", "condition"))
    severity_cur = spec.require("severity", "page or ticket")
    severity = severity_cur.string()
    if severity not in ("page", "ticket"):
        _unmappable(severity_cur, f"severity {severity!r} (coalmine routes page and ticket)")
    cond = spec.require("condition")
    cond.check_fields(("kind", "op", "threshold", "lookbackWindow", "alertAfter"))
    kind = cond.get("kind")
    if kind is not None and kind.value != "burnrate":
        _unmappable(kind, f"condition kind {kind.value!r} (coalmine maps burnrate)")
    op = cond.get("op")
    if op is not None and op.value not in ("gt", "gte"):
        _unmappable(op, f"op {op.value!r}: a burn-rate alert fires above its threshold")
    factor_cur = cond.require("threshold", "the burn rate, e.g. 14.4")
    factor = factor_cur.number()
    if factor <= 0:
        factor_cur.fail(f"the threshold must be above 0, got {factor:g}")
    long_s = span(cond.require("lookbackWindow", "e.g. 1h"))
    after = cond.get("alertAfter")
    for_s = 0.0 if after is None else span_or_zero(after)
    return AlertRule(
        name=name,
        severity=severity,  # type: ignore[arg-type]
        long_s=long_s,
        short_s=long_s / SHORT_DIVISOR,
        factor=factor,
        for_s=for_s,
        receivers=receivers,
    )


def span_or_zero(cur: Cursor) -> float:
    return span(cur, "e.g. 5m", zero=True)


def _check_conditions(slo: Slo, conditions: Sequence[Cursor]) -> None:
    """Each AlertCondition fits this SLO: its lookbackWindow and the short window (a twelfth of
    it) are whole counting units, and it fits in the timeWindow. Problems are reported at the
    condition, which several SLOs may share, so the message names the SLO."""
    if not conditions:  # the default table
        return
    unit = slo.unit_s
    what = "the timeSliceWindow" if slo.budgeting.method == "timeslices" else "coalmine's buckets"
    limit = slo.window.rolling_s or 28 * DAY
    within = (
        f"the timeWindow {format_span(limit)}"
        if slo.window.rolling_s is not None
        else "the shortest calendar month (28d)"
    )
    for rule, doc in zip(slo.alerting, conditions, strict=True):
        cond = doc.require("spec").require("condition")
        lookback = cond.require("lookbackWindow")
        where = f"AlertCondition '{rule.name}' (SLO '{slo.name}')"
        if not _multiple(rule.short_s, unit):
            lookback.fail(
                f"{where}: the short window, lookbackWindow / {SHORT_DIVISOR} = "
                f"{format_span(rule.short_s)}, is not a whole number of {format_span(unit)} "
                f"({what})",
                f"use a lookbackWindow that is a multiple of {format_span(unit * SHORT_DIVISOR)}",
            )
        if rule.long_s > limit:
            lookback.fail(
                f"{where}: the lookbackWindow {format_span(rule.long_s)} is longer than {within}",
                f"use a lookbackWindow of at most {format_span(limit)}, or a longer timeWindow",
            )
        if rule.for_s / unit > MAX_UNITS:
            cond.require("alertAfter").fail(
                f"{where}: alertAfter holds more than {MAX_UNITS} units of {format_span(unit)}",
                "alert conditions usually hold for minutes, e.g. alertAfter: 2m",
            )

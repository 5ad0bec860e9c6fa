"""Load ``slos.yaml`` (coalmine's format) and OpenSLO v1 documents into an :class:`SloSet`.

A file may hold several YAML documents; each is either a coalmine ``SLOSet``::

    apiVersion: coalmine.dev/v1       # optional when the document only has `slos:`
    kind: SLOSet
    slos:
      - name: shop-availability
        service: shop
        objective: 99.9
        sli: {type: availability, source: router}
        window: 30d

or an OpenSLO v1 object (``apiVersion: openslo/v1``; see :mod:`coalmine.slo.openslo`).
Every error names file, line and field and, where it can, the closest valid word.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from coalmine.errors import SpecError
from coalmine.slo.spec import (
    API_VERSION,
    BUDGETING_METHODS,
    CALENDARS,
    DAY,
    KIND,
    MINUTE,
    MISSING_DATA,
    SEVERITIES,
    SLI_SOURCES,
    SLI_TYPES,
    AlertRule,
    Budgeting,
    Location,
    ProbeSource,
    PrometheusSource,
    ReleaseThresholds,
    RouterSource,
    Sli,
    SliSource,
    Slo,
    SloSet,
    SpecWarning,
    Window,
    count_template,
    default_alerting,
    format_span,
    parse_span,
)
from coalmine.spec.yamlpos import Cursor, Document, closest, read_documents, root_cursor

SLO_FIELDS = (
    "name",
    "service",
    "description",
    "objective",
    "sli",
    "window",
    "budgeting",
    "missingData",
    "alerting",
    "releasePolicy",
    "resolution",
    "traffic",
)
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "router": ("admin",),
    "probe": ("environment", "flows"),
    "prometheus": ("address", "good", "bad", "total"),
}
SLI_COMMON = ("type", "source", "threshold")
RULE_FIELDS = ("name", "severity", "long", "short", "factor", "for")
RELEASE_FIELDS = ("normalAbove", "cautiousAbove", "pauseFactor", "accelerateFactor")
BUDGETING_FIELDS = ("method", "slice", "goodRatio")
WINDOW_FIELDS = ("rolling", "calendar", "timezone")
SPAN_HINT = "use e.g. 5m, 1h, 30d"
LONGEST = 366 * DAY  # no SLO duration (window, alert window, for) is longer than a leap year
MAX_UNITS = round(LONGEST / MINUTE)  # units per window: the engine keeps one entry per unit
MINIMAL_HINT = (
    "a minimal slos.yaml: slos: [{name: shop-availability, service: shop, objective: 99.9, "
    "sli: {type: availability, source: router}, window: 30d}]"
)
OBJECTIVE_HINT = "objective is a percent number such as 99.9, without %"
SERVICE_HINT = (
    "the service's name in coalmine.yaml: lowercase letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit"
)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
SERVICE_NAME = re.compile(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?")  # rollout names (DNS) and '_'
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|d)\s*")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# --------------------------------------------------------------------------- entry points


def load_slos(paths: Iterable[str | Path]) -> SloSet:
    """Every SLO in the files (directories: their ``*.yaml``/``*.yml``). Raises SpecError,
    also when there is no SLO at all: an empty input is a mistake, not an empty set."""
    paths = list(paths)
    files = _files(paths)
    docs: list[Document] = []
    for path in files:
        docs.extend(read_documents(path))
    slos = build(docs)
    if not slos.slos:
        if not files:
            where = str(paths[0]) if paths else None
            raise SpecError("no .yaml or .yml files to read", file=where, hint=MINIMAL_HINT)
        line = next((d.line for d in docs if d.file == str(files[0])), 1)
        raise SpecError(
            "no SLOs found", file=str(files[0]), line=line, field="slos", hint=MINIMAL_HINT
        )
    return slos


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


def build(docs: Sequence[Document]) -> SloSet:
    """Turn parsed documents into an SloSet (names unique across documents)."""
    from coalmine.slo import openslo  # it builds on this module's readers

    slos: list[Slo] = []
    imported: list[Cursor] = []
    for doc in docs:
        if doc.data is None:
            continue
        items = root_cursor(doc).sequence() if isinstance(doc.data, list) else [root_cursor(doc)]
        for cur in items:
            cur.mapping(
                f"a document holds slos: [...] ({KIND}) or an OpenSLO object "
                f"(apiVersion: {openslo.API_VERSION}); {MINIMAL_HINT}"
            )
            api = cur.get("apiVersion")
            if api is not None and api.value == openslo.API_VERSION:
                imported.append(cur)
            elif api is None or api.value == API_VERSION:
                slos.extend(_slo_set(cur))
            else:
                api.fail(
                    f"unknown apiVersion {api.value!r}",
                    f"use {API_VERSION} (kind {KIND}) or {openslo.API_VERSION} (OpenSLO)",
                )
    slos.extend(openslo.import_objects(imported, _finish))
    seen: dict[str, Slo] = {}
    for slo in slos:
        if slo.name in seen:
            first = seen[slo.name].location
            where = Location("", 0) if slo.location is None else slo.location
            raise SpecError(
                f"duplicate SLO name '{slo.name}'",
                file=where.file or None,
                line=where.line or None,
                field="name",
                hint=f"already defined at {first}" if first else "names must be unique",
            )
        seen[slo.name] = slo
    warnings = [w for slo in slos for w in _warnings(slo)]
    return SloSet(tuple(slos), tuple(warnings))


def _warnings(slo: Slo) -> list[SpecWarning]:
    from coalmine.slo.engine import traffic_guard

    where = slo.location or Location()
    out = []
    rate = slo.traffic_per_s
    if rate is None and slo.budgeting.method == "timeslices":
        rate = 0.0  # timeslices count slices; the guard ignores the rate
    guards = traffic_guard(slo, rate) if rate is not None else ()
    seen = set()
    for guard in guards:
        if guard.bad_to_fire is None or (guard.single_event_fires and guard.severity == "page"):
            seen.add(guard.rule)
            out.append(
                SpecWarning(f"{slo.name}: {guard.message}", where.file, where.line, "alerting")
            )
    for rule in slo.alerting:
        if rule.name not in seen and rule.factor * slo.allowed_error >= 1:
            out.append(
                SpecWarning(
                    f"{slo.name}: {rule.name} can never fire: factor {rule.factor:.4g} x "
                    f"{slo.allowed_error * 100:.3g}% allowed errors is not below 100%",
                    where.file,
                    where.line,
                    "alerting",
                )
            )
    return out


# --------------------------------------------------------------------------- coalmine format


def _slo_set(cur: Cursor) -> list[Slo]:
    cur.check_fields(("apiVersion", "kind", "metadata", "slos"))
    kind = cur.get("kind")
    if kind is not None and kind.value != KIND:
        guess = closest(str(kind.value), (KIND,))
        kind.fail(f"unknown kind {kind.value!r}", f"did you mean '{guess}'?" if guess else KIND)
    if cur.get("apiVersion") is not None and kind is None:
        cur.fail("missing required field 'kind'", f"kind: {KIND}")
    items = cur.require("slos", "a list of SLOs").sequence(f"slos is a list; {MINIMAL_HINT}")
    if not items:
        cur.require("slos").fail("no SLOs in the list", MINIMAL_HINT)
    return [_slo(item) for item in items]


def _slo(cur: Cursor) -> Slo:
    cur.mapping(f"each SLO is a mapping; {MINIMAL_HINT}")
    cur.check_fields(SLO_FIELDS)
    name = _name(cur.require("name"))
    service = service_name(cur.require("service", "the service in coalmine.yaml"))
    description = _opt_string(cur.get("description"))
    objective = objective_percent(cur.require("objective", "a percentage, e.g. 99.9"))
    resolution = _resolution(cur.get("resolution"))
    budgeting = _budgeting(cur.get("budgeting"), resolution)
    sli = _sli(cur.require("sli"))
    window_cur = cur.require("window", "e.g. 30d, or {calendar: month, timezone: UTC}")
    window = _window(window_cur)
    missing = _choice(cur.get("missingData"), MISSING_DATA, "ignore")
    rules_cur = cur.get("alerting")
    rules = default_alerting(window.nominal_s) if rules_cur is None else _rules(rules_cur)
    release = _release(cur.get("releasePolicy"))
    traffic = _traffic(cur.get("traffic"))
    slo = Slo(
        name=name,
        service=service,
        objective=objective,
        sli=sli,
        window=window,
        budgeting=budgeting,
        missing_data=missing,  # type: ignore[arg-type]
        alerting=rules,
        release=release,
        description=description,
        resolution_s=resolution,
        traffic_per_s=traffic,
        location=Location(cur.file, cur.line),
    )
    return _finish(slo, window_cur, rules_cur)


def _finish(
    slo: Slo,
    window_cur: Cursor,
    rules_cur: Cursor | None,
    too_long_hint: str = "lengthen the window or set alerting: with shorter windows",
) -> Slo:
    """Checks that need the whole SLO: the window holds every alert window, every window is
    a whole number of counting units, and the engine's series (one entry per unit) stays
    small. ``too_long_hint`` says how to fix an alert window longer than the SLO window."""
    rules_at = rules_cur.sequence() if rules_cur is not None else []
    unit = slo.unit_s
    what = "time slice" if slo.budgeting.method == "timeslices" else "resolution"
    period = slo.window.rolling_s or 31 * DAY  # a calendar month is at most 31 days
    if period / unit > MAX_UNITS:
        window_cur.fail(
            f"the window ({slo.window.describe()}) holds {period / unit:.0f} units of "
            f"{format_span(unit)} ({what}), more than the {MAX_UNITS} coalmine keeps",
            f"use a {what} of at least {format_span(math.ceil(period / MAX_UNITS))}, "
            "or a shorter window",
        )
    for i, rule in enumerate(slo.alerting):
        at = rules_at[i] if i < len(rules_at) else (rules_cur or window_cur)
        for key, span in (("long", rule.long_s), ("short", rule.short_s)):
            if not _multiple(span, unit):
                spot = at.get(key) if isinstance(at.value, dict) else None
                (spot or at).fail(
                    f"the {key} window {format_span(span)} of rule '{rule.name}' is not a "
                    f"whole number of {format_span(unit)} ({what})",
                    f"use a multiple of {format_span(unit)}",
                )
        if slo.window.rolling_s is not None and rule.long_s > slo.window.rolling_s:
            window_cur.fail(
                f"the window {format_span(slo.window.rolling_s)} is shorter than the long window "
                f"{format_span(rule.long_s)} of alert rule '{rule.name}'",
                too_long_hint,
            )
        if rule.for_s / unit > MAX_UNITS:
            spot = at.get("for") if isinstance(at.value, dict) else None
            (spot or at).fail(
                f"'for' of rule '{rule.name}' holds more than {MAX_UNITS} units of "
                f"{format_span(unit)} ({what})",
                "alert conditions usually hold for minutes, e.g. for: 2m",
            )
        if slo.window.calendar is not None and rule.long_s > 28 * 86400:
            window_cur.fail(
                f"a calendar month can be shorter than the long window {format_span(rule.long_s)}"
                f" of alert rule '{rule.name}'",
                "use alert windows of at most 28d",
            )
    if slo.window.rolling_s is not None and not _multiple(slo.window.rolling_s, unit):
        window_cur.fail(
            f"the window {format_span(slo.window.rolling_s)} is not a whole number of "
            f"{format_span(unit)} ({what})"
        )
    return slo


def _multiple(span: float, unit: float) -> bool:
    k = span / unit
    return k >= 1 and abs(k - round(k)) < 1e-9


def _name(cur: Cursor) -> str:
    text = cur.nonempty_string()
    if len(text) > 253 or not _NAME.fullmatch(text):
        cur.fail(f"invalid name {text!r}", "lowercase letters, digits, '-' and '.'")
    return text


def _opt_string(cur: Cursor | None) -> str:
    return "" if cur is None or cur.value is None else cur.string()


def service_name(cur: Cursor) -> str:
    """The SLO's service: it goes into PromQL label values and alert templates, so only the
    characters of coalmine.yaml's service names (and rollout names) are allowed."""
    text = cur.nonempty_string()
    if len(text) > 253 or not SERVICE_NAME.fullmatch(text):
        cur.fail(f"invalid service name {text!r}", SERVICE_HINT)
    return text


def objective_percent(cur: Cursor, hint: str = OBJECTIVE_HINT) -> float:
    value = cur.number(hint)
    if not 0 < value < 100:
        cur.fail(
            f"the objective must be strictly between 0 and 100 (percent), got {value:g}",
            "e.g. 99.9 for 99.9% good events",
        )
    return value


def _choice(cur: Cursor | None, options: Sequence[str], default: str) -> str:
    if cur is None:
        return default
    value = cur.string()
    if value not in options:
        guess = closest(value, options)
        cur.fail(
            f"unknown value {value!r}",
            f"did you mean '{guess}'?" if guess else "one of: " + ", ".join(options),
        )
    return value


def span(cur: Cursor, hint: str = SPAN_HINT, *, zero: bool = False) -> float:
    """A duration above zero (``zero``: or zero), at most LONGEST (366d)."""
    try:
        value = parse_span(cur.value)
    except ValueError as err:
        cur.fail(str(err), hint)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if math.isnan(value):
        cur.fail(f"expected a duration, got {cur.value!r}", hint)
    if value < 0 or (value == 0 and not zero):
        cur.fail("must be longer than zero", hint)
    if value > LONGEST:
        text = str(cur.value) if len(str(cur.value)) <= 24 else str(cur.value)[:20] + "..."
        cur.fail(f"{text} is longer than {format_span(LONGEST)}, the longest allowed", hint)
    return value


def _resolution(cur: Cursor | None) -> float:
    if cur is None:
        return 60.0
    value = span(cur, "e.g. 1m")
    if value < 1 or value != int(value):
        cur.fail(f"the resolution must be a whole number of seconds, got {value:g}s", "e.g. 1m")
    return value


def _traffic(cur: Cursor | None) -> float | None:
    if cur is None or cur.value is None:
        return None
    hint = "events per time such as 10/s or 60/h"
    if isinstance(cur.value, int | float) and not isinstance(cur.value, bool):
        value = cur.number(hint)
        if value < 0:
            cur.fail("expected traffic cannot be negative")
        return value
    match = _RATE.fullmatch(str(cur.value)) if isinstance(cur.value, str) else None
    if match is None:
        cur.fail(f"expected {hint}, got {cur.value!r}")
    value = float(match.group(1)) / _PER[match.group(2)]
    if not math.isfinite(value):
        cur.fail(f"expected {hint}, got a number too large to use", hint)
    return value


# --------------------------------------------------------------------------- sli


def _sli(cur: Cursor) -> Sli:
    cur.mapping()
    kind = _choice(cur.require("type", "availability or latency"), SLI_TYPES, "availability")
    source_cur = cur.require("source", "router, probe or prometheus")
    source_name = _choice(source_cur, SLI_SOURCES, "router")
    known = SLI_COMMON + SOURCE_FIELDS[source_name]
    for child in cur.fields():
        if child.key in known:
            continue
        owner = next((s for s, keys in SOURCE_FIELDS.items() if child.key in keys), None)
        if owner is not None:
            child.fail(
                f"'{child.key}' is a field of source {owner}, not {source_name}",
                f"set source: {owner}, or remove '{child.key}'",
            )
        guess = closest(child.key, known)
        child.fail(
            f"unknown field '{child.key}'",
            f"did you mean '{guess}'?" if guess else "known fields: " + ", ".join(known),
        )
    threshold_cur = cur.get("threshold")
    threshold = None
    if threshold_cur is not None:
        if kind != "latency":
            threshold_cur.fail("a threshold is for latency SLIs", "set type: latency")
        threshold = span(threshold_cur, "e.g. 300ms") * 1000.0
    source: SliSource
    if source_name == "router":
        admin_cur = cur.get("admin")
        admin = None if admin_cur is None else admin_cur.nonempty_string()
        if admin is not None and not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", admin):
            assert admin_cur is not None
            admin_cur.fail(f"expected host:port, got {admin!r}", "e.g. 127.0.0.1:8081")
        source = RouterSource(admin)
        if kind == "latency" and threshold is None:
            cur.fail("a latency SLI needs a threshold", "e.g. threshold: 300ms")
    elif source_name == "probe":
        if kind == "latency":
            cur.require("type").fail(
                "probe SLIs count final successes; latency is not recorded per run",
                "use type: availability, and put latency limits in the flow's assertions",
            )
        source = _probe(cur)
    else:
        source = _prometheus(cur)
    return Sli(kind, source, threshold)  # type: ignore[arg-type]


def _probe(cur: Cursor) -> ProbeSource:
    """Runs count when their flow binds the SLO (``slo:``) or is listed in ``flows``; only the
    runs of one ``environment``, so that staging failures never burn the prod budget."""
    env_cur = cur.require(
        "environment",
        "name the environment whose probe runs count, e.g. environment: prod "
        "(a flow's runs in other environments do not count)",
    )
    flows: list[str] = []
    flows_cur = cur.get("flows")
    if flows_cur is not None:
        flows = (
            [flows_cur.nonempty_string()]
            if isinstance(flows_cur.value, str)
            else [f.nonempty_string() for f in flows_cur.sequence()]
        )
        if not flows:
            flows_cur.fail(
                "name at least one flow",
                "or remove flows: and bind the flows to this SLO with slo: <name> in each flow",
            )
    return ProbeSource(tuple(flows), env_cur.nonempty_string())


def _prometheus(cur: Cursor) -> PrometheusSource:
    from coalmine.metrics.prometheus import check_url

    address_cur = cur.require("address", "e.g. http://127.0.0.1:9090")
    try:
        address = check_url(address_cur.value, "address", "http://127.0.0.1:9090")
    except SpecError as err:
        address_cur.fail(err.message, err.hint)
    good_cur, bad_cur = cur.get("good"), cur.get("bad")
    if (good_cur is None) == (bad_cur is None):
        (good_cur or bad_cur or cur).fail(
            "give exactly one of 'good' and 'bad'", "good events, or bad events, with total"
        )
    total = query_template(cur.require("total", "a PromQL counting all events"))
    good = None if good_cur is None else query_template(good_cur)
    bad = None if bad_cur is None else query_template(bad_cur)
    return PrometheusSource(address=address, total=total, good=good, bad=bad)


def query_template(cur: Cursor) -> str:
    try:
        return count_template(cur.nonempty_string())
    except ValueError as err:
        cur.fail(str(err))


# --------------------------------------------------------------------------- window, budgeting


def _window(cur: Cursor) -> Window:
    if not isinstance(cur.value, dict):
        return Window(rolling_s=span(cur, "e.g. 30d, 28d or 7d"))
    cur.check_fields(WINDOW_FIELDS)
    rolling, calendar = cur.get("rolling"), cur.get("calendar")
    if (rolling is None) == (calendar is None):
        cur.fail("give exactly one of 'rolling' and 'calendar'", "e.g. rolling: 30d")
    if rolling is not None:
        if cur.get("timezone") is not None:
            cur.require("timezone").fail("a timezone is for calendar windows")
        return Window(rolling_s=span(rolling, "e.g. 30d, 28d or 7d"))
    assert calendar is not None
    _choice(calendar, CALENDARS, "month")
    tz_cur = cur.get("timezone")
    tz = "UTC" if tz_cur is None else timezone(tz_cur)
    return Window(calendar="month", timezone=tz)


def timezone(cur: Cursor) -> str:
    name = cur.nonempty_string()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        guess = closest(name, _zones())
        cur.fail(
            f"unknown timezone {name!r}",
            f"did you mean '{guess}'?" if guess else "an IANA name such as Europe/Berlin or UTC",
        )
    return name


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _budgeting(cur: Cursor | None, resolution: float) -> Budgeting:
    if cur is None:
        return Budgeting()
    if not isinstance(cur.value, dict):
        method = _choice(cur, BUDGETING_METHODS, "occurrences")
        if method == "timeslices":
            cur.fail(
                "timeslices need a slice length and a good ratio",
                "budgeting: {method: timeslices, slice: 1m, goodRatio: 0.95}",
            )
        return Budgeting()
    cur.check_fields(BUDGETING_FIELDS)
    method = _choice(cur.require("method"), BUDGETING_METHODS, "occurrences")
    if method == "occurrences":
        for key in ("slice", "goodRatio"):
            if (extra := cur.get(key)) is not None:
                extra.fail(f"'{key}' is for timeslices", "set method: timeslices or remove it")
        return Budgeting()
    slice_cur = cur.require("slice", "e.g. slice: 1m")
    slice_s = span(slice_cur, "e.g. 1m")
    if not _multiple(slice_s, resolution):
        slice_cur.fail(
            f"the slice {format_span(slice_s)} is not a whole number of buckets "
            f"({format_span(resolution)})",
            "use a multiple of the resolution",
        )
    ratio_cur = cur.require("goodRatio", "the share of good events that makes a slice good")
    ratio = ratio_cur.number()
    if not 0 < ratio <= 1:
        ratio_cur.fail(f"goodRatio must be above 0 and at most 1, got {ratio:g}", "e.g. 0.95")
    return Budgeting("timeslices", slice_s, ratio)


# --------------------------------------------------------------------------- alerting, release


def _rules(cur: Cursor) -> tuple[AlertRule, ...]:
    items = cur.sequence()
    if not items:
        cur.fail("no alert rules", "remove 'alerting' to get the default burn-rate table")
    rules: list[AlertRule] = []
    names: set[str] = set()
    for item in items:
        item.check_fields(RULE_FIELDS)
        sev = _choice(item.require("severity", "page or ticket"), SEVERITIES, "page")
        long_s = span(item.require("long", "e.g. long: 1h"))
        short_cur = item.require("short", "e.g. short: 5m")
        short_s = span(short_cur)
        if short_s >= long_s:
            short_cur.fail(
                f"the short window {format_span(short_s)} must be shorter than the long window "
                f"{format_span(long_s)}",
                "Google's tables use a twelfth of the long window",
            )
        factor_cur = item.require("factor", "the burn rate, e.g. 14.4")
        factor = factor_cur.number()
        if factor <= 0:
            factor_cur.fail(f"the factor must be above 0, got {factor:g}")
        for_cur = item.get("for")
        for_s = 0.0 if for_cur is None else parse_for(for_cur)
        name_cur = item.get("name")
        name = f"{sev}-{format_span(long_s)}" if name_cur is None else _name(name_cur)
        if name in names:
            (name_cur or item).fail(f"duplicate rule name '{name}'", "give each rule a name")
        names.add(name)
        rules.append(AlertRule(name, sev, long_s, short_s, factor, for_s))  # type: ignore[arg-type]
    return tuple(rules)


def parse_for(cur: Cursor) -> float:
    return span(cur, "e.g. 2m", zero=True)


def _release(cur: Cursor | None) -> ReleaseThresholds:
    if cur is None:
        return ReleaseThresholds()
    cur.check_fields(RELEASE_FIELDS)
    base = ReleaseThresholds()

    def percent(key: str, default: float) -> float:
        child = cur.get(key)
        if child is None:
            return default
        value = child.number()
        if not 0 <= value <= 100:
            child.fail(f"{key} is a percentage of the budget, 0 to 100, got {value:g}")
        return value / 100.0

    normal = percent("normalAbove", base.normal_above)
    cautious = percent("cautiousAbove", base.cautious_above)
    if cautious >= normal:
        (cur.get("cautiousAbove") or cur).fail(
            f"cautiousAbove ({cautious * 100:g}) must be below normalAbove ({normal * 100:g})"
        )
    pause = base.pause_factor
    if (pause_cur := cur.get("pauseFactor")) is not None:
        pause = pause_cur.number()
        if pause < 1:
            pause_cur.fail(f"pauseFactor lengthens pauses: at least 1, got {pause:g}")
    accel = base.accelerate_factor
    if (accel_cur := cur.get("accelerateFactor")) is not None:
        accel = accel_cur.number()
        if not 0 < accel <= 1:
            accel_cur.fail(f"accelerateFactor shortens pauses: above 0, at most 1, got {accel:g}")
    return ReleaseThresholds(normal, cautious, pause, accel)

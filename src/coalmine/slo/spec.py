"""SLOs as plain frozen data: what is measured, against which objective, over which period, how
the error budget is counted, when to alert and how the budget drives releases.

``loader`` (coalmine's ``slos.yaml``) and ``openslo`` (OpenSLO v1) build these objects; the
engine, the release policy and the rule generator read them. Durations are float seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from coalmine.durations import format_duration, parse_duration

API_VERSION = "coalmine.dev/v1"
KIND = "SLOSet"

SLI_TYPES = ("availability", "latency")
SLI_SOURCES = ("router", "probe", "prometheus")
BUDGETING_METHODS = ("occurrences", "timeslices")
MISSING_DATA = ("bad", "ignore", "alert")
SEVERITIES = ("page", "ticket")
CALENDARS = ("month",)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
DEFAULT_RESOLUTION = MINUTE
DEFAULT_PERIOD_FOR_CALENDAR = 30 * DAY  # the alert table of a calendar month is the 30d one

SliType = Literal["availability", "latency"]
Severity = Literal["page", "ticket"]
MissingData = Literal["bad", "ignore", "alert"]
Method = Literal["occurrences", "timeslices"]

# --------------------------------------------------------------------------- durations


def parse_span(value: object) -> float:
    """A duration that may use days and weeks (``30d``, ``1w``, ``1d12h``) or plain seconds.

    Raises ``ValueError`` with a readable reason (the loader turns it into a SpecError)."""
    return parse_duration(value, days=True)


def format_span(seconds: float) -> str:
    """``2592000`` -> ``30d``, ``93600`` -> ``1d2h``, ``300`` -> ``5m``."""
    whole = round(seconds)
    if whole >= DAY:
        days, rest = divmod(whole, int(DAY))
        return f"{days}d" + (format_duration(rest) if rest else "")
    return format_duration(seconds)


def prom_duration(seconds: float) -> str:
    """A duration Prometheus accepts in a range selector (``5m``, ``1h``, ``3d``, ``90s``)."""
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0 and whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


# --------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Location:
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class RouterSource:
    """The embedded router's per-request measurements (``/admin/records``).

    ``admin`` is the router's admin address; None: the service's ``router.admin`` in
    coalmine.yaml."""

    admin: str | None = None
    name: Literal["router"] = "router"


@dataclass(frozen=True)
class ProbeSource:
    """Synthetic probe results (``probe_runs``): a run is good when it finally succeeded.

    The runs that count are those of ``environment`` whose flow is bound to the SLO
    (``slo: <name>`` in the flow) or listed in ``flows``, except canary-pinned runs: those are
    the judge's (``coalmine/probe``). ``slos.yaml`` must name the environment; the default
    here only serves code that builds a source by hand."""

    flows: tuple[str, ...] = ()
    environment: str = "prod"
    name: Literal["probe"] = "probe"

    def describe_runs(self, slo: str) -> str:
        """Which runs count, for notes: ``probe runs bound to X or of a, b in prod``."""
        flows = f" or of {', '.join(self.flows)}" if self.flows else ""
        return f"probe runs bound to {slo}{flows} in {self.environment}"


WINDOW_PLACEHOLDER = "{{window}}"
_SELECTOR = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?|\{.*\}", re.DOTALL)


def count_template(query: str) -> str:
    """The PromQL that counts events over ``{{window}}``.

    A query holding ``{{window}}`` is used as it is (it must return the number of events in the
    window ending at evaluation time); a plain series selector of a counter is wrapped as
    ``sum(increase(SELECTOR[{{window}}]))``. Raises ValueError for anything else."""
    text = query.strip()
    if WINDOW_PLACEHOLDER in text:
        return text
    if _SELECTOR.fullmatch(text):
        return f"sum(increase({text}[{WINDOW_PLACEHOLDER}]))"
    raise ValueError(
        "cannot tell how to count events over a window from this query: give a counter's "
        'series selector (http_requests_total{job="api"}) or a query with {{window}}'
    )


@dataclass(frozen=True)
class PrometheusSource:
    """Good (or bad) and total events from PromQL. ``good``/``bad``/``total`` are templates with
    ``{{window}}`` (see :func:`count_template`); exactly one of ``good`` and ``bad`` is set."""

    address: str
    total: str
    good: str | None = None
    bad: str | None = None
    name: Literal["prometheus"] = "prometheus"

    def total_query(self, window: float | str) -> str:
        return _render(self.total, window)

    def good_query(self, window: float | str) -> str:
        if self.good is not None:
            return _render(self.good, window)
        assert self.bad is not None
        return f"({self.total_query(window)}) - ({_render(self.bad, window)})"

    def bad_query(self, window: float | str) -> str:
        if self.bad is not None:
            return _render(self.bad, window)
        assert self.good is not None
        return f"({self.total_query(window)}) - ({_render(self.good, window)})"


def _render(template: str, window: float | str) -> str:
    text = window if isinstance(window, str) else prom_duration(window)
    return template.replace(WINDOW_PLACEHOLDER, text)


SliSource = RouterSource | ProbeSource | PrometheusSource


@dataclass(frozen=True)
class Sli:
    """``availability``: good = not a 5xx (router), final success (probe), the good query
    (prometheus). ``latency``: good = faster than ``threshold_ms`` and not a 5xx."""

    type: SliType
    source: SliSource
    threshold_ms: float | None = None

    def describe(self) -> str:
        what: str = self.type
        if self.threshold_ms is not None:
            what += f" < {self.threshold_ms:g}ms"
        where = f" in {self.source.environment}" if isinstance(self.source, ProbeSource) else ""
        return f"{what} from {self.source.name}{where}"


@dataclass(frozen=True)
class Window:
    """A rolling window (``rolling_s``) or a calendar month in ``timezone``."""

    rolling_s: float | None = None
    calendar: Literal["month"] | None = None
    timezone: str = "UTC"

    def period(self, now: float) -> tuple[float, float]:
        """``(start, end)`` of the SLO period that holds ``now``. A rolling period ends at
        ``now``; a calendar one is the whole month (its end is in the future)."""
        if self.rolling_s is not None:
            return now - self.rolling_s, now
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(now, zone)
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start.timestamp(), nxt.timestamp()

    @property
    def nominal_s(self) -> float:
        """The length the alert table is scaled to (30 days for a calendar month)."""
        return self.rolling_s if self.rolling_s is not None else DEFAULT_PERIOD_FOR_CALENDAR

    def describe(self) -> str:
        if self.rolling_s is not None:
            return f"rolling {format_span(self.rolling_s)}"
        return f"calendar {self.calendar} ({self.timezone})"


@dataclass(frozen=True)
class Budgeting:
    """``occurrences``: the budget is a share of events. ``timeslices``: time is cut into
    slices of ``slice_s``; a slice is good when its good/total ratio is at least
    ``good_ratio``, and the budget is a share of the period's slices."""

    method: Method = "occurrences"
    slice_s: float = MINUTE
    good_ratio: float = 0.0

    def describe(self) -> str:
        if self.method == "occurrences":
            return "occurrences"
        return f"timeslices of {format_span(self.slice_s)} (good when >= {self.good_ratio:g})"


@dataclass(frozen=True)
class AlertRule:
    """Multi-window burn-rate alert: fires when the burn rate over both ``long_s`` and
    ``short_s`` is above ``factor`` (error ratio above ``factor * (1 - objective)``), for at
    least ``for_s``."""

    name: str
    severity: Severity
    long_s: float
    short_s: float
    factor: float
    for_s: float = 0.0
    receivers: tuple[str, ...] = ()  # notification targets named by an imported policy

    def describe(self) -> str:
        return (
            f"{self.name} ({self.severity}): burn > {self.factor:.4g} over "
            f"{format_span(self.long_s)} and {format_span(self.short_s)}"
        )


# The Google SRE workbook's table for a 30-day SLO, as the share of the budget each rule spends
# over its long window: 2% in 1h, 5% in 6h, 10% in 1d, 10% in 3d. The factor for a period P is
# share * P / long, so 30d gives 14.4, 6, 3, 1; 28d gives 13.44, 5.6, 2.8, 0.933; 7d gives
# 3.36, 1.4, 0.7, 0.233. Same meaning (share of the budget), whatever the period.
BUDGET_SHARES: tuple[tuple[str, Severity, float, float, float], ...] = (
    ("page-1h", "page", HOUR, 5 * MINUTE, 0.02),
    ("page-6h", "page", 6 * HOUR, 30 * MINUTE, 0.05),
    ("ticket-1d", "ticket", DAY, 2 * HOUR, 0.10),
    ("ticket-3d", "ticket", 3 * DAY, 6 * HOUR, 0.10),
)


def default_alerting(period_s: float) -> tuple[AlertRule, ...]:
    """The multi-window multi-burn-rate table for an SLO period of ``period_s``."""
    return tuple(
        AlertRule(name, sev, long_s, short_s, share * period_s / long_s)
        for name, sev, long_s, short_s, share in BUDGET_SHARES
    )


@dataclass(frozen=True)
class ReleaseThresholds:
    """Budget remaining (fractions) that set the release tier: above ``normal_above`` normal,
    from ``cautious_above`` to ``normal_above`` cautious, above 0 protected, else frozen."""

    normal_above: float = 0.5
    cautious_above: float = 0.2
    pause_factor: float = 2.0  # cautious: pauses are multiplied by this
    accelerate_factor: float = 0.5  # normal: pauses may be multiplied by this, when asked for


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: float  # percent, strictly between 0 and 100
    sli: Sli
    window: Window
    budgeting: Budgeting = field(default_factory=Budgeting)
    missing_data: MissingData = "ignore"
    alerting: tuple[AlertRule, ...] = ()
    release: ReleaseThresholds = field(default_factory=ReleaseThresholds)
    description: str = ""
    resolution_s: float = DEFAULT_RESOLUTION
    traffic_per_s: float | None = None  # expected events per second, for the low-traffic guard
    location: Location | None = None
    origin: Literal["coalmine", "openslo"] = "coalmine"

    @property
    def target(self) -> float:
        """The objective as a ratio (99.9 -> 0.999)."""
        return self.objective / 100.0

    @property
    def allowed_error(self) -> float:
        """1 - target: the error ratio that burns the budget at exactly rate 1."""
        return 1.0 - self.target

    @property
    def unit_s(self) -> float:
        """The engine's counting unit: the time slice, or the bucket resolution."""
        return (
            self.budgeting.slice_s if self.budgeting.method == "timeslices" else self.resolution_s
        )


@dataclass(frozen=True)
class SpecWarning:
    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None

    def one_line(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else ""
        fld = f"{self.field}: " if self.field else ""
        return f"{where}{fld}{self.message}"


@dataclass(frozen=True)
class SloSet:
    slos: tuple[Slo, ...] = ()
    warnings: tuple[SpecWarning, ...] = ()

    def get(self, name: str) -> Slo | None:
        return next((s for s in self.slos if s.name == name), None)

    def for_service(self, service: str) -> tuple[Slo, ...]:
        return tuple(s for s in self.slos if s.service == service)

"""The validated, internal form of the user's files.

The loader (``coalmine.spec.loader``) turns Argo Rollouts manifests and ``coalmine.yaml`` into
these immutable objects; everything downstream (controller, analysis, router) works only with
them. Durations are float seconds; every object keeps the file and line it came from so that
later errors can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

# --------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Arg:
    """An analysis argument. ``value`` is None when the template declares it without a default."""

    name: str
    value: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric of an AnalysisTemplate, with Argo Rollouts' defaults applied.

    ``provider`` is the raw provider mapping with exactly one key, e.g.
    ``{"plugin": {"coalmine/router": {...}}}``, ``{"prometheus": {...}}``, ``{"web": {...}}``.
    ``interval`` None with ``count`` None means a single measurement (Argo's effective count 1).
    ``failure_limit`` -1 means unlimited. ``dry_run``: measured and reported, never acted upon.
    """

    name: str
    provider: dict[str, Any]
    interval: float | None = None
    count: int | None = None
    initial_delay: float = 0.0
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    consecutive_failure_limit: int | None = None  # coalmine's addition: fail on N in a row
    dry_run: bool = False
    location: Location | None = None

    @property
    def provider_name(self) -> str:
        """``prometheus``, ``web``, ``job``..., or a plug-in name such as ``coalmine/router``."""
        (kind,) = self.provider.keys()
        if kind == "plugin":
            (plugin_name,) = self.provider["plugin"].keys()
            return str(plugin_name)
        return kind

    @property
    def provider_config(self) -> dict[str, Any]:
        (kind,) = self.provider.keys()
        body = self.provider[kind]
        if kind == "plugin":
            (body,) = body.values()
        return dict(body or {})

    @property
    def effective_count(self) -> int | None:
        """Argo: no count and no interval means one measurement; no count with an interval
        means measure until the run is terminated."""
        if self.count is not None:
            return self.count
        return 1 if self.interval is None else None


@dataclass(frozen=True)
class AnalysisTemplate:
    name: str
    metrics: tuple[Metric, ...]
    args: tuple[Arg, ...] = ()
    cluster_scope: bool = False
    location: Location | None = None


# --------------------------------------------------------------------------- rollout steps


@dataclass(frozen=True)
class SetWeight:
    weight: int
    location: Location | None = None


@dataclass(frozen=True)
class Pause:
    """``duration`` None pauses until a human promotes or resumes."""

    duration: float | None = None
    location: Location | None = None


@dataclass(frozen=True)
class TemplateRef:
    template_name: str
    cluster_scope: bool = False


@dataclass(frozen=True)
class Analysis:
    """An ``analysis`` step, or the background analysis of ``strategy.canary.analysis``."""

    templates: tuple[TemplateRef, ...]
    args: tuple[Arg, ...] = ()
    dry_run_metrics: tuple[str, ...] = ()  # Argo's dryRun[].metricName (a regular expression)
    location: Location | None = None


@dataclass(frozen=True)
class HeaderMatch:
    header_name: str
    kind: Literal["exact", "prefix", "regex"]
    value: str


@dataclass(frozen=True)
class SetHeaderRoute:
    """Send requests that match every header rule to the canary. No matches removes the route."""

    name: str
    matches: tuple[HeaderMatch, ...] = ()
    location: Location | None = None


Step = SetWeight | Pause | Analysis | SetHeaderRoute


@dataclass(frozen=True)
class BackgroundAnalysis:
    analysis: Analysis
    starting_step: int = 0  # index of the step at which the background run starts


@dataclass(frozen=True)
class Rollout:
    name: str
    steps: tuple[Step, ...]
    namespace: str | None = None
    background: BackgroundAnalysis | None = None
    managed_routes: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    canary_version: str = "canary"  # annotation coalmine.dev/version, else the first image tag
    service: str = ""  # annotation coalmine.dev/service, else the rollout name
    location: Location | None = None


@dataclass(frozen=True)
class Bundle:
    """Everything loaded from one set of files, keyed by name."""

    rollouts: dict[str, Rollout] = field(default_factory=dict)
    templates: dict[str, AnalysisTemplate] = field(default_factory=dict)
    cluster_templates: dict[str, AnalysisTemplate] = field(default_factory=dict)
    files: tuple[str, ...] = ()


# --------------------------------------------------------------------------- coalmine.yaml


@dataclass(frozen=True)
class Upstream:
    url: str  # http://host:port
    version: str | None = None


@dataclass(frozen=True)
class Tenancy:
    """How the router recognises a user for sticky assignment, in this order: header, cookie,
    client address. ``test_tenants`` always get the canary while its weight is above zero."""

    header: str | None = "X-Tenant"
    cookie: str | None = None
    test_tenants: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouterSettings:
    listen: str = "127.0.0.1:8080"  # where users' traffic arrives
    admin: str = "127.0.0.1:8081"  # weights, measurements and /metrics
    override_header: str = "X-Coalmine-Version"  # "stable" or "canary": pins a request (probes)
    connect_timeout: float = 2.0
    request_timeout: float = 30.0
    state_file: str | None = None  # where the router keeps its last routing across restarts


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    stable: Upstream
    canary: Upstream
    tenancy: Tenancy = Tenancy()
    router: RouterSettings = RouterSettings()
    # A fresh copy of the stable version that gets the same share of tenants as the canary, so
    # the canary is judged against an equally young, equally loaded cohort (Kayenta's practice).
    baseline: Upstream | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    database_url: str = "sqlite:///.coalmine/state.db"
    receipts_dir: str = ".coalmine/receipts"
    services: dict[str, ServiceConfig] = field(default_factory=dict)
    # SLO files (slos.yaml, OpenSLO) whose budgets drive the release policy; absolute paths
    slos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    environments: dict[str, Environment]
    default_environment: str
    location: Location | None = None

    def environment(self, name: str | None = None) -> Environment:
        return self.environments[name or self.default_environment]


def scale_durations(
    rollout: Rollout, templates: dict[str, AnalysisTemplate], factor: float
) -> tuple[Rollout, dict[str, AnalysisTemplate]]:
    """Divide every duration by ``factor`` (``--time-scale``): pauses, intervals, delays."""
    if factor == 1:
        return rollout, templates

    def step(s: Step) -> Step:
        if isinstance(s, Pause) and s.duration is not None:
            return replace(s, duration=s.duration / factor)
        return s

    def metric(m: Metric) -> Metric:
        return replace(
            m,
            interval=None if m.interval is None else m.interval / factor,
            initial_delay=m.initial_delay / factor,
        )

    scaled_templates = {
        name: replace(t, metrics=tuple(metric(m) for m in t.metrics))
        for name, t in templates.items()
    }
    return replace(rollout, steps=tuple(step(s) for s in rollout.steps)), scaled_templates

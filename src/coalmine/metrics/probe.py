"""The ``coalmine/probe`` metric plug-in: what synthetic probes saw of each version.

``coalmine probes serve`` stores every run in the state database; the controller reads the
runs pinned to each version through ``ProbeResults`` (``coalmine.probes.store.
StoreProbeResults``) and this provider turns their summaries into measurements.

Configuration (under ``provider.plugin.coalmine/probe``): ``query`` (success-ratio, score,
latency; required), ``environment`` (the probe environment whose runs count, e.g. prod;
required: the analysis does not know which probe environment a rollout is in, and staging runs
must not judge a prod canary), ``flow`` (one probe flow; omitted: every flow of the service),
``quantile`` for latency (default 0.99), ``version`` (canary or stable: a number as
``result``; without it ``result`` is ``{canary: x, stable: y}``), ``window`` (default 5m,
divided by the demo's time scale) and ``minRuns`` (default 3). Without a probe results source,
or with fewer than ``minRuns`` probe runs of a version in the window, there is no data: the
measurement is Inconclusive, never Successful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration, parse_duration
from coalmine.errors import CoalmineError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.router import quantile_key
from coalmine.spec.model import Metric

PLUGIN = "coalmine/probe"
QUERIES = ("success-ratio", "score", "latency")
VERSIONS = ("canary", "stable")
KEYS = ("environment", "flow", "query", "quantile", "version", "window", "minRuns")
DEFAULT_WINDOW = 300.0
DEFAULT_MIN_RUNS = 3
DEFAULT_QUANTILE = 0.99
NO_SOURCE = (
    "no data: no probe results source is configured, so coalmine/probe cannot measure "
    "(synthetic probes are not set up for this controller)"
)


@dataclass(frozen=True)
class ProbeSummary:
    """What the probes of one version saw in a window.

    ``success_ratio`` is ``successes / runs`` unless the service computes it otherwise (None:
    the provider derives it); ``score`` is the service's own 0..1 quality score, if it has one;
    ``latency_ms`` maps quantile keys (``p50``, ``p99``, ``p99.9``, see
    ``coalmine.metrics.router.quantile_key``) to milliseconds.
    """

    runs: int
    successes: int
    success_ratio: float | None = None
    score: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeQuery:
    """Which runs a summary covers: those of ``service`` in ``environment`` pinned to
    ``version`` (of ``flow``; None: every flow of the service) that started in
    ``[since, until]``."""

    service: str
    environment: str
    flow: str | None
    version: str
    since: float
    until: float


class ProbeResults(Protocol):
    """Where probe results are read from. Returns None when no run matches the query.
    Expected failures (the database is down) are raised as ``CoalmineError`` or ``OSError``."""

    async def summary(self, query: ProbeQuery) -> ProbeSummary | None: ...


# --------------------------------------------------------------------------- configuration


class ProbeConfigError(ValueError):
    """A bad ``coalmine/probe`` configuration; ``field`` is relative to the plug-in."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{PLUGIN}.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ProbeConfig:
    query: str
    environment: str
    flow: str | None = None
    quantile: float = DEFAULT_QUANTILE
    version: str | None = None
    window: float = DEFAULT_WINDOW  # seconds, before the time scale
    min_runs: int = DEFAULT_MIN_RUNS


def _unresolved(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def parse_probe_config(config: dict[str, Any], check_only: bool = False) -> ProbeConfig:
    """Validate a ``coalmine/probe`` mapping (after arg substitution); raises ProbeConfigError
    (a ValueError) naming the field. With ``check_only`` (``coalmine validate`` on a template
    whose args are unknown), values still holding ``{{args.x}}`` are not checked."""
    import difflib

    if not isinstance(config, dict):
        raise ProbeConfigError("", "expected a mapping")
    for key in config:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KEYS)})"
            raise ProbeConfigError(str(key), f"unknown field{hint}")
    if config.get("query") in (None, ""):
        raise ProbeConfigError("query", f"required, one of: {', '.join(QUERIES)}")
    values = {k: v for k, v in config.items() if not (check_only and _unresolved(v))}
    query = values.get("query", "latency")  # unresolved: check the rest as if it fitted
    if query not in QUERIES:
        raise ProbeConfigError("query", f"{query!r} is not one of {', '.join(QUERIES)}")
    environment = config.get("environment")
    if not isinstance(environment, str) or not environment.strip():
        got = "required" if environment is None else f"expected a name, got {environment!r}"
        raise ProbeConfigError(
            "environment",
            f"{got}: the probe environment whose runs count, e.g. environment: prod",
        )
    flow = values.get("flow")
    if flow is not None and (not isinstance(flow, str) or not flow.strip()):
        raise ProbeConfigError("flow", f"expected the name of a probe flow, got {flow!r}")
    version = values.get("version")
    if version is not None and version not in VERSIONS:
        raise ProbeConfigError("version", f"{version!r} is not one of canary, stable")
    quantile = DEFAULT_QUANTILE
    if "quantile" in config:
        if "query" in values and query != "latency":
            raise ProbeConfigError("quantile", "applies only to query: latency")
        if "quantile" in values:
            quantile = _quantile(values["quantile"])
    window = DEFAULT_WINDOW
    if "window" in values:
        try:
            window = parse_duration(values["window"])
        except ValueError as err:
            raise ProbeConfigError("window", str(err)) from None
        if window <= 0:
            raise ProbeConfigError("window", "must be longer than zero, e.g. 5m")
    min_runs = DEFAULT_MIN_RUNS
    if "minRuns" in values:
        min_runs = _min_runs(values["minRuns"])
    return ProbeConfig(
        query=str(query),
        environment=environment.strip(),
        flow=flow.strip() if isinstance(flow, str) else None,
        quantile=quantile,
        version=version,
        window=window,
        min_runs=min_runs,
    )


def _quantile(raw: Any) -> float:
    try:
        q = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        q = math.nan
    if not 0.0 < q < 1.0:
        raise ProbeConfigError("quantile", f"must be between 0 and 1 (e.g. 0.99), got {raw!r}")
    return q


def _min_runs(raw: Any) -> int:
    value = raw
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProbeConfigError("minRuns", f"must be an integer of at least 1, got {raw!r}")
    return value


# --------------------------------------------------------------------------- the provider


class ProbeMetrics:
    """Measures a version from stored probe summaries; ``results`` None: no source."""

    def __init__(self, results: ProbeResults | None) -> None:
        self.results = results

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        try:
            config = parse_probe_config(metric.provider_config)
        except ValueError as err:
            return ProviderResult(phase=Phase.ERROR, message=str(err))
        window = config.window / (context.time_scale or 1.0)
        details: dict[str, Any] = {
            "query": config.query,
            "environment": config.environment,
            "flow": config.flow,
            "window_s": round(window, 3),
        }
        if self.results is None:
            return ProviderResult(phase=Phase.INCONCLUSIVE, message=NO_SOURCE, details=details)
        versions = (config.version,) if config.version else VERSIONS
        values: dict[str, float] = {}
        short: list[str] = []
        for version in versions:
            try:
                summary = await self.results.summary(
                    ProbeQuery(
                        context.service,
                        config.environment,
                        config.flow,
                        version,
                        context.now - window,
                        context.now,
                    )
                )
            except CoalmineError as err:
                return ProviderResult(
                    phase=Phase.ERROR, message=f"probes: {err.one_line()}", details=details
                )
            except (OSError, TimeoutError) as err:
                reason = str(err) or type(err).__name__
                return ProviderResult(
                    phase=Phase.ERROR,
                    message=f"probes: the probe service failed: {reason}",
                    details=details,
                )
            details[version] = _summary_details(summary)
            problem, value = _value(summary, config, window)
            if problem is not None:
                short.append(f"{version} {problem}")
            else:
                assert value is not None
                values[version] = value
        if short:
            return ProviderResult(
                phase=Phase.INCONCLUSIVE, message="no data: " + "; ".join(short), details=details
            )
        result: Any = values[config.version] if config.version else values
        return ProviderResult(value=result, details=details)


def _summary_details(summary: ProbeSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "runs": summary.runs,
        "successes": summary.successes,
        "success_ratio": summary.success_ratio,
        "score": summary.score,
        "latency_ms": dict(summary.latency_ms),
    }


def _value(
    summary: ProbeSummary | None, config: ProbeConfig, window: float
) -> tuple[str | None, float | None]:
    """(why there is no data, None) or (None, the value)."""
    flow = f" of flow {config.flow!r}" if config.flow else ""
    flow += f" in {config.environment}"
    span = format_duration(window)
    if summary is None:
        return f"has no probe runs{flow} in the last {span}", None
    if summary.runs < config.min_runs:
        return (
            f"had {summary.runs} probe runs{flow} in the last {span}, need {config.min_runs}",
            None,
        )
    if config.query == "success-ratio":
        ratio = summary.success_ratio
        if ratio is None:
            ratio = summary.successes / summary.runs
        return None, float(ratio)
    if config.query == "score":
        if summary.score is None:
            return "probes report no score", None
        return None, float(summary.score)
    key = quantile_key(config.quantile)
    latency = summary.latency_ms.get(key)
    if latency is None:
        return f"probes report no {key} latency", None
    return None, float(latency)

"""The ``coalmine/router`` metric plug-in: the embedded router's own per-version measurements.

Configuration (under ``provider.plugin.coalmine/router``): ``query`` (error-rate, availability,
latency, request-rate, requests), ``version`` (stable, canary or baseline: a number as ``result``;
without it ``result`` is ``{canary: x, stable: y}``, plus ``baseline: z`` when the router has a
baseline cohort), ``quantile`` for latency (default 0.99), ``window`` (default 1m) and
``minRequests`` (default 20). Fewer requests than ``minRequests`` in the window is no data: the
measurement is Inconclusive, never Successful.

Without ``version``, the baseline's request count makes the measurement Inconclusive only when a
condition mentions ``baseline``; otherwise a baseline short of data is ``null`` in ``result`` and
does not hold up templates that compare the canary with stable (e.g. during header-route steps,
when the baseline gets no traffic).
"""

from __future__ import annotations

import re
from typing import Any

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration, parse_duration
from coalmine.errors import CoalmineError
from coalmine.metrics.base import MeasureContext
from coalmine.spec.model import Metric
from coalmine.traffic.base import Stats, TrafficRouter, VersionStats

QUERIES = ("error-rate", "availability", "latency", "request-rate", "requests")
BASELINE = "baseline"
_MENTIONS_BASELINE = re.compile(r"\bbaseline\b")


def quantile_key(q: float) -> str:
    """0.99 -> "p99", 0.999 -> "p99.9", 0.5 -> "p50"."""
    return "p" + f"{q * 100:.6f}".rstrip("0").rstrip(".")


class RouterMetrics:
    def __init__(self, router: TrafficRouter) -> None:
        self.router = router

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        config = metric.provider_config
        query = str(config.get("query", ""))
        quantile = float(config.get("quantile", 0.99))
        window = parse_duration(config.get("window", "1m")) / context.time_scale
        min_requests = int(config.get("minRequests", 20))
        version = config.get("version")
        conditions = f"{metric.success_condition or ''} {metric.failure_condition or ''}"
        try:
            stats = await self.router.stats(window, (quantile,))
        except CoalmineError as err:
            return ProviderResult(phase=Phase.ERROR, message=err.one_line())
        # only when it matters, and positionally: callers (replay's tests) wrap evaluate(*args)
        if BASELINE in stats.versions and not version:
            need_baseline = _MENTIONS_BASELINE.search(conditions) is not None
            return evaluate(stats, query, quantile, min_requests, version, need_baseline)
        return evaluate(stats, query, quantile, min_requests, version)


def evaluate(
    stats: Stats,
    query: str,
    quantile: float,
    min_requests: int,
    version: str | None,
    need_baseline: bool = True,
) -> ProviderResult:
    """Turn the router's window into ``result``: a number, or ``{canary, stable[, baseline]}``.

    ``need_baseline``: without ``version``, a baseline with too few requests makes the whole
    measurement Inconclusive (otherwise its value is just None)."""
    has_baseline = BASELINE in stats.versions  # the router reports it only when configured
    if version == BASELINE and not has_baseline:
        return ProviderResult(
            phase=Phase.ERROR,
            message="version: baseline, but the router has no baseline cohort "
            "(add baseline: {url: ...} to the service in coalmine.yaml)",
        )
    if version:
        versions: tuple[str, ...] = (version,)
    else:
        versions = ("canary", "stable", BASELINE) if has_baseline else ("canary", "stable")
    details: dict[str, Any] = {"window_s": round(stats.window_s, 3), "query": query}
    values: dict[str, float | None] = {}
    short: list[str] = []
    for name in versions:
        vs = stats.versions.get(name, VersionStats())
        details[name] = {
            "requests": vs.requests,
            "errors": vs.errors,
            "latency_ms": vs.latency_ms,
            "request_rate": vs.request_rate,
        }
        if query not in ("requests", "request-rate") and vs.requests < min_requests:
            values[name] = None
            if name == BASELINE and not version and not need_baseline:
                continue  # nobody looks at it: None in result, not a reason to wait
            short.append(
                f"{name} had {vs.requests} requests in the last "
                f"{format_duration(stats.window_s)}, need {min_requests}"
            )
            continue
        values[name] = _value(vs, query, quantile)
    if short:
        return ProviderResult(
            value=None,
            phase=Phase.INCONCLUSIVE,
            message="no data: " + "; ".join(short),
            details=details,
        )
    result: Any = values[version] if version else values
    return ProviderResult(value=result, details=details)


def _value(vs: VersionStats, query: str, quantile: float) -> float | None:
    if query == "requests":
        return float(vs.requests)
    if query == "request-rate":
        return vs.request_rate
    if query == "error-rate":
        return vs.error_rate
    if query == "availability":
        return None if vs.error_rate is None else 1.0 - vs.error_rate
    if query == "latency":
        return vs.latency_ms.get(quantile_key(quantile))
    raise ValueError(f"unknown router query {query!r}")

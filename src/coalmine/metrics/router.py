"""The ``coalmine/router`` metric plug-in: the embedded router's own per-version measurements.

Configuration (under ``provider.plugin.coalmine/router``): ``query`` (error-rate, availability,
latency, request-rate, requests), ``version`` (stable or canary: a number as ``result``; without
it ``result`` is ``{canary: x, stable: y}``), ``quantile`` for latency (default 0.99), ``window``
(default 1m) and ``minRequests`` (default 20). Fewer requests than ``minRequests`` in the window
is no data: the measurement is Inconclusive, never Successful.
"""

from __future__ import annotations

from typing import Any

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration, parse_duration
from coalmine.errors import CoalmineError
from coalmine.metrics.base import MeasureContext
from coalmine.spec.model import Metric
from coalmine.traffic.base import Stats, TrafficRouter, VersionStats

QUERIES = ("error-rate", "availability", "latency", "request-rate", "requests")


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
        try:
            stats = await self.router.stats(window, (quantile,))
        except CoalmineError as err:
            return ProviderResult(phase=Phase.ERROR, message=err.one_line())
        return evaluate(stats, query, quantile, min_requests, version)


def evaluate(
    stats: Stats, query: str, quantile: float, min_requests: int, version: str | None
) -> ProviderResult:
    """Turn the router's window into ``result``: a number, or ``{canary, stable}``."""
    versions = (version,) if version else ("canary", "stable")
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
            short.append(
                f"{name} had {vs.requests} requests in the last "
                f"{format_duration(stats.window_s)}, need {min_requests}"
            )
            values[name] = None
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

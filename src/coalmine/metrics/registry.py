"""Which provider measures a metric."""

from __future__ import annotations

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics.base import MeasureContext, MetricProvider
from coalmine.metrics.probe import ProbeMetrics, ProbeResults
from coalmine.metrics.prometheus import PrometheusMetrics
from coalmine.metrics.router import RouterMetrics
from coalmine.metrics.web import WebMetrics
from coalmine.spec.model import Metric
from coalmine.traffic.base import TrafficRouter
from coalmine.traffic.client import RouterClient


class _Unsupported:
    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        return ProviderResult(
            phase=Phase.ERROR,
            message=f"provider {metric.provider_name!r} is not supported yet",
        )


class Providers:
    """The providers available to one service's rollout."""

    def __init__(
        self,
        router: TrafficRouter,
        *,
        prometheus: MetricProvider | None = None,
        web: MetricProvider | None = None,
        probes: ProbeResults | None = None,
    ) -> None:
        self._by_name: dict[str, MetricProvider] = {
            "coalmine/router": RouterMetrics(router),
            "prometheus": prometheus or PrometheusMetrics(),
            "web": web or WebMetrics(),
            "coalmine/probe": ProbeMetrics(probes),
        }
        if isinstance(router, RouterClient):
            from coalmine.metrics.judge import LiveJudgeMetrics, RouterRequests

            # Requests from the router; gauge metrics from Prometheus, through the same client
            # as the prometheus provider (so an injected transport serves both).
            client = prometheus if isinstance(prometheus, PrometheusMetrics) else None
            self._by_name["coalmine/judge"] = LiveJudgeMetrics(RouterRequests(router), client)

    def for_metric(self, metric: Metric) -> MetricProvider:
        return self._by_name.get(metric.provider_name, _Unsupported())

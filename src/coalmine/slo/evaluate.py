"""``SloEvaluator``: collect an SLO's new observations into buckets, then run the engine.

The CLI uses it now and the controller at every step::

    evaluator = SloEvaluator(SloBucketStore(store.engine), probe_db=store.engine)
    result = await evaluator.refresh(slo, now)        # collect, then evaluate
    result = evaluator.evaluate(slo, now)             # stored buckets only
    tier = release_tier(result.budget.remaining, slo.release)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
from sqlalchemy.engine import Engine

from coalmine.slo import collect
from coalmine.slo.engine import CURRENT_WINDOW_S, SloResult, evaluate
from coalmine.slo.policy import Tier, release_tier
from coalmine.slo.spec import ProbeSource, PrometheusSource, RouterSource, Slo
from coalmine.slo.store import SloBucketStore


class SloEvaluator:
    """``router_admin(service)`` gives a service's router admin address (coalmine.yaml);
    ``probe_db`` is the database that holds ``probe_runs`` (usually the state store's)."""

    def __init__(
        self,
        buckets: SloBucketStore,
        *,
        probe_db: Engine | None = None,
        router_admin: Callable[[str], str | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        current_window_s: float = CURRENT_WINDOW_S,
    ) -> None:
        self.buckets = buckets
        self.probe_db = probe_db
        self.router_admin = router_admin or (lambda _service: None)
        self.transport = transport
        self.current_window_s = current_window_s

    def evaluate(self, slo: Slo, now: float, *, traffic_per_s: float | None = None) -> SloResult:
        """The engine's result on the stored buckets of the SLO period."""
        start, _ = slo.window.period(now)
        buckets = self.buckets.read(slo.name, start - slo.unit_s, now)
        return evaluate(
            slo,
            buckets,
            now,
            # missing data before the first bucket ever stored is not counted (missingData: bad)
            observed_from=self.buckets.first_start(slo.name) or now,
            traffic_per_s=traffic_per_s,
            current_window_s=self.current_window_s,
        )

    async def collect(self, slo: Slo, now: float) -> list[str]:
        """Bring the SLO's buckets up to ``now``; returns notes on what could not be read."""
        source = slo.sli.source
        period_start, _ = slo.window.period(now)
        if isinstance(source, RouterSource):
            admin = self.router_admin(slo.service)
            got = await collect.collect_router_at(slo, source, admin, self.buckets, now)
        elif isinstance(source, ProbeSource):
            if self.probe_db is None:
                return [f"{slo.name}: no database with probe results"]
            since = self.buckets.cursor(slo.name, "probe") or period_start
            got = collect.collect_probes(slo, source, self.probe_db, self.buckets, since, now)
        else:
            assert isinstance(source, PrometheusSource)
            since = self.buckets.cursor(slo.name, "prometheus") or period_start
            got = await collect.collect_prometheus(
                slo, source, self.buckets, since, now, self.transport
            )
        return got.notes

    async def refresh(self, slo: Slo, now: float) -> SloResult:
        """Collect, then evaluate; collection notes join the result's notes."""
        notes = await self.collect(slo, now)
        result = self.evaluate(slo, now)
        if notes:
            result = dataclasses.replace(result, notes=(*notes, *result.notes))
        return result

    def tier(self, slo: Slo, result: SloResult) -> Tier:
        return release_tier(result.budget.remaining, slo.release)

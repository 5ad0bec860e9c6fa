"""``SloEvaluator``: collect an SLO's new observations into buckets, then run the engine.

The CLI uses it now and the controller at every step::

    evaluator = SloEvaluator(SloBucketStore(store.engine), probe_db=store.engine)
    result = await evaluator.refresh(slo, now)        # collect, then evaluate
    result = evaluator.evaluate(slo, now)             # stored buckets only
    tier = evaluation_tier(result, slo.release)

A source that cannot be read is not a note only: ``refresh`` puts it in the result's
``collection_failures`` (the result is ``stale``), and the tier is then at least ``cautious``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy.engine import Engine

from coalmine.slo import collect
from coalmine.slo.engine import CURRENT_WINDOW_S, CollectionFailure, SloResult, evaluate
from coalmine.slo.policy import Tier, evaluation_tier
from coalmine.slo.spec import ProbeSource, PrometheusSource, RouterSource, Slo
from coalmine.slo.store import SloBucketStore
from coalmine.store.sql import redact


@dataclass(frozen=True)
class Collection:
    """What one collection noted for a person, and ``failure`` when the source could not be
    read at all (or only partly: the data stops before now)."""

    notes: tuple[str, ...] = ()
    failure: CollectionFailure | None = None

    @classmethod
    def of(cls, source: str, got: collect.Collected) -> Collection:
        failure = None if got.failure is None else CollectionFailure(source, redact(got.failure))
        return cls(tuple(got.notes), failure)


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

    async def collect(self, slo: Slo, now: float) -> Collection:
        """Bring the SLO's buckets up to ``now``; says what could not be read."""
        source = slo.sli.source
        period_start, _ = slo.window.period(now)
        if isinstance(source, RouterSource):
            admin = self.router_admin(slo.service)
            got = await collect.collect_router_at(slo, source, admin, self.buckets, now)
            return Collection.of("router", got)
        if isinstance(source, ProbeSource):
            if self.probe_db is None:
                return Collection(
                    failure=CollectionFailure("probe", "no database with probe results")
                )
            since = self.buckets.cursor(slo.name, "probe") or period_start
            got = collect.collect_probes(slo, source, self.probe_db, self.buckets, since, now)
            return Collection.of("probe", got)
        assert isinstance(source, PrometheusSource)
        since = self.buckets.cursor(slo.name, "prometheus") or period_start
        got = await collect.collect_prometheus(
            slo, source, self.buckets, since, now, self.transport
        )
        return Collection.of("prometheus", got)

    async def refresh(self, slo: Slo, now: float) -> SloResult:
        """Collect, then evaluate: collection notes join the result's notes, and a source that
        could not be read makes the result stale (``collection_failures``)."""
        got = await self.collect(slo, now)
        result = self.evaluate(slo, now)
        return dataclasses.replace(
            result,
            notes=(*got.notes, *result.notes),
            collection_failures=() if got.failure is None else (got.failure,),
        )

    def tier(self, slo: Slo, result: SloResult) -> Tier:
        return evaluation_tier(result, slo.release)

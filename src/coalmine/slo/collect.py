"""Collectors that turn raw observations into SLO buckets (the I/O edge of the SLO engine).

* probe results: the ``probe_runs`` table; a run is good when it finally succeeded. The runs
  of the SLI's environment count when their flow is bound to the SLO (``slo``) or listed in
  ``flows``; canary-pinned runs do not (see :func:`collect_probes`). Recomputed over a
  look-back (late-written runs land), written with ``put`` so that re-running is harmless.
* router: the embedded router's ``/admin/records`` (``t, version, latency_ms, status``); good is
  not a 5xx (availability) and, for latency, ``latency_ms <= threshold`` as well. Every record is
  read once: counts and the cursor move together.
* Prometheus: a range query of the good and total templates over one bucket per step
  (``increase`` over the resolution), written with ``put``.

Every collector returns the buckets it wrote and human notes on what it could not read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from coalmine.errors import CoalmineError
from coalmine.probes.store import probe_runs
from coalmine.slo.engine import Bucket
from coalmine.slo.spec import ProbeSource, PrometheusSource, RouterSource, Slo, prom_duration
from coalmine.slo.store import SloBucketStore
from coalmine.traffic.client import RouterClient, whole_records_page

PROBE_LOOKBACK_S = 600.0  # probe runs are written when they end: re-read the last 10 minutes
ROUTER_PAGE = 10_000
PROM_MAX_POINTS = 10_000
PROM_TIMEOUT_S = 30.0


@dataclass
class Collected:
    buckets: int = 0
    events: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Why the source could not be read (or stopped answering part-way): the data is stale.
    failure: str | None = None


def bucket_of(t: float, resolution: float) -> float:
    return math.floor(t / resolution + 1e-9) * resolution


def classify(record: dict[str, Any], slo: Slo) -> bool:
    """Whether one router record is a good event for ``slo``."""
    if int(record["status"]) >= 500:
        return False
    threshold = slo.sli.threshold_ms
    if slo.sli.type == "latency" and threshold is not None:
        return float(record["latency_ms"]) <= threshold
    return True


def to_buckets(events: Iterable[tuple[float, bool]], resolution: float) -> list[Bucket]:
    """Count ``(time, good)`` events into buckets."""
    counts: dict[float, list[float]] = {}
    for t, good in events:
        slot = counts.setdefault(bucket_of(t, resolution), [0.0, 0.0])
        slot[0] += 1.0 if good else 0.0
        slot[1] += 1.0
    return [Bucket(start, g, n) for start, (g, n) in sorted(counts.items())]


# --------------------------------------------------------------------------- probes


def collect_probes(
    slo: Slo, source: ProbeSource, db: Engine, store: SloBucketStore, since: float, now: float
) -> Collected:
    """Recompute the buckets of ``[since - look-back, end)`` from ``probe_runs``.

    Counted: runs in ``source.environment`` bound to this SLO or of a flow in ``source.flows``,
    unpinned or pinned to stable. Canary-pinned runs are left out: they probe a version that
    real users barely see, the judge scores them (``coalmine/probe``) and rolls a bad canary
    back, and what users do suffer from it is counted by the router's SLI."""
    res = slo.resolution_s
    start = bucket_of(max(since - PROBE_LOOKBACK_S, 0.0), res)
    end = bucket_of(now, res)
    out = Collected()
    if end <= start:
        return out
    c = probe_runs.c
    bound = c.slo == slo.name
    query = sa.select(c.started_at, c.success).where(
        sa.or_(bound, c.flow.in_(source.flows)) if source.flows else bound,
        c.environment == source.environment,
        sa.or_(c.version.is_(None), c.version != "canary"),
        c.started_at >= start,
        c.started_at < end,
    )
    try:
        with db.connect() as conn:
            rows: list[Any] = list(conn.execute(query).all())
    except exc.DBAPIError as err:
        out.failure = f"probe results unreadable ({type(err.orig or err).__name__}): no data"
        return out
    buckets = to_buckets(((float(t), bool(ok)) for t, ok in rows), res)
    out.buckets = store.put(slo.name, buckets)
    out.events = float(len(rows))
    store.set_cursor(slo.name, "probe", end, now)
    if not rows:
        out.notes.append(f"no {source.describe_runs(slo.name)} between the last collection and now")
    return out


# --------------------------------------------------------------------------- router


async def collect_router(
    slo: Slo, client: Any, store: SloBucketStore, since: float, now: float
) -> Collected:
    """Read every record with ``t > since`` once; add them to buckets, move the cursor."""
    out = Collected()
    position = since
    events: list[tuple[float, bool]] = []
    while True:
        page, full = await whole_records_page(client, position, ROUTER_PAGE)
        for record in page:
            events.append((float(record["t"]), classify(record, slo)))
            position = float(record["t"])
        if not full:
            break
    out.buckets = store.add_with_cursor(
        slo.name, "router", to_buckets(events, slo.resolution_s), position, now
    )
    out.events = float(len(events))
    return out


async def collect_router_at(
    slo: Slo, source: RouterSource, admin: str | None, store: SloBucketStore, now: float
) -> Collected:
    """Connect to the router's admin API and collect from the stored cursor on."""
    address = source.admin or admin
    if address is None:
        return Collected(failure="no router admin address (set sli.admin)")
    since = store.cursor(slo.name, "router")
    if since is None:
        since = now - 900.0  # what a router keeps by default
    try:
        async with RouterClient(address) as client:
            return await collect_router(slo, client, store, since, now)
    except CoalmineError as err:
        return Collected(failure=f"router {address}: {err.message}; no new data")


# --------------------------------------------------------------------------- prometheus


def _stamp(t: float) -> str:
    return f"{t:.3f}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _range(
    http: httpx.AsyncClient, address: str, query: str, start: float, end: float, step: float
) -> dict[float, float]:
    """``{evaluation time: value}`` of a query that returns one series (or none)."""
    from coalmine.metrics.prometheus import redact_url

    url = address.rstrip("/") + "/api/v1/query_range"
    form = {"query": query, "start": _stamp(start), "end": _stamp(end), "step": _stamp(step)}
    shown = redact_url(address.rstrip("/"), keep_query=False)
    try:
        response = await http.post(url, data=form)
    except httpx.HTTPError as err:
        raise CoalmineError(f"Prometheus {shown} unreachable ({type(err).__name__})") from None
    try:
        body = response.json()
    except ValueError:
        raise CoalmineError(f"Prometheus {shown} answered {response.status_code}") from None
    if body.get("status") != "success":
        raise CoalmineError(f"Prometheus {shown}: {body.get('error', 'query failed')}")
    series = body["data"]["result"]
    if len(series) > 1:
        raise CoalmineError(
            f"Prometheus {shown}: the query returned {len(series)} series, expected one",
            hint="wrap it in sum(...)",
        )
    out: dict[float, float] = {}
    for t, value in series[0]["values"] if series else []:
        number = float(value)
        if math.isfinite(number):
            out[float(t)] = number
    return out


async def collect_prometheus(
    slo: Slo,
    source: PrometheusSource,
    store: SloBucketStore,
    since: float,
    now: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Collected:
    """Buckets ``[since, end)``: the value at ``t`` of ``increase`` over one resolution is the
    bucket that starts at ``t - resolution``."""
    res = slo.resolution_s
    first = bucket_of(since, res) + res
    last = bucket_of(now, res)
    out = Collected()
    if last < first:
        return out
    window = prom_duration(res)
    good_q, total_q = source.good_query(window), source.total_query(window)
    buckets: list[Bucket] = []
    async with httpx.AsyncClient(timeout=PROM_TIMEOUT_S, transport=transport) as http:
        t = first
        while t <= last:
            stop = min(last, t + (PROM_MAX_POINTS - 1) * res)
            try:
                good = await _range(http, source.address, good_q, t, stop, res)
                total = await _range(http, source.address, total_q, t, stop, res)
            except CoalmineError as err:
                out.failure = f"{err.message}; no data after {_iso(t - res)}"
                break
            for at, n in sorted(total.items()):
                g = good.get(at)
                if g is None:
                    out.notes.append(
                        f"{slo.name}: Prometheus has a total but no good count at {_iso(at)}"
                    )
                    continue
                buckets.append(Bucket(at - res, max(0.0, min(g, n)), max(0.0, n)))
            t = stop + res
    out.buckets = store.put(slo.name, buckets)
    out.events = sum(b.total for b in buckets)
    if buckets:
        store.set_cursor(slo.name, "prometheus", max(b.start for b in buckets), now)
    return out

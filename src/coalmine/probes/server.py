"""The HTTP side of ``coalmine probes serve``: ``/metrics``, ``/healthz``, ``/results``, ``/sli``.

``serve()`` wires everything: the scheduler, the sinks (metrics, recent results in memory, the
store when there is one, and the caller's), the HTTP server, and the pruning of old results;
it returns when ``stop_event`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from coalmine.clock import Clock, SystemClock
from coalmine.probes.metrics import ProbeMetricsCollector, probe_registry
from coalmine.probes.model import Flow
from coalmine.probes.scheduler import (
    DEFAULT_HEALTH_WINDOW,
    RunFlow,
    Scheduler,
    SchedulerStats,
    plan_targets,
)
from coalmine.probes.sinks import MemorySink, MetricsSink, ResultSink, StoreSink
from coalmine.probes.store import ProbeStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 9116  # blackbox_exporter's 9115 plus one: both can run on one host
DEFAULT_RETENTION_S = 7 * 86_400.0
PRUNE_EVERY_S = 3600.0
MAX_RESULTS = 1000


@dataclass
class ProbeService:
    """The aiohttp application over a scheduler, its metrics and its results."""

    scheduler: Scheduler
    collector: ProbeMetricsCollector
    store: ProbeStore | None = None
    memory: MemorySink | None = None

    def __post_init__(self) -> None:
        self.registry = probe_registry(
            self.collector, self.scheduler.stats, self.scheduler.sink.failures
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/results", self._results)
        app.router.add_get("/sli", self._sli)
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, sock: socket.socket | None = None
    ) -> str:
        """Listen on ``sock`` when given (see :func:`listen_socket`), else on ``host:port``
        (0: any free port); returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site: web.BaseSite
        if sock is not None:
            host = str(sock.getsockname()[0])
            site = web.SockSite(self._runner, sock)
        else:
            site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # handlers

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = self.scheduler.health()
        body["status"] = "ok" if ok else "unhealthy"
        return web.json_response(body, status=200 if ok else 503)

    async def _sli(self, request: web.Request) -> web.Response:
        body = self.scheduler.stats.as_dict()
        body["definition"] = (
            "scheduled runs started on time / scheduled runs; on time: started at most "
            "max(1 s, 10% of the interval) after the due time (slot + jitter)"
        )
        return web.json_response(body)

    async def _results(self, request: web.Request) -> web.Response:
        flow = request.query.get("flow") or None
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        if not 0 < limit <= MAX_RESULTS:
            return web.json_response(
                {"error": f"limit must be between 1 and {MAX_RESULTS}"}, status=400
            )
        if self.store is not None:
            try:
                results = await asyncio.to_thread(self.store.recent, flow, limit)
            except Exception as err:  # a StoreError's message is already redacted
                return web.json_response({"error": str(err)}, status=503)
            return web.json_response({"source": "store", "results": results})
        memory = self.memory.recent(flow, limit) if self.memory is not None else []
        return web.json_response({"source": "memory", "results": memory})


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError says what is wrong."""
    if text.startswith("[") and "]:" not in text:
        raise ValueError("expected [IPv6]:PORT, e.g. [::1]:9116")
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9116")
    if host.startswith("[") and host.endswith("]") and len(host) > 2:
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError("an IPv6 address goes in brackets, e.g. [::1]:9116")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port!r}")
    return host, int(port)


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), for :func:`serve`. Binding
    before anything starts makes a bad or busy address fail first. Raises OSError
    (``socket.gaierror`` when ``host`` does not resolve)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    flows: Sequence[Flow],
    environment: str,
    *,
    run: RunFlow,
    stop_event: asyncio.Event,
    sinks: Sequence[ResultSink] = (),
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    concurrency: int = 16,
    store: ProbeStore | None = None,
    location: str | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    grace_s: float = 1.0,
    drain_s: float = 10.0,
    retention_s: float | None = DEFAULT_RETENTION_S,
    health_window: int = DEFAULT_HEALTH_WINDOW,
    min_tolerance_s: float = 1.0,
    spread_start: bool = True,
    on_ready: Callable[[str], None] | None = None,
    sock: socket.socket | None = None,
) -> SchedulerStats:
    """Run every flow of ``environment`` on its schedule until ``stop_event`` is set.

    Results go to ``/metrics``, to ``/results`` (the store's ``probe_runs`` when ``store`` is
    given, else the last 200 in memory) and to ``sinks``; the schedule is saved in ``store``
    so a restart resumes it. ``on_ready(url)`` is called once the HTTP server listens (on
    ``sock`` when given, else ``host:port``). Returns the scheduler's SLI counters. Raises
    SpecError for a flow without ``environment``, or when nothing would be scheduled.
    """
    targets = plan_targets(flows, environment, location)
    collector = ProbeMetricsCollector()
    memory = MemorySink()
    all_sinks: list[ResultSink] = [MetricsSink(collector), memory]
    if store is not None:
        all_sinks.append(StoreSink(store))
    all_sinks.extend(sinks)
    clock = clock or SystemClock()
    scheduler = Scheduler(
        targets,
        run,
        all_sinks,
        clock=clock,
        rng=rng,
        max_concurrency=concurrency,
        state=store,
        grace_s=grace_s,
        min_tolerance_s=min_tolerance_s,
        spread_start=spread_start,
        health_window=health_window,
    )
    service = ProbeService(scheduler, collector, store=store, memory=memory)
    url = await service.start(host, port, sock)
    pruner: asyncio.Task[None] | None = None
    try:
        await scheduler.start()
        if store is not None and retention_s:
            pruner = asyncio.create_task(_prune(store, clock, retention_s))
        log.info("probes: %d target(s), serving on %s", len(targets), url)
        if on_ready is not None:
            on_ready(url)
        await stop_event.wait()
    finally:
        if pruner is not None:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        await scheduler.stop(drain_s)
        await service.stop()
    return scheduler.stats


async def _prune(store: ProbeStore, clock: Clock, retention_s: float) -> None:
    while True:
        try:
            deleted = await asyncio.to_thread(store.prune, clock.now() - retention_s)
            if deleted:
                log.info("probes: pruned %d result(s) older than %g s", deleted, retention_s)
        except Exception as err:  # StoreError: already redacted
            log.warning("probes: cannot prune old results: %s", err)
        await asyncio.sleep(PRUNE_EVERY_S)

"""The embedded router: an aiohttp reverse proxy for users' traffic plus a loopback admin app.

Upstreams: stable and canary, plus the optional baseline (``ServiceConfig.baseline``), a fresh
copy of stable that gets the same share of tenants as the canary.

The routing document lives in one attribute that is replaced, never mutated: every request reads
it once, so a weight change is atomic and a rollback is one flip. Latency is measured from the
request's arrival to the end of the response body (what the user waited for). Upstream failures
are answered by the router and counted against the version that failed: connection refused,
reset or connect timeout -> 502, no complete answer within ``request_timeout`` -> 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from coalmine.errors import RouterError
from coalmine.spec.model import HeaderMatch, ServiceConfig
from coalmine.traffic.assign import BASELINE, VERSIONS, choose_version, compile_routes
from coalmine.traffic.base import HeaderRoute, Routing
from coalmine.traffic.window import MeasurementWindow, status_class

log = logging.getLogger("coalmine.router")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
    )
)
VERSION_HEADER = "X-Coalmine-Version"
BUFFER_LIMIT = 256 * 1024  # answers with a known length up to this size are sent in one write
CHUNK = 64 * 1024
DRAIN_TIMEOUT = 1.0  # a PUT that lowers the canary's share waits this long for in-flight sends
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) -> ``(host, port)``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RouterError(f"invalid address {address!r}", hint="use host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


# --------------------------------------------------------------------------- routing documents


def parse_routing(data: Any) -> Routing:
    """Validate a routing document from the admin API; ``ValueError`` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the routing document must be a JSON object")
    weight = data.get("canary_weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValueError(f"canary_weight must be an integer from 0 to 100, got {weight!r}")
    generation = data.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation must be a non-negative integer, got {generation!r}")
    raw_routes = data.get("header_routes", [])
    if not isinstance(raw_routes, list):
        raise ValueError("header_routes must be a list")
    routes = []
    for i, raw in enumerate(raw_routes):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ValueError(f"header_routes[{i}] must be an object with a string name")
        matches = raw.get("matches", [])
        if not isinstance(matches, list):
            raise ValueError(f"header_routes[{i}].matches must be a list")
        parsed = []
        for j, m in enumerate(matches):
            fields = ("header_name", "kind", "value")
            if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in fields):
                raise ValueError(
                    f"header_routes[{i}].matches[{j}] needs string header_name, kind and value"
                )
            parsed.append(HeaderMatch(m["header_name"], m["kind"], m["value"]))
        routes.append(HeaderRoute(raw["name"], tuple(parsed)))
    routing = Routing(canary_weight=weight, header_routes=tuple(routes), generation=generation)
    compile_routes(routing)  # rejects unknown kinds and invalid regular expressions
    return routing


def load_state(path: str, service: str) -> Routing | None:
    """The routing last written to ``path``, or None when there is none (or it is unusable)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("service") not in (None, service):
            log.warning("state file %s belongs to service %r; ignored", path, data.get("service"))
            return None
        return parse_routing(data["routing"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning(
            "state file %s is unusable (%s); starting with all traffic on stable", path, err
        )
        return None


def save_state(path: str, service: str, routing: Routing) -> None:
    """Write atomically: a temporary file in the same directory, fsync, rename, fsync the dir."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    body = json.dumps({"service": service, "routing": routing.to_dict()}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=".routing-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- metrics


class RouterMetrics:
    """Prometheus metrics in their own registry (several routers can live in one process)."""

    def __init__(self, service: str, versions: tuple[str, ...] = VERSIONS) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.requests = Counter(
            "coalmine_router_requests",
            "Requests answered, by version and status class.",
            ("service", "version", "code_class"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "coalmine_router_request_duration_seconds",
            "Time from request arrival to the end of the response body.",
            ("service", "version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            "coalmine_router_canary_weight",
            "Share of tenants sent to the canary (0..100).",
            ("service",),
            registry=self.registry,
        )
        self.generation = Gauge(
            "coalmine_router_routing_generation",
            "Generation of the routing document being served.",
            ("service",),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "coalmine_router_upstream_errors",
            "Upstream failures answered by the router (502/504).",
            ("service", "version", "reason"),
            registry=self.registry,
        )
        self._requests = {
            (v, c): self.requests.labels(service, v, c)
            for v in versions
            for c in ("1xx", "2xx", "3xx", "4xx", "5xx")
        }
        self._duration = {v: self.duration.labels(service, v) for v in versions}
        for v in versions:  # expose zeros from the start
            for reason in ("refused", "timeout", "reset"):
                self.upstream_errors.labels(service, v, reason)

    def observe(self, version: str, status: int, seconds: float) -> None:
        self._requests[(version, status_class(status))].inc()
        self._duration[version].observe(seconds)

    def set_routing(self, routing: Routing) -> None:
        self.weight.labels(self.service).set(routing.canary_weight)
        self.generation.labels(self.service).set(routing.generation)


# --------------------------------------------------------------------------- the server


class _UserGone(Exception):
    """Writing the answer to the user failed: they hung up."""


async def _to_user(write: Awaitable[Any]) -> None:
    try:
        await write
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        raise _UserGone from None


class _UpstreamFailure(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def _classify(err: BaseException) -> _UpstreamFailure:
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return _UpstreamFailure(502, "timeout", "connect timeout")
    if isinstance(err, TimeoutError):
        return _UpstreamFailure(504, "timeout", "no answer within the request timeout")
    if isinstance(err, aiohttp.ClientConnectorError):
        return _UpstreamFailure(502, "refused", f"unreachable ({err.os_error.strerror or err})")
    return _UpstreamFailure(502, "reset", f"connection failed ({type(err).__name__})")


class RouterServer:
    """Proxy on ``service.router.listen``, admin API on ``service.router.admin``."""

    def __init__(
        self,
        service: ServiceConfig,
        *,
        now: Callable[[], float] = time.time,
        window: MeasurementWindow | None = None,
    ) -> None:
        self.service = service
        self.settings = service.router
        self.now = now
        self._upstreams = {
            "stable": service.stable.url.rstrip("/"),
            "canary": service.canary.url.rstrip("/"),
        }
        if service.baseline is not None:
            self._upstreams[BASELINE] = service.baseline.url.rstrip("/")
        self.versions = tuple(self._upstreams)  # stable, canary[, baseline]
        self.window = window or MeasurementWindow(now=now, versions=self.versions)
        for version in self.versions:  # a window passed in may not know the baseline yet
            self.window.add_version(version)
        self.metrics = RouterMetrics(service.name, self.versions)
        self._routing = Routing()
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}
        self._canary_in_flight: set[asyncio.Future[None]] = set()
        self._persist_lock = asyncio.Lock()
        self._timeout = aiohttp.ClientTimeout(
            total=self.settings.request_timeout, sock_connect=self.settings.connect_timeout
        )

    # ---------------------------------------------------------------- lifecycle

    @property
    def routing(self) -> Routing:
        return self._routing

    @property
    def listen_port(self) -> int:
        return self._ports["listen"]

    @property
    def admin_port(self) -> int:
        return self._ports["admin"]

    async def start(self) -> None:
        if self.settings.state_file:
            loaded = load_state(self.settings.state_file, self.service.name)
            if loaded is not None:
                self._routing = loaded
        self.metrics.set_routing(self._routing)
        for version in self.versions:
            self._sessions[version] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=60),
                timeout=self._timeout,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        try:
            await self._serve("admin", self._admin_app(), self.settings.admin)
            await self._serve("listen", self._proxy_app(), self.settings.listen)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "router for %s: traffic on port %d, admin on port %d, canary weight %d",
            self.service.name,
            self.listen_port,
            self.admin_port,
            self._routing.canary_weight,
        )

    async def _serve(self, name: str, app: web.Application, address: str) -> None:
        host, port = split_address(address)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            what = "admin" if name == "admin" else "listen"
            reason = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror
            raise RouterError(
                f"cannot listen on {address} (router.{what}): {reason}",
                hint=f"stop whatever holds {address} or change router.{what} in coalmine.yaml",
            ) from None
        self._ports[name] = runner.addresses[0][1]

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    # ---------------------------------------------------------------- routing changes

    async def apply(self, routing: Routing) -> Routing:
        """Serve ``routing`` from now on; ``RouterError`` if its generation is stale."""
        current = self._routing
        if routing.generation < current.generation:
            raise RouterError(
                f"stale generation {routing.generation}: the router serves generation "
                f"{current.generation}"
            )
        if routing == current:
            return current
        self._routing = routing  # the flip: every later request reads the new document
        self.metrics.set_routing(routing)
        log.info(
            "routing generation %d: canary weight %d, %d header route(s)",
            routing.generation,
            routing.canary_weight,
            len(routing.header_routes),
        )
        if (
            routing.canary_weight < current.canary_weight
            or routing.header_routes != current.header_routes
        ):
            await self._drain_canary()
        if self.settings.state_file:
            async with self._persist_lock:
                latest = self._routing
                await asyncio.to_thread(
                    save_state, self.settings.state_file, self.service.name, latest
                )
        return routing

    async def _drain_canary(self) -> None:
        """Wait (briefly) until requests already sent towards the canary (or the baseline) have
        reached it, so that once a rollback returns no request decided under the old routing is
        still on its way."""
        pending = list(self._canary_in_flight)
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)

    # ---------------------------------------------------------------- proxy

    def _proxy_app(self) -> web.Application:
        app = web.Application(client_max_size=0, handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        return app

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        connection_tokens = {
            t.strip().lower()
            for t in request.headers.getall("Connection", ())
            for t in t.split(",")
        }
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens or lower.startswith("proxy-"):
                continue
            if lower.startswith("x-forwarded-"):
                continue
            headers.add(name, value)
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
        headers["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
        return headers

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        version, _ = choose_version(
            self._routing,
            self.service.tenancy,
            request.headers,
            request.cookies,
            request.remote or "",
            self.settings.override_header,
            baseline=self.service.baseline is not None,
        )
        sent: asyncio.Future[None] | None = None
        if version != "stable":  # canary or baseline: a rollback empties both, drains both
            sent = asyncio.get_running_loop().create_future()
            self._canary_in_flight.add(sent)
        try:
            response, status = await self._forward(request, version, sent)
        except _UpstreamFailure as failure:
            self.metrics.upstream_errors.labels(self.service.name, version, failure.reason).inc()
            status = failure.status
            response = web.Response(
                status=status,
                text=f"coalmine router: {version} upstream {failure.detail}\n",
                headers={VERSION_HEADER: version},
            )
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionResetError:
                pass
        finally:
            if sent is not None:
                if not sent.done():
                    sent.set_result(None)
                self._canary_in_flight.discard(sent)
        if status is not None:
            elapsed = time.perf_counter() - started
            self.window.record(version, self.now(), elapsed * 1000.0, status)
            self.metrics.observe(version, status, elapsed)
        return response

    async def _forward(
        self, request: web.Request, version: str, sent: asyncio.Future[None] | None
    ) -> tuple[web.StreamResponse, int | None]:
        """Relay the request; the status to record, or None when the user went away."""
        session = self._sessions[version]
        url = URL(self._upstreams[version] + request.raw_path, encoded=True)
        body: AsyncIterator[bytes] | None = None
        if request.body_exists:
            body = request.content.iter_chunked(CHUNK)
        out: web.StreamResponse | None = None
        try:
            async with session.request(
                request.method,
                url,
                headers=self._upstream_headers(request),
                data=body,
                allow_redirects=False,
                compress=False,
            ) as upstream:
                if sent is not None and not sent.done():
                    sent.set_result(None)
                headers: CIMultiDict[str] = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                )
                headers[VERSION_HEADER] = version
                length = upstream.content_length
                try:
                    if length is not None and length <= BUFFER_LIMIT and request.method != "HEAD":
                        # Small answers: headers and body leave in one write.
                        payload = await upstream.read()
                        headers.popall("Content-Length", None)
                        out = web.Response(
                            status=upstream.status,
                            reason=upstream.reason,
                            headers=headers,
                            body=payload,
                        )
                        await _to_user(out.prepare(request))
                    else:
                        out = web.StreamResponse(
                            status=upstream.status, reason=upstream.reason, headers=headers
                        )
                        await _to_user(out.prepare(request))
                        async for chunk in upstream.content.iter_chunked(CHUNK):
                            await _to_user(out.write(chunk))
                    await _to_user(out.write_eof())
                except _UserGone:
                    return out or web.Response(status=499), None
                return out, upstream.status
        except (aiohttp.ClientError, TimeoutError) as err:
            failure = _classify(err)
            if out is None or not out.prepared:
                raise failure from None
            # The headers are out: the user gets a truncated answer. Count it and hang up.
            self.metrics.upstream_errors.labels(self.service.name, version, failure.reason).inc()
            if request.transport is not None:
                request.transport.close()
            return out, failure.status

    # ---------------------------------------------------------------- admin

    def _admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/admin/routing", self._get_routing)
        app.router.add_put("/admin/routing", self._put_routing)
        app.router.add_get("/admin/stats", self._get_stats)
        app.router.add_get("/admin/records", self._get_records)
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    def _routing_json(self, routing: Routing) -> dict[str, Any]:
        info = {
            **routing.to_dict(),
            "service": self.service.name,
            "stable_url": self.service.stable.url,
            "canary_url": self.service.canary.url,
        }
        if self.service.baseline is not None:
            info["baseline_url"] = self.service.baseline.url
        return info

    async def _get_routing(self, request: web.Request) -> web.Response:
        return web.json_response(self._routing_json(self._routing))

    async def _put_routing(self, request: web.Request) -> web.Response:
        try:
            routing = parse_routing(await request.json())
        except json.JSONDecodeError as err:
            return _error(400, f"the body is not JSON: {err}")
        except ValueError as err:
            return _error(400, str(err))
        try:
            applied = await self.apply(routing)
        except RouterError as err:
            return _error(409, err.message, current_generation=self._routing.generation)
        except OSError as err:
            return _error(500, f"applied but not saved to the state file: {err}")
        return web.json_response(self._routing_json(applied))

    async def _get_stats(self, request: web.Request) -> web.Response:
        try:
            window_s = float(request.query.get("window", "60"))
            raw = request.query.get("quantiles", "0.5,0.99")
            quantiles = tuple(float(q) for q in raw.split(",") if q.strip())
            if window_s <= 0 or not all(0.0 <= q <= 1.0 for q in quantiles):
                raise ValueError
        except ValueError:
            return _error(400, "window must be a positive number and quantiles numbers in 0..1")
        stats = self.window.stats(window_s, quantiles)
        return web.json_response(
            {
                "window_s": stats.window_s,
                "versions": {k: asdict(v) for k, v in stats.versions.items()},
            }
        )

    async def _get_records(self, request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
            limit = int(request.query.get("limit", "10000"))
        except ValueError:
            return _error(400, "since must be a number (epoch seconds) and limit an integer")
        return web.json_response({"records": self.window.records(since, limit)})

    async def _get_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)

"""Shared pieces for the router tests: real upstream servers on loopback (no tests here)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from coalmine.spec.model import RouterSettings, ServiceConfig, Tenancy, Upstream
from coalmine.traffic.proxy import RouterServer


@dataclass
class Upstream_:
    """A test upstream that remembers every request it received."""

    name: str
    hits: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), path)
    peers: set[tuple[str, int]] = field(default_factory=set)
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((time.time(), request.path))
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername")[:2])
        if request.path == "/echo":
            body = {"headers": list(request.headers.items()), "raw_path": request.raw_path}
            return web.json_response({"name": self.name, **body})
        if request.path == "/upload":
            digest, size = hashlib.sha256(), 0
            async for chunk in request.content.iter_chunked(65536):
                digest.update(chunk)
                size += len(chunk)
            return web.json_response({"size": size, "sha256": digest.hexdigest()})
        if request.path == "/download":
            n = int(request.query.get("n", "0"))
            out = web.StreamResponse()
            out.enable_chunked_encoding()
            await out.prepare(request)
            block = bytes(range(256)) * 256  # 64 KiB
            sent = 0
            while sent < n:
                piece = block[: min(len(block), n - sent)]
                await out.write(piece)
                sent += len(piece)
            await out.write_eof()
            return out
        if request.path == "/slow":
            await asyncio.sleep(float(request.query.get("s", "1")))
        if request.path == "/status":
            return web.Response(status=int(request.query["code"]), text=self.name)
        return web.Response(text=self.name)

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def service_config(
    stable_url: str,
    canary_url: str,
    *,
    tenancy: Tenancy | None = None,
    state_file: str | None = None,
    baseline_url: str | None = None,
    **router: Any,
) -> ServiceConfig:
    settings = replace(
        RouterSettings(listen="127.0.0.1:0", admin="127.0.0.1:0", state_file=state_file), **router
    )
    return ServiceConfig(
        name="shop",
        stable=Upstream(stable_url, "v1"),
        canary=Upstream(canary_url, "v2"),
        tenancy=tenancy or Tenancy(header="X-Tenant", cookie="tenant", test_tenants=("tester",)),
        router=settings,
        baseline=Upstream(baseline_url, "v1") if baseline_url else None,
    )


@dataclass
class Rig:
    stable: Upstream_
    canary: Upstream_
    router: RouterServer
    baseline: Upstream_ | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.listen_port}"

    @property
    def admin(self) -> str:
        return f"127.0.0.1:{self.router.admin_port}"


@asynccontextmanager
async def rig(*, baseline: bool = False, **kwargs: Any) -> AsyncIterator[Rig]:
    """Two real upstreams (three with ``baseline``) and a router in front of them. Each
    upstream answers its own name, so a body says who served it."""
    stable, canary = Upstream_("stable"), Upstream_("canary")
    third = Upstream_("baseline") if baseline else None
    for upstream in (stable, canary, third):
        if upstream is not None:
            await upstream.start()
    if third is not None:
        kwargs["baseline_url"] = third.url
    router = RouterServer(service_config(stable.url, canary.url, **kwargs))
    await router.start()
    try:
        yield Rig(stable, canary, router, third)
    finally:
        await router.stop()
        for upstream in (stable, canary, third):
            if upstream is not None:
                await upstream.stop()


def dumps(data: Any) -> str:
    return json.dumps(data)

"""A real HTTP server on loopback for tests that need a peer to answer in a particular way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve_all(handle: Handler) -> AsyncIterator[str]:
    """Serve every request (any method, any path) with ``handle`` on 127.0.0.1 and a free
    port; yields the base URL, ``http://127.0.0.1:PORT``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()

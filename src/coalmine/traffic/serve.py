"""Run one service's router in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from coalmine.spec.model import ServiceConfig
from coalmine.traffic.proxy import RouterServer


async def serve(service: ServiceConfig, stop: asyncio.Event | None = None) -> None:
    """Start the router, wait for ``stop`` (or a signal), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = RouterServer(service)
    await server.start()
    routing = server.routing
    print(
        f"coalmine router for {service.name}: traffic on {service.router.listen} "
        f"(port {server.listen_port}), admin on {service.router.admin} "
        f"(port {server.admin_port}); canary weight {routing.canary_weight}, "
        f"generation {routing.generation}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    print(f"coalmine router for {service.name}: stopped", flush=True)


def run_router(service: ServiceConfig) -> None:
    """Blocking entry point; raises ``RouterError`` when a port cannot be bound."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
        )
    asyncio.run(serve(service))

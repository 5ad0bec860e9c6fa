"""The demo's sample HTTP service: one process per version, with injectable faults.

``python -m coalmine.demo.service --port 0 --version v1.2.3 --port-file /tmp/p`` serves ``GET /``,
``GET /api/items/{id}`` and ``GET /healthz``. Faults are set with ``POST /_demo/fault`` (JSON
``error_rate``, ``added_latency_ms``, ``crash``), shown by ``GET`` and cleared by ``DELETE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

VERSION_HEADER = "X-Demo-Version"
BASE_LATENCY_MS = 8.0
JITTER_MEAN_MS = 4.0
BASE_ERROR_RATE = 0.001
CRASH_EXIT_CODE = 3


@dataclass
class FaultState:
    """The fault currently injected; ``onset`` is the epoch time it was last changed."""

    error_rate: float = 0.0
    added_latency_ms: float = 0.0
    onset: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "added_latency_ms": self.added_latency_ms,
            "onset": self.onset,
        }


class _Service:
    def __init__(self, version: str, seed: int | None, on_crash: Callable[[], None] | None) -> None:
        self.version = version
        self.rng = random.Random(seed)
        self.fault = FaultState()
        self.on_crash = on_crash or (lambda: os._exit(CRASH_EXIT_CODE))

    async def _behave(self) -> bool:
        """Sleep like a real service would; return True when this request should fail."""
        delay_ms = BASE_LATENCY_MS + self.rng.expovariate(1.0 / JITTER_MEAN_MS)
        await asyncio.sleep((delay_ms + self.fault.added_latency_ms) / 1000.0)
        fail = 1.0 - (1.0 - BASE_ERROR_RATE) * (1.0 - self.fault.error_rate)
        return self.rng.random() < fail

    async def index(self, request: web.Request) -> web.Response:
        if await self._behave():
            return self._error()
        return web.json_response({"service": "coalmine-demo", "version": self.version})

    async def item(self, request: web.Request) -> web.Response:
        if await self._behave():
            return self._error()
        item_id = request.match_info["id"]
        return web.json_response(
            {"id": item_id, "name": f"item {item_id}", "price": 9.99, "version": self.version}
        )

    def _error(self) -> web.Response:
        return web.json_response({"error": "internal error", "version": self.version}, status=500)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": self.version})

    async def get_fault(self, request: web.Request) -> web.Response:
        return web.json_response(self.fault.to_json())

    async def delete_fault(self, request: web.Request) -> web.Response:
        self.fault = FaultState()
        return web.json_response(self.fault.to_json())

    async def post_fault(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _bad("the body must be JSON")
        if not isinstance(body, dict):
            return _bad("the body must be a JSON object")
        unknown = set(body) - {"error_rate", "added_latency_ms", "crash"}
        if unknown:
            return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
        rate = body.get("error_rate", self.fault.error_rate)
        latency = body.get("added_latency_ms", self.fault.added_latency_ms)
        if not _is_number(rate) or not 0.0 <= rate <= 1.0:
            return _bad("error_rate must be a number between 0 and 1")
        if not _is_number(latency) or latency < 0:
            return _bad("added_latency_ms must be a number >= 0")
        onset = time.time()
        if body.get("crash"):
            response = web.json_response({"crash": True, "onset": onset}, status=202)
            await response.prepare(request)
            await response.write_eof()
            # Give the kernel a moment to send the answer, then die as a real crash would.
            asyncio.get_running_loop().call_later(0.05, self.on_crash)
            return response
        self.fault = FaultState(float(rate), float(latency), onset)
        return web.json_response(self.fault.to_json())


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def create_app(
    version: str, seed: int | None = None, on_crash: Callable[[], None] | None = None
) -> web.Application:
    """The service as an application; ``on_crash`` replaces ``os._exit(3)`` (for tests)."""
    service = _Service(version, seed, on_crash)
    app = web.Application()

    async def add_version(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[VERSION_HEADER] = version

    app.on_response_prepare.append(add_version)
    app.router.add_get("/", service.index)
    app.router.add_get("/api/items/{id}", service.item)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/_demo/fault", service.get_fault)
    app.router.add_post("/_demo/fault", service.post_fault)
    app.router.add_delete("/_demo/fault", service.delete_fault)
    return app


def write_port_file(path: str | os.PathLike[str], port: int) -> None:
    """Write ``port`` so a reader never sees a partial file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def serve(
    host: str, port: int, version: str, seed: int | None, port_file: str | None
) -> None:
    """Serve until SIGTERM or SIGINT."""
    runner = web.AppRunner(create_app(version, seed), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        real_port = int(runner.addresses[0][1])
        if port_file:
            write_port_file(port_file, real_port)
        print(f"listening on {host}:{real_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coalmine.demo.service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--version", required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port-file", default=None)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.version, args.seed, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The server the probe benchmark probes: a small JSON API and a delay endpoint that remembers
how long it really waited, so a tool's measured duration can be compared with the truth.

``python -m bench.probe_target PORT`` serves on 127.0.0.1:PORT until killed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import count

from aiohttp import web

_ids = count(1)
_waited: dict[str, float] = {}  # request id -> seconds the server really waited


async def items(request: web.Request) -> web.Response:
    return web.json_response({"items": [{"id": n} for n in range(1, 4)]})


async def item(request: web.Request) -> web.Response:
    return web.json_response({"id": int(request.match_info["id"]), "name": "widget"})


async def echo(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": next(_ids), "echo": body}, status=201)


async def slow(request: web.Request) -> web.Response:
    delay = float(request.query.get("ms", "0")) / 1000.0
    started = time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    waited = time.perf_counter() - started
    if "id" in request.query:
        _waited[request.query["id"]] = waited
    return web.Response(text="ok")


async def waited(request: web.Request) -> web.Response:
    key = request.query.get("id", "")
    if key not in _waited:
        return web.json_response({"error": "unknown id"}, status=404)
    return web.json_response({"id": key, "waited_s": _waited.pop(key)})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/items", items)
    app.router.add_get("/api/items/{id}", item)
    app.router.add_post("/api/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/waited", waited)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)

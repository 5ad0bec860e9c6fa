"""Rollback execution: how long after ``set_routing(weight 0)`` does the canary stop receiving
requests?

Two upstreams (aiohttp apps that timestamp every request they receive) and a load loop of about
200 requests/s from many tenants run in this process; coalmine's router runs in a child process.
Each repetition sets the weight to 50, lets traffic settle, then rolls back and measures, on one
clock, the time from the call to the last request that reached the canary. Writes
``bench/results/rollback.json``. Run: ``.venv/bin/python -m bench.rollback_bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import RESULTS, free_port, wait_for_port
from coalmine.traffic.base import Routing
from coalmine.traffic.client import RouterClient
from coalmine.traffic.window import quantile

RATE = 200.0  # requests per second
REPETITIONS = 20
SETTLE_S = 1.0  # traffic at weight 50 before each rollback
AFTER_S = 0.5  # traffic watched after each rollback


class Origin:
    def __init__(self) -> None:
        self.hits: list[float] = []
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(time.time())
        return web.Response(text="ok")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}"


async def load(url: str, stop: asyncio.Event, sent: list[int]) -> None:
    """Open-loop load: one request every 1/RATE s, each from a random one of 10,000 tenants."""
    rng = random.Random(1)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one() -> None:
            headers = {"X-Tenant": f"tenant-{rng.randrange(10_000)}"}
            try:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                sent[0] += 1
            except aiohttp.ClientError:
                sent[1] += 1

        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1 / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(quantile(ordered, 0.5), 3),
        "p90": round(quantile(ordered, 0.9), 3),
        "max": round(ordered[-1], 3),
    }


async def bench() -> dict[str, Any]:
    stable, canary = Origin(), Origin()
    spec = {
        "stable": await stable.start(),
        "canary": await canary.start(),
        "listen": free_port(),
        "admin": free_port(),
    }
    router = subprocess.Popen(
        [sys.executable, "-m", "bench.router_bench", "--child-serve", json.dumps(spec)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop, sent = asyncio.Event(), [0, 0]
    runs: list[dict[str, float]] = []
    try:
        wait_for_port(spec["admin"])
        client = RouterClient(f"127.0.0.1:{spec['admin']}")
        loader = asyncio.create_task(load(f"http://127.0.0.1:{spec['listen']}/", stop, sent))
        generation = 0
        for _ in range(REPETITIONS):
            generation += 1
            await client.set_routing(Routing(canary_weight=50, generation=generation))
            await asyncio.sleep(SETTLE_S)
            generation += 1
            called = time.time()
            await client.set_routing(Routing(canary_weight=0, generation=generation))
            returned = time.time()
            await asyncio.sleep(AFTER_S)
            before = [t for t in canary.hits if called - SETTLE_S < t <= called]
            after = [t for t in canary.hits if t > called]
            runs.append(
                {
                    "call_ms": (returned - called) * 1000,
                    "last_canary_hit_ms": (max(after) - called) * 1000 if after else 0.0,
                    "canary_hits_after_call": len(after),
                    "canary_hits_after_return": sum(t > returned for t in after),
                    "canary_rate_before": len(before) / SETTLE_S,
                }
            )
        stop.set()
        await loader
        await client.aclose()
    finally:
        router.terminate()
        router.wait(10)
        for origin in (stable, canary):
            if origin.runner is not None:
                await origin.runner.cleanup()
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rate_rps": RATE,
        "repetitions": REPETITIONS,
        "requests_ok": sent[0],
        "requests_failed": sent[1],
        "time_to_last_canary_request_ms": summary([r["last_canary_hit_ms"] for r in runs]),
        "set_routing_call_ms": summary([r["call_ms"] for r in runs]),
        "canary_hits_after_return": sum(int(r["canary_hits_after_return"]) for r in runs),
        "runs": runs,
    }


def main() -> None:
    report = asyncio.run(bench())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rollback.json").write_text(json.dumps(report, indent=2) + "\n")
    shown = {k: v for k, v in report.items() if k != "runs"}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()

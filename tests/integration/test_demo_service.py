"""The demo service (in-process and as a real process) and the load generator against it."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from coalmine.demo.loadgen import LoadGenerator
from coalmine.demo.service import VERSION_HEADER, create_app

Check = Callable[[TestClient[Any, Any]], Awaitable[None]]


def with_client(check: Check, seed: int = 1) -> None:
    async def main() -> None:
        crashes: list[bool] = []
        app = create_app("v1.2.3", seed=seed, on_crash=lambda: crashes.append(True))
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


async def timed_gets(client: TestClient[Any, Any], n: int, width: int) -> list[tuple[int, float]]:
    """``n`` GETs, ``width`` at a time; (status, seconds) for each."""
    gate = asyncio.Semaphore(width)

    async def one(i: int) -> tuple[int, float]:
        async with gate:
            began = time.perf_counter()
            async with client.get(f"/api/items/{i}") as response:
                await response.read()
                return response.status, time.perf_counter() - began

    return await asyncio.gather(*(one(i) for i in range(n)))


def test_base_latency_and_body() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        async with client.get("/api/items/42") as response:
            assert response.headers[VERSION_HEADER] == "v1.2.3"
            body = await response.json()
        assert body["id"] == "42" and body["version"] == "v1.2.3"
        async with client.get("/healthz") as response:
            assert response.status == 200
            assert response.headers[VERSION_HEADER] == "v1.2.3"
        results = await timed_gets(client, 300, 10)
        p50_ms = statistics.median(t for _, t in results) * 1000
        assert 8.0 <= p50_ms <= 20.0
        assert sum(1 for s, _ in results if s == 500) <= 5

    with_client(check)


def test_error_rate_fault_and_clear() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        before = time.time()
        async with client.post("/_demo/fault", json={"error_rate": 0.5}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["error_rate"] == 0.5 and before <= body["onset"] <= time.time()
        async with client.get("/_demo/fault") as response:
            assert (await response.json())["error_rate"] == 0.5
        results = await timed_gets(client, 400, 50)
        errors = sum(1 for s, _ in results if s == 500)
        assert 0.35 * 400 <= errors <= 0.65 * 400
        async with client.delete("/_demo/fault") as response:
            assert (await response.json()) == {
                "error_rate": 0.0,
                "added_latency_ms": 0.0,
                "onset": None,
            }
        results = await timed_gets(client, 100, 50)
        assert sum(1 for s, _ in results if s == 500) <= 3

    with_client(check)


def test_latency_fault_and_bad_input() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        async with client.post("/_demo/fault", json={"added_latency_ms": 150}) as response:
            assert response.status == 200
        results = await timed_gets(client, 10, 10)
        assert min(t for _, t in results) >= 0.150 + 0.008
        await client.delete("/_demo/fault")
        results = await timed_gets(client, 10, 10)
        assert max(t for _, t in results) < 0.150
        for bad in ({"error_rate": 2}, {"added_latency_ms": -1}, {"nope": 1}, [1]):
            async with client.post("/_demo/fault", json=bad) as response:
                assert response.status == 400

    with_client(check)


# -- the service as a real process -----------------------------------------------------------


def start_service(tmp_path: Path, version: str = "v1.2.2") -> tuple[subprocess.Popen[str], int]:
    port_file = tmp_path / f"{version}.port"
    argv = [sys.executable, "-m", "coalmine.demo.service", "--port", "0", "--seed", "7"]
    argv += ["--version", version, "--port-file", str(port_file)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not port_file.exists():
        assert proc.poll() is None, "service exited early"
        assert time.monotonic() < deadline, "no port file"
        time.sleep(0.02)
    port = int(port_file.read_text())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == f"listening on 127.0.0.1:{port}"
    return proc, port


@pytest.fixture
def service(tmp_path: Path) -> Iterator[int]:
    proc, port = start_service(tmp_path)
    with proc:
        yield port
        proc.terminate()


def test_process_crash_fault_exits_3(tmp_path: Path) -> None:
    proc, port = start_service(tmp_path)
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/_demo/fault", json={"crash": True})
        assert response.status_code == 202
        assert response.headers[VERSION_HEADER] == "v1.2.2"
        assert proc.wait(5) == 3
    finally:
        with proc:
            proc.kill()


def test_process_sigterm_exits_0(tmp_path: Path) -> None:
    proc, port = start_service(tmp_path)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/").json()["version"] == "v1.2.2"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        with proc:
            proc.kill()


# -- the load generator -----------------------------------------------------------------------


def test_loadgen_rate_tenants_and_version(service: int) -> None:
    gen = LoadGenerator(
        f"http://127.0.0.1:{service}/api/items/1",
        rate=100,
        test_tenants=["qa-1"],
        seed=3,
    )
    began = time.monotonic()
    asyncio.run(gen.run(duration=3.0))
    elapsed = time.monotonic() - began
    assert elapsed < 4.0
    snap = gen.snapshot(window_s=60)
    assert gen.dropped == 0
    assert 270 <= snap["completed"] <= 330
    assert snap["overall"]["rate"] == pytest.approx(100, rel=0.1)
    # Without a router nothing sets X-Coalmine-Version.
    assert set(snap["versions"]) == {"unknown"}
    unknown = snap["versions"]["unknown"]
    assert unknown["total"] == snap["completed"]
    assert unknown["error_rate"] < 0.05
    assert 8 <= unknown["p50_ms"] <= 30
    assert unknown["p99_ms"] >= unknown["p50_ms"]
    last = gen.last_seen("unknown")
    assert last is not None and time.time() - last < 2
    assert gen.last_seen("canary") is None
    tenants = {s.tenant for s in gen.samples()}
    assert len(tenants) >= 200  # ~300 picks from 1001 tenants: ~260 distinct
    assert all(t.startswith("tenant-") or t == "qa-1" for t in tenants)


def test_loadgen_counts_drops_and_connection_errors(service: int) -> None:
    async def main() -> LoadGenerator:
        async with httpx.AsyncClient() as client:
            fault = {"added_latency_ms": 300}
            await client.post(f"http://127.0.0.1:{service}/_demo/fault", json=fault)
        gen = LoadGenerator(f"http://127.0.0.1:{service}/", rate=100, concurrency=5)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        await gen.run(until=stop)
        return gen

    gen = asyncio.run(main())
    assert gen.dropped > 50  # 5 slots of ~0.3 s each serve ~17 requests/s out of 100
    assert gen.snapshot(10)["dropped_rate"] > 0

    dead = LoadGenerator("http://127.0.0.1:9/", rate=50, timeout=1.0)
    asyncio.run(dead.run(duration=0.5))
    snap = dead.snapshot(10)
    assert snap["completed"] > 0
    assert snap["versions"]["unknown"]["error_rate"] == 1.0
    assert dead.last_seen("unknown") is None

"""Result sinks: JSON-lines file, HTTP (against a real aiohttp receiver on loopback), memory,
and the fan-out that keeps a failing sink from stopping the rest."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coalmine.probes.model import FlowResult
from coalmine.probes.sinks import (
    FanOut,
    HttpSink,
    JsonlFileSink,
    MemorySink,
    safe_url,
)
from coalmine.probes.store import result_from_dict, result_to_dict
from tests.integration.test_probe_store import flow_result, step


def results(n: int, **kw: Any) -> list[FlowResult]:
    return [flow_result(at=1000.0 + i, **kw) for i in range(n)]


@dataclass
class Receiver:
    """An HTTP endpoint that records what it receives and answers ``status``."""

    status: int = 204
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path_qs, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status)


@asynccontextmanager
async def receiver(recv: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/ingest", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


# --------------------------------------------------------------------------- JSON lines file


def test_jsonl_file_appends_one_flushed_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    first = flow_result(steps=(step("login", attempts=2), step("cart", passed=False)))

    async def body() -> None:
        sink = JsonlFileSink(path)
        await sink.emit(first)
        # flushed: readable before the sink is closed
        assert len(path.read_text().splitlines()) == 1
        await sink.emit(flow_result("search", at=1001.0, version=None))
        await sink.close()
        again = JsonlFileSink(path)  # a restart appends
        await again.emit(flow_result("third", at=1002.0))
        await again.close()

    run(body)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["flow"] for line in lines] == ["checkout", "search", "third"]
    assert result_from_dict(json.loads(lines[0])) == first
    assert json.loads(lines[0])["steps"][0]["first_passed"] is False


# --------------------------------------------------------------------------- HTTP


def test_http_sink_posts_json_lines_in_batches() -> None:
    recv = Receiver()
    sent = results(5)

    async def body() -> None:
        async with receiver(recv) as base:
            sink = HttpSink(f"{base}/ingest", headers={"Authorization": "Bearer sink-token"})
            for r in sent:
                await sink.emit(r)
            await sink.close()
            assert (sink.sent, sink.failed, sink.dropped) == (5, 0, 0)

    run(body)
    lines = [line for _, _, raw in recv.requests for line in raw.decode().splitlines()]
    assert [result_from_dict(json.loads(line)) for line in lines] == sent
    assert len(recv.requests) < 5  # batched
    _, headers, _ = recv.requests[0]
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Authorization"] == "Bearer sink-token"


def test_http_sink_single_mode_sends_one_object_per_request() -> None:
    recv = Receiver()

    async def body() -> None:
        async with receiver(recv) as base:
            sink = HttpSink(f"{base}/ingest", mode="single")
            for r in results(3):
                await sink.emit(r)
            await sink.close()

    run(body)
    assert len(recv.requests) == 3
    assert [json.loads(raw)["started_at"] for _, _, raw in recv.requests] == [
        1000.0,
        1001.0,
        1002.0,
    ]
    assert all(h["Content-Type"] == "application/json" for _, h, _ in recv.requests)


def test_http_failures_are_counted_and_logged_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recv = Receiver(status=500)
    caplog.set_level(logging.WARNING, logger="coalmine.probes.sinks")

    async def body() -> None:
        async with receiver(recv) as base:
            host = base.removeprefix("http://")
            failing = HttpSink(f"http://user:hunter2@{host}/ingest?token=s3cr3t", mode="single")
            for r in results(2):
                await failing.emit(r)
            await failing.close()
            assert (failing.sent, failing.failed) == (0, 2)
        # the receiver is gone: connection refused
        refused = HttpSink(f"{base}/ingest?token=s3cr3t", timeout_s=1.0)
        await refused.emit(flow_result())
        await refused.close()
        assert refused.failed == 1

    run(body)
    text = caplog.text
    assert "answered 500" in text and "ConnectError" in text
    assert "hunter2" not in text and "s3cr3t" not in text and "/ingest" in text
    assert safe_url("https://u:p@h:8443/x?y=1") == "https://h:8443/x"


def test_http_queue_is_bounded_and_drops_the_oldest() -> None:
    recv = Receiver(delay=0.3)

    async def body() -> None:
        async with receiver(recv) as base:
            sink = HttpSink(f"{base}/ingest", mode="single", queue_size=2, timeout_s=2.0)
            for r in results(6):
                await sink.emit(r)
                await asyncio.sleep(0)
            await sink.close(timeout_s=3.0)
            assert sink.dropped >= 3
            assert sink.sent + sink.dropped == 6

    run(body)
    received = [json.loads(raw)["started_at"] for _, _, raw in recv.requests]
    assert received[-1] == 1005.0  # the newest survived


# --------------------------------------------------------------------------- the others


class Broken:
    name = "broken"

    async def emit(self, result: FlowResult) -> None:
        raise RuntimeError("boom with https://x?token=s3cr3t")

    async def close(self) -> None:
        raise OSError("cannot close")


def test_fan_out_isolates_a_failing_sink(caplog: pytest.LogCaptureFixture) -> None:
    memory = MemorySink(limit=3)
    fan = FanOut([Broken(), memory])
    ok = flow_result(at=1.0)
    retried = flow_result(at=2.0, steps=(step("a", attempts=2),))  # final success, first failed
    failed = flow_result(at=3.0, steps=(step("a", passed=False),))

    async def body() -> None:
        for r in (ok, retried, failed, flow_result("other", at=4.0)):
            await fan.emit(r)
        await fan.close()

    run(body)
    assert fan.errors == {"broken": 5, "memory": 0}
    assert fan.failures()["broken"] == 5
    assert [r["started_at"] for r in memory.recent()] == [4.0, 3.0, 2.0]  # newest first, bounded
    assert [r["flow"] for r in memory.recent(flow="checkout")] == ["checkout", "checkout"]
    assert memory.recent()[1] == result_to_dict(failed)
    assert "s3cr3t" not in caplog.text and "RuntimeError" in caplog.text

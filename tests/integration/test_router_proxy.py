"""The router against real upstream servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coalmine.errors import RouterError
from coalmine.spec.model import Tenancy
from coalmine.traffic.proxy import RouterServer
from coalmine.traffic.window import quantile
from tests.integration.test_router_support import Upstream_, rig, service_config


async def put(session: aiohttp.ClientSession, admin: str, doc: dict) -> aiohttp.ClientResponse:
    async with session.put(f"http://{admin}/admin/routing", json=doc) as resp:
        await resp.read()
        return resp


async def get_version(session: aiohttp.ClientSession, url: str, **kwargs: object) -> str:
    async with session.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        body = await resp.text()
        version = resp.headers["X-Coalmine-Version"]
        assert resp.status == 200 and body == version  # answered by that very upstream
        return version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_weight_30_sends_30_percent_of_tenants_and_tenants_stick() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            assert (await put(s, r.admin, {"canary_weight": 30, "generation": 1})).status == 200
            tenants = [f"tenant-{i}" for i in range(1500)]
            first = {}
            for t in tenants:
                first[t] = await get_version(s, r.url + "/", headers={"X-Tenant": t})
            share = sum(v == "canary" for v in first.values()) / len(tenants)
            assert abs(share - 0.30) < 0.04
            assert len(r.canary.hits) == sum(v == "canary" for v in first.values())
            for t in tenants[:200]:  # the same tenant again: the same version
                assert await get_version(s, r.url + "/", headers={"X-Tenant": t}) == first[t]
            await put(s, r.admin, {"canary_weight": 60, "generation": 2})
            for t in tenants[:300]:  # growing the weight never moves a canary tenant back
                now = await get_version(s, r.url + "/", headers={"X-Tenant": t})
                assert first[t] == "stable" or now == "canary"

    asyncio.run(body())


def test_the_tenant_cookie_is_sticky() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            await put(s, r.admin, {"canary_weight": 50, "generation": 1})
            seen: dict[str, set[str]] = {}
            for i in range(40):
                for _ in range(3):
                    v = await get_version(s, r.url + "/", cookies={"tenant": f"c{i}"})
                    seen.setdefault(f"c{i}", set()).add(v)
            assert all(len(v) == 1 for v in seen.values())
            assert {"stable", "canary"} == set().union(*seen.values())

    asyncio.run(body())


def test_header_route_override_and_test_tenant() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            route = {
                "name": "beta",
                "matches": [{"header_name": "X-Beta", "kind": "exact", "value": "1"}],
            }
            await put(s, r.admin, {"canary_weight": 0, "header_routes": [route], "generation": 1})
            assert await get_version(s, r.url + "/", headers={"X-Beta": "1"}) == "canary"
            assert await get_version(s, r.url + "/", headers={"X-Beta": "2"}) == "stable"
            assert await get_version(s, r.url + "/", headers={"X-Tenant": "tester"}) == "canary"
            pinned = {"X-Beta": "1", "X-Coalmine-Version": "stable"}
            assert await get_version(s, r.url + "/", headers=pinned) == "stable"
            await put(s, r.admin, {"canary_weight": 100, "generation": 2})
            assert (
                await get_version(s, r.url + "/", headers={"X-Coalmine-Version": "stable"})
                == "stable"
            )
            await put(s, r.admin, {"canary_weight": 0, "generation": 3})  # a rollback
            assert await get_version(s, r.url + "/", headers={"X-Beta": "1"}) == "stable"
            assert await get_version(s, r.url + "/", headers={"X-Tenant": "tester"}) == "stable"
            assert (
                await get_version(s, r.url + "/", headers={"X-Coalmine-Version": "canary"})
                == "canary"
            )

    asyncio.run(body())


def test_streams_5mb_each_way() -> None:
    size = 5 * 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        block = b"x" * 65536
        for _ in range(size // len(block)):
            yield block

    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            async with s.post(r.url + "/upload", data=chunks()) as resp:  # chunked upload
                got = await resp.json()
            assert got == {"size": size, "sha256": hashlib.sha256(b"x" * size).hexdigest()}
            async with s.get(r.url + "/download?n=" + str(size)) as resp:
                assert resp.headers.get("Transfer-Encoding") == "chunked"
                data = await resp.read()
            assert len(data) == size and data[:256] == bytes(range(256))

    asyncio.run(body())


def test_canary_down_is_a_502_counted_against_the_canary() -> None:
    async def body() -> None:
        stable = Upstream_("stable")
        await stable.start()
        dead = f"http://127.0.0.1:{free_port()}"
        router = RouterServer(service_config(stable.url, dead))
        await router.start()
        try:
            async with aiohttp.ClientSession() as s:
                admin = f"127.0.0.1:{router.admin_port}"
                await put(s, admin, {"canary_weight": 100, "generation": 1})
                async with s.get(f"http://127.0.0.1:{router.listen_port}/x") as resp:
                    assert resp.status == 502
                    assert resp.headers["X-Coalmine-Version"] == "canary"
                    assert "canary" in await resp.text()
            canary = router.window.stats(60).versions["canary"]
            assert canary.errors == 1 and canary.error_rate == 1.0 and canary.status["5xx"] == 1
        finally:
            await router.stop()
            await stable.stop()

    asyncio.run(body())


def test_a_slow_upstream_is_a_504() -> None:
    async def body() -> None:
        async with rig(request_timeout=0.3) as r, aiohttp.ClientSession() as s:
            started = time.monotonic()
            async with s.get(r.url + "/slow?s=3") as resp:
                assert resp.status == 504 and resp.headers["X-Coalmine-Version"] == "stable"
            assert time.monotonic() - started < 2
            stable = r.router.window.stats(60).versions["stable"]
            assert stable.status["5xx"] == 1 and stable.latency_ms["p50"] >= 300

    asyncio.run(body())


def test_connections_to_upstreams_are_kept_alive() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            for i in range(200):
                await get_version(s, r.url + "/", headers={"X-Tenant": f"t{i}"})
            assert len(r.stable.hits) == 200
            assert len(r.stable.peers) <= 2

    asyncio.run(body())


def test_hop_by_hop_headers_are_dropped_and_forwarding_headers_added() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            headers = {
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "X-Kept": "yes",
            }
            async with s.get(
                r.url + "/echo?q=1%202", headers=headers, skip_auto_headers=("User-Agent",)
            ) as resp:
                echo = await resp.json()
                assert "Keep-Alive" not in resp.headers
            got = {k.lower(): v for k, v in echo["headers"]}
            for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
                assert hop not in got
            assert got.get("connection", "keep-alive").lower() == "keep-alive"  # the proxy's own
            assert got["x-kept"] == "yes"
            assert got["x-forwarded-for"] == "127.0.0.1"
            assert got["x-forwarded-proto"] == "http"
            assert got["host"] == f"127.0.0.1:{r.router.listen_port}"  # Host preserved
            assert got["x-forwarded-host"] == got["host"]
            assert echo["raw_path"] == "/echo?q=1%202"
            assert "user-agent" not in got  # the router adds nothing the user did not send

    asyncio.run(body())


def test_after_a_rollback_returns_no_request_reaches_the_canary() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            await put(s, r.admin, {"canary_weight": 50, "generation": 1})
            stop = asyncio.Event()

            async def load(worker: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    async with s.get(r.url + "/", headers={"X-Tenant": f"w{worker}-{i}"}) as resp:
                        await resp.read()

            workers = [asyncio.create_task(load(w)) for w in range(16)]
            await asyncio.sleep(0.5)
            resp = await put(s, r.admin, {"canary_weight": 0, "generation": 2})
            returned = time.time()
            assert resp.status == 200
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)
            assert len(r.canary.hits) > 20
            assert max(t for t, _ in r.canary.hits) <= returned
            assert sum(t > returned for t, _ in r.stable.hits) > 20

    asyncio.run(body())


def test_stale_generations_and_invalid_documents_are_refused() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            assert (await put(s, r.admin, {"canary_weight": 20, "generation": 5})).status == 200
            assert (await put(s, r.admin, {"canary_weight": 20, "generation": 5})).status == 200
            async with s.put(
                f"http://{r.admin}/admin/routing", json={"canary_weight": 0, "generation": 4}
            ) as resp:
                assert resp.status == 409
                assert (await resp.json())["current_generation"] == 5
            bad_docs = [
                {"canary_weight": 101, "generation": 6},
                {"canary_weight": -1, "generation": 6},
                {"canary_weight": "50", "generation": 6},
                {"canary_weight": 1.5, "generation": 6},
                {
                    "canary_weight": 5,
                    "generation": 6,
                    "header_routes": [
                        {
                            "name": "r",
                            "matches": [{"header_name": "X", "kind": "regex", "value": "("}],
                        }
                    ],
                },
                [1, 2],
            ]
            for doc in bad_docs:
                async with s.put(f"http://{r.admin}/admin/routing", json=doc) as resp:
                    assert resp.status == 400, doc
                    assert (await resp.json())["error"]
            async with s.put(f"http://{r.admin}/admin/routing", data=b"{nope") as resp:
                assert resp.status == 400
            async with s.get(f"http://{r.admin}/admin/routing") as resp:
                served = await resp.json()
            assert served["canary_weight"] == 20 and served["generation"] == 5
            assert served["service"] == "shop" and served["canary_url"] == r.canary.url
            assert r.router.routing.canary_weight == 20

    asyncio.run(body())


def test_metrics_count_what_was_served() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            await put(s, r.admin, {"canary_weight": 40, "generation": 7})
            versions = [
                await get_version(s, r.url + "/", headers={"X-Tenant": f"m{i}"}) for i in range(100)
            ]
            async with s.get(
                r.url + "/status?code=503", headers={"X-Coalmine-Version": "canary"}
            ) as resp:
                assert resp.status == 503
            async with s.get(f"http://{r.admin}/metrics") as resp:
                text = await resp.text()
            async with s.get(f"http://{r.admin}/healthz") as resp:
                assert await resp.json() == {"status": "ok"}
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

        def value(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted({"service": "shop", **labels}.items())))]

        canary = versions.count("canary")
        assert value("coalmine_router_requests_total", version="canary", code_class="2xx") == canary
        assert (
            value("coalmine_router_requests_total", version="stable", code_class="2xx")
            == 100 - canary
        )
        assert value("coalmine_router_requests_total", version="canary", code_class="5xx") == 1
        assert (
            value("coalmine_router_request_duration_seconds_count", version="canary") == canary + 1
        )
        assert value("coalmine_router_canary_weight") == 40
        assert value("coalmine_router_routing_generation") == 7
        assert (
            value("coalmine_router_upstream_errors_total", version="canary", reason="refused") == 0
        )

    asyncio.run(body())


def test_stats_and_records_over_the_admin_api() -> None:
    async def body() -> None:
        async with rig() as r, aiohttp.ClientSession() as s:
            stats_url = f"http://{r.admin}/admin/stats?window=60&quantiles=0.5,0.9,0.999"
            async with s.get(stats_url) as resp:
                empty = await resp.json()
            assert empty["versions"]["canary"]["error_rate"] is None
            assert empty["versions"]["stable"]["requests"] == 0
            started = time.time()
            for i in range(50):
                await get_version(s, r.url + "/", headers={"X-Tenant": f"s{i}"})
            async with s.get(stats_url) as resp:
                stats = await resp.json()
            async with s.get(
                f"http://{r.admin}/admin/records?since={started - 1}&limit=1000"
            ) as resp:
                records = (await resp.json())["records"]
            async with s.get(f"http://{r.admin}/admin/stats?window=0") as resp:
                assert resp.status == 400
        stable = stats["versions"]["stable"]
        assert stable["requests"] == 50 == len(records)
        assert stable["error_rate"] == 0.0 and stable["status"]["2xx"] == 50
        latencies = sorted(rec["latency_ms"] for rec in records)
        for key, q in (("p50", 0.5), ("p90", 0.9), ("p99.9", 0.999)):
            assert stable["latency_ms"][key] == pytest.approx(quantile(latencies, q))
        assert {rec["version"] for rec in records} == {"stable"}
        assert all(rec["t"] >= started for rec in records)

    asyncio.run(body())


def test_the_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state" / "shop.json"

    async def body() -> None:
        async with rig(state_file=str(state)) as r, aiohttp.ClientSession() as s:
            assert r.router.routing.canary_weight == 0
            route = {
                "name": "beta",
                "matches": [{"header_name": "X-Beta", "kind": "prefix", "value": "y"}],
            }
            await put(s, r.admin, {"canary_weight": 40, "header_routes": [route], "generation": 3})
            service = r.router.service
        assert json.loads(state.read_text())["routing"]["canary_weight"] == 40
        again = RouterServer(service)
        await again.start()
        try:
            assert again.routing.canary_weight == 40 and again.routing.generation == 3
            assert again.routing.header_routes[0].matches[0].value == "y"
        finally:
            await again.stop()
        fresh = RouterServer(service_config(service.stable.url, service.canary.url))
        await fresh.start()
        try:
            assert fresh.routing.canary_weight == 0  # no state file: everything on stable
        finally:
            await fresh.stop()

    asyncio.run(body())


def test_a_taken_port_is_a_one_line_error() -> None:
    async def body() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = f"127.0.0.1:{taken.getsockname()[1]}"
            config = service_config("http://127.0.0.1:1", "http://127.0.0.1:2", listen=address)
            with pytest.raises(RouterError) as info:
                await RouterServer(config).start()
            assert address in str(info.value) and "hint" in str(info.value)
            assert "\n" not in str(info.value)

    asyncio.run(body())


def test_client_address_is_the_tenant_without_header_or_cookie() -> None:
    async def body() -> None:
        async with (
            rig(tenancy=Tenancy(header=None, cookie=None)) as r,
            aiohttp.ClientSession() as s,
        ):
            await put(s, r.admin, {"canary_weight": 50, "generation": 1})
            seen = {
                await get_version(s, r.url + "/", headers={"X-Tenant": f"x{i}"}) for i in range(30)
            }
            assert len(seen) == 1  # every request comes from 127.0.0.1

    asyncio.run(body())

"""RouterClient against a real RouterServer."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from coalmine.errors import RouterError
from coalmine.spec.model import HeaderMatch
from coalmine.traffic.base import HeaderRoute, Routing
from coalmine.traffic.client import RouterClient
from tests.integration.test_router_support import rig


def test_the_client_steers_and_reads_the_router() -> None:
    async def body() -> None:
        async with rig() as r, RouterClient(r.admin) as client:
            assert await client.get_routing() == Routing()
            route = HeaderRoute("beta", (HeaderMatch("X-Beta", "exact", "1"),))
            wanted = Routing(canary_weight=25, header_routes=(route,), generation=1)
            assert await client.set_routing(wanted) == wanted
            assert await client.get_routing() == wanted
            assert r.router.routing == wanted
            async with aiohttp.ClientSession() as s:
                for i in range(20):
                    async with s.get(r.url + "/", headers={"X-Beta": "1", "X-Tenant": str(i)}):
                        pass
            stats = await client.stats(60, (0.5, 0.99, 0.999))
            assert stats.window_s == 60
            assert stats.versions["canary"].requests == 20
            assert set(stats.versions["canary"].latency_ms) == {"p50", "p99", "p99.9"}
            assert stats.versions["stable"].error_rate is None
            records = await client.records(since=0, limit=5)
            assert len(records) == 5 and records[0]["version"] == "canary"
            assert await client.healthy()

    asyncio.run(body())


def test_stale_and_invalid_routings_raise_router_errors() -> None:
    async def body() -> None:
        async with rig() as r, RouterClient(r.admin) as client:
            await client.set_routing(Routing(canary_weight=10, generation=3))
            assert await client.set_routing(Routing(canary_weight=10, generation=3))  # idempotent
            with pytest.raises(RouterError, match="stale"):
                await client.set_routing(Routing(canary_weight=0, generation=2))
            with pytest.raises(RouterError, match="canary_weight must be an integer from 0 to 100"):
                await client.set_routing(Routing(canary_weight=250, generation=4))
            assert (await client.get_routing()).canary_weight == 10

    asyncio.run(body())


def test_an_unreachable_admin_is_a_router_error_with_a_hint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        admin = f"127.0.0.1:{s.getsockname()[1]}"

    async def body() -> None:
        async with RouterClient(admin, timeout=0.5) as client:
            with pytest.raises(RouterError) as info:
                await client.get_routing()
            assert f"router admin {admin} is unreachable" in str(info.value)
            assert info.value.hint and "coalmine router serve" in info.value.hint
            assert not await client.healthy()

    asyncio.run(body())

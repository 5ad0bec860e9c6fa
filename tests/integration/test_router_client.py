"""RouterClient against a real RouterServer."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from coalmine.errors import RouterError
from coalmine.spec.model import HeaderMatch
from coalmine.traffic.base import HeaderRoute, Routing
from coalmine.traffic.client import RouterClient
from tests.integration.test_router_support import rig
from tests.support.loopback import serve_all


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


# --------------------------------------------------------------------------- not a router

PAGE = "<!DOCTYPE html>\n<html><head><title>Not Found</title></head>\n<body>" + (
    "<p>The page you asked for is not here.</p>\n" * 200
) + "</body></html>"  # fmt: skip


async def _error_from(status: int, text: str, content_type: str) -> RouterError:
    """What the client raises against a real server on loopback that answers every request
    the same way."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=text, content_type=content_type)

    async with serve_all(answer) as url, RouterClient(url.removeprefix("http://")) as client:
        with pytest.raises(RouterError) as info:
            await client.records(0.0, 10)
        assert not await client.healthy()
        return info.value


def test_an_html_404_is_one_line_without_the_page_and_with_a_hint() -> None:
    err = asyncio.run(_error_from(404, PAGE, "text/html"))
    line = err.one_line()
    assert "\n" not in line and "<" not in line and "not here" not in line, line
    assert len(line) < 300, line
    assert err.message.startswith("router admin 127.0.0.1:") and " answered 404 Not Found: " in line
    assert "an HTML page" in err.message
    assert (
        err.hint == "is this a coalmine router's admin address? see router.admin in coalmine.yaml"
    )


def test_a_long_text_answer_shows_only_its_start_on_one_line() -> None:
    text = "no such\x1b route\r\n" + "x" * 5000
    err = asyncio.run(_error_from(503, text, "text/plain"))
    assert " answered 503 Service Unavailable: no such route xxx" in err.message
    shown = err.message.split("Service Unavailable: ", 1)[1]
    assert len(shown) <= 200 and shown.endswith("…")
    assert "\r" not in err.one_line() and "\x1b" not in err.one_line()
    assert err.hint and "coalmine router's admin address" in err.hint


def test_an_html_page_without_a_content_type_is_still_left_out() -> None:
    err = asyncio.run(_error_from(404, PAGE, "application/octet-stream"))
    assert "an HTML page" in err.message and "<" not in err.one_line()

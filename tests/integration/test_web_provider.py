"""The web provider against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from coalmine.analysis.run import measurement_from
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.web import WebMetrics
from coalmine.spec.model import Metric
from tests.support.loopback import serve_all

SECRET = "Bearer tok-9f8e7d6c5b4a"


class Server:
    """Routes by path; remembers every request (method, path, headers, body)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self.elapsed = 0.0  # how long the measurement took

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        path = request.path
        if path == "/ok":
            return web.json_response({"data": {"ok": True, "rate": "0.25"}, "items": [1, 2, 3]})
        if path == "/items":
            return web.json_response(
                {"items": [{"name": "a", "value": 1.5}, {"name": "b", "value": 7}]}
            )
        if path == "/echo":
            return web.json_response(
                {"method": request.method, "body": body.decode(), "ct": request.content_type}
            )
        if path == "/text":
            return web.Response(text="all good\n", content_type="text/plain")
        if path == "/number-as-text":
            return web.Response(text="0.97", content_type="text/plain")  # JSON number
        if path == "/null":
            return web.json_response(None)
        if path == "/status":
            return web.Response(status=int(request.query["code"]), text="nope")
        if path == "/slow":
            await asyncio.sleep(float(request.query.get("s", "5")))
            return web.json_response({"late": True})
        if path == "/redirect":
            raise web.HTTPFound("/ok")
        if path == "/deep":  # valid JSON, nested deeper than a recursive parser goes
            return web.Response(text="[" * 50_000 + "]" * 50_000, content_type="application/json")
        return web.Response(status=404, text="unknown path")


@asynccontextmanager
async def serve() -> AsyncIterator[Server]:
    server = Server()
    async with serve_all(server.handle) as server.url:
        yield server


def web_metric(config: dict[str, Any], **conditions: str) -> Metric:
    return Metric(name="m", provider={"web": config}, **conditions)  # type: ignore[arg-type]


def run(
    make: Callable[[str], dict[str, Any]], check: Callable[[Server], Awaitable[None]] | None = None
) -> tuple[ProviderResult, Server]:
    async def body() -> tuple[ProviderResult, Server]:
        async with serve() as server:
            context = MeasureContext(rollout="shop", service="shop", now=time.time())
            started = time.monotonic()
            result = await WebMetrics().measure(web_metric(make(server.url)), context)
            server.elapsed = time.monotonic() - started
            return result, server

    return asyncio.run(body())


# --------------------------------------------------------------------------- requests


def test_get_with_headers_and_json_path() -> None:
    got, server = run(
        lambda url: {
            "url": url + "/ok?x=1",
            "headers": [{"key": "Authorization", "value": SECRET}, {"key": "X-A", "value": "b"}],
            "jsonPath": "{$.data.ok}",
        }
    )
    assert got.value is True and got.phase is None
    (req,) = server.seen
    assert (req["method"], req["path"], req["query"]) == ("GET", "/ok", {"x": "1"})
    assert req["headers"]["Authorization"] == SECRET
    assert req["headers"]["X-A"] == "b"
    assert req["body"] == b""
    assert got.details["status"] == 200
    assert got.details["url"] == server.url + "/ok?..."
    assert got.details["method"] == "GET"


def test_post_json_body() -> None:
    got, server = run(
        lambda url: {
            "url": url + "/echo",
            "method": "POST",
            "jsonBody": {"service": "shop", "threshold": 0.5, "tags": ["a"]},
            "headers": [{"key": "Content-Type", "value": "text/plain"}],  # jsonBody wins
        }
    )
    (req,) = server.seen
    assert req["method"] == "POST"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"service": "shop", "threshold": 0.5, "tags": ["a"]}
    assert got.value["ct"] == "application/json"  # no jsonPath: the whole parsed body


def test_post_string_body_and_put() -> None:
    got, server = run(lambda url: {"url": url + "/echo", "method": "POST", "body": "a=1&b=2"})
    assert server.seen[0]["body"] == b"a=1&b=2"
    assert got.value == {"method": "POST", "body": "a=1&b=2", "ct": "application/octet-stream"}
    got, server = run(
        lambda url: {"url": url + "/echo", "method": "PUT", "body": "x", "jsonPath": "{.method}"}
    )
    assert server.seen[0]["method"] == "PUT"
    assert got.value == "PUT"


# --------------------------------------------------------------------------- results


@pytest.mark.parametrize(
    ("path", "json_path", "expected"),
    [
        ("/ok", "{$.data.ok}", True),
        ("/ok", "{.data.rate}", "0.25"),  # numeric strings stay strings
        ("/ok", "{$.items[0]}", 1),
        ("/ok", "{$.items[-1]}", 3),
        ("/ok", "{$.items[*]}", 1),  # the first match
        ("/items", "{.items[?(@.name == 'b')].value}", 7),
        ("/items", "{..value}", 1.5),
        ("/items", "$.items[1:].name", "b"),
        ("/ok", "{.data}", {"ok": True, "rate": "0.25"}),
        ("/number-as-text", "{$}", 0.97),
    ],
)
def test_json_path_first_match(path: str, json_path: str, expected: Any) -> None:
    got, _ = run(lambda url: {"url": url + path, "jsonPath": json_path})
    assert got.phase is None, got.message
    assert got.value == expected
    assert type(got.value) is type(expected)


def test_numeric_string_needs_as_float_in_conditions() -> None:
    got, _ = run(lambda url: {"url": url + "/ok", "jsonPath": "{.data.rate}"})
    m = measurement_from(web_metric({}, success_condition="asFloat(result) < 0.5"), got, 0, 1)
    assert m.phase is Phase.SUCCESSFUL, m.message


def test_non_json_body_is_a_string_result() -> None:
    got, _ = run(lambda url: {"url": url + "/text", "jsonPath": "{$.data}"})
    assert got.value == "all good\n"
    assert got.details["json"] is False
    m = measurement_from(web_metric({}, success_condition='result == "all good\\n"'), got, 0, 1)
    assert m.phase is Phase.SUCCESSFUL, m.message


def test_no_match_is_no_data() -> None:
    got, _ = run(lambda url: {"url": url + "/ok", "jsonPath": "{$.data.missing}"})
    assert got.phase is Phase.INCONCLUSIVE and got.value is None
    assert got.message == "no data: jsonPath {$.data.missing} matched nothing in the response"
    assert got.details["matches"] == 0


def test_json_null_is_no_data() -> None:
    got, _ = run(lambda url: {"url": url + "/null"})
    assert got.phase is Phase.INCONCLUSIVE


def test_redirects_are_followed() -> None:
    got, _ = run(lambda url: {"url": url + "/redirect", "jsonPath": "{.data.ok}"})
    assert got.value is True


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", [500, 404, 301])
def test_non_2xx_is_an_error(code: int) -> None:
    got, server = run(lambda url: {"url": url + f"/status?code={code}"})
    assert got.phase is Phase.ERROR
    shown = server.url + "/status?..."
    assert got.message == f"GET {shown} answered HTTP {code}, expected 2xx"


def test_timeout_is_an_error() -> None:
    got, server = run(lambda url: {"url": url + "/slow?s=3", "timeoutSeconds": 1})
    assert 0.9 < server.elapsed < 2
    assert got.phase is Phase.ERROR
    assert "did not answer within 1s" in got.message


def test_unreachable_is_an_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = MeasureContext(rollout="shop", service="shop", now=time.time())
    got = asyncio.run(
        WebMetrics().measure(web_metric({"url": f"http://127.0.0.1:{port}/"}), context)
    )
    assert got.phase is Phase.ERROR
    assert got.message.startswith(f"GET http://127.0.0.1:{port}/ is unreachable")


def test_secrets_never_appear_in_messages_or_details() -> None:
    def config(path: str) -> Callable[[str], dict[str, Any]]:
        return lambda url: {
            "url": url.replace("http://", "http://user:pw-s3cr3t@") + path + "token=qs-s3cr3t",
            "headers": [{"key": "Authorization", "value": SECRET}],
            "method": "POST",
            "body": "body-s3cr3t",
        }

    for path in ("/status?code=500&", "/slow?s=2&", "/ok?", "/nowhere?"):
        make = config(path)
        got, server = run(_slow(make) if path.startswith("/slow") else make)
        shown = repr(got)
        for secret in (SECRET, "tok-9f8e", "pw-s3cr3t", "qs-s3cr3t", "body-s3cr3t", "user:"):
            assert secret not in shown, (path, shown)
        # Sent, and it wins over the URL's user info (as in Go's HTTP client, which Argo uses).
        assert server.seen[0]["headers"]["Authorization"] == SECRET
        assert server.seen[0]["query"]["token"] == "qs-s3cr3t"
        assert server.seen[0]["body"] == b"body-s3cr3t"


def _slow(make: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    return lambda url: {**make(url), "timeoutSeconds": 1}


@pytest.mark.parametrize("extra", [{}, {"jsonPath": "{$[0]}"}])
def test_json_nested_too_deeply_is_an_error_not_a_crash(extra: dict[str, str]) -> None:
    got, _ = run(lambda url: {"url": url + "/deep", **extra})
    assert got.phase is Phase.ERROR
    assert got.message.endswith("/deep answered JSON nested too deeply to read")


def test_a_non_ascii_header_value_is_sent_as_utf8() -> None:
    got, server = run(
        lambda url: {"url": url + "/ok", "headers": [{"key": "X-Team", "value": "équipe-ß"}]}
    )
    assert got.phase is None, got.message
    assert server.seen[0]["headers"]["X-Team"] == "équipe-ß"


def test_a_header_value_with_a_line_break_is_refused_without_showing_it() -> None:
    value = "Bearer tok-from-a-secret-file\n"  # what `value: |` or a secret file ends with
    got, server = run(
        lambda url: {"url": url + "/ok", "headers": [{"key": "Authorization", "value": value}]}
    )
    assert got.phase is Phase.ERROR and not server.seen
    assert got.message.startswith("web: headers[0].value: the value of header 'Authorization'")
    assert "tok-from" not in repr(got)


@pytest.mark.parametrize("password", ["pw1x/cr3t", "s3cr3t?pw2x", "s3c#r3t-pw"])
def test_a_password_the_url_parser_misreads_never_reaches_the_message(password: str) -> None:
    # An unencoded '/', '?' or '#' ends the authority early: the parser takes what comes
    # before it in the password for the port, and the rest for the path.
    got, server = run(lambda url: {"url": url.replace("//", f"//user:{password}@") + "/ok"})
    assert got.phase is Phase.ERROR and not server.seen
    for part in password.replace("?", "/").replace("#", "/").split("/"):
        assert part not in got.message, got.message
    assert "percent-encode" in got.message

"""The prometheus provider against a real Prometheus scraping the real router's /metrics."""

from __future__ import annotations

import asyncio
import base64
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from coalmine.analysis.run import measurement_from
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.prometheus import PrometheusMetrics
from coalmine.spec.loader import load_text
from coalmine.spec.model import Analysis, Arg, Metric, TemplateRef
from coalmine.spec.resolve import resolve_analysis
from tests.fixtures.prometheus import PrometheusHandle
from tests.integration.test_router_support import Rig, rig
from tests.support.loopback import serve_all

T = TypeVar("T")
CANARY = 'sum(coalmine_router_requests_total{version="canary"})'
CANARY_REQUESTS = 7
STABLE_REQUESTS = 4


class LoopThread:
    """An event loop in a thread, so async servers outlive one test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Stack:
    rig: Rig
    prometheus: PrometheusHandle

    def router_count(self, version: str) -> float:
        """The router's own count of answered requests for ``version``, from its /metrics."""
        text = httpx.get(f"http://{self.rig.admin}/metrics", timeout=5).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "coalmine_router_requests_total"
                    and sample.labels.get("version") == version
                ):
                    total += sample.value
        return total


@pytest.fixture(scope="module")
def stack(start_prometheus_module: Any) -> Iterator[Stack]:
    loop = LoopThread()
    manager: AbstractAsyncContextManager[Rig] = rig()
    the_rig = loop.run(manager.__aenter__())
    try:
        with httpx.Client(timeout=5) as client:
            for version, n in (("canary", CANARY_REQUESTS), ("stable", STABLE_REQUESTS)):
                for i in range(n):
                    answer = client.get(
                        f"{the_rig.url}/item/{i}", headers={"X-Coalmine-Version": version}
                    )
                    assert answer.status_code == 200 and answer.text == version
        prom = start_prometheus_module([the_rig.admin])
        stack = Stack(the_rig, prom)
        assert stack.router_count("canary") == CANARY_REQUESTS
        prom.wait_for(
            CANARY,
            lambda data: (
                bool(data["result"]) and float(data["result"][0]["value"][1]) == CANARY_REQUESTS
            ),
        )
        yield stack
    finally:
        loop.run(manager.__aexit__(None, None, None))
        loop.close()


def prom_metric(address: str, query: str, **more: Any) -> Metric:
    conditions = {k: more.pop(k) for k in ("success_condition", "failure_condition") if k in more}
    return Metric(
        name="m",
        provider={"prometheus": {"address": address, "query": query, **more}},
        **conditions,
    )


def measure(metric: Metric, now: float | None = None) -> ProviderResult:
    context = MeasureContext(rollout="shop", service="shop", now=now or time.time())
    return asyncio.run(PrometheusMetrics().measure(metric, context))


# --------------------------------------------------------------------------- result shapes


def test_vector_result_is_a_list_whose_first_value_is_the_routers_count(stack: Stack) -> None:
    got = measure(prom_metric(stack.prometheus.url, CANARY))
    assert got.phase is None, got.message
    assert got.value == [stack.router_count("canary")] == [float(CANARY_REQUESTS)]
    assert got.details["series"] == 1
    assert got.details["query"] == CANARY
    assert got.details["address"] == stack.prometheus.url
    assert got.details["result_type"] == "vector"
    assert got.details["evaluated_at"] > 0


def test_a_vector_of_several_series_keeps_every_value(stack: Stack) -> None:
    query = 'sum by (version) (coalmine_router_requests_total{version=~"stable|canary"})'
    got = measure(prom_metric(stack.prometheus.url, query))
    assert sorted(got.value) == [float(STABLE_REQUESTS), float(CANARY_REQUESTS)]
    assert got.details["series"] == 2


def test_scalar_result_is_a_float(stack: Stack) -> None:
    got = measure(prom_metric(stack.prometheus.url, f"scalar({CANARY})"))
    assert got.phase is None, got.message
    assert isinstance(got.value, float)
    assert got.value == float(CANARY_REQUESTS)
    assert got.details["result_type"] == "scalar"


def test_range_query_is_one_flat_list_of_every_point_of_every_series(stack: Stack) -> None:
    stack.prometheus.wait_for(  # a few scrapes, so that each series has several points
        'count_over_time(coalmine_router_requests_total{version="canary",code_class="2xx"}[20s])'
        " >= 3"
    )
    now = time.time()
    query = 'coalmine_router_requests_total{version="canary"}'  # five series: one per class
    got = measure(
        prom_metric(
            stack.prometheus.url,
            query,
            rangeQuery={"start": 'now() - duration("20s")', "end": "now()", "step": "1s"},
        ),
        now=now,
    )
    assert got.phase is None, got.message
    assert got.details["result_type"] == "matrix"
    assert got.details["series"] == 5
    assert got.details["range"] == {"start": now - 20, "end": now, "step": 1.0}
    # The same range straight from the API, flattened series after series.
    data = stack.prometheus.api(
        "query_range", query=query, start=f"{now - 20:.3f}", end=f"{now:.3f}", step="1"
    )
    expected = [float(v) for s in data["result"] for _, v in s["values"]]
    assert got.value == expected
    assert all(isinstance(v, float) for v in got.value)
    assert max(got.value) == float(CANARY_REQUESTS)  # the 2xx series' latest points
    assert len(got.value) == got.details["points"] >= 15


def test_range_query_with_rfc3339_times(stack: Stack) -> None:
    from datetime import UTC, datetime

    end = datetime.now(UTC).replace(microsecond=0)
    start = end.timestamp() - 10
    got = measure(
        prom_metric(
            stack.prometheus.url,
            CANARY,
            rangeQuery={
                "start": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"),
                "end": end.isoformat(),
                "step": "2s",
            },
        )
    )
    assert got.phase is None, got.message
    assert got.details["range"]["start"] == start
    assert set(got.value) <= {float(CANARY_REQUESTS)}


def test_unsupported_range_expression_is_an_error(stack: Stack) -> None:
    got = measure(
        prom_metric(
            stack.prometheus.url,
            CANARY,
            rangeQuery={"start": 'now() + duration("5m")', "end": "now()", "step": "1m"},
        )
    )
    assert got.phase is Phase.ERROR
    assert "rangeQuery.start" in got.message and "unsupported time expression" in got.message


def test_nan_stays_nan(stack: Stack) -> None:
    got = measure(
        prom_metric(stack.prometheus.url, f"{CANARY} * 0 / 0", success_condition="isNaN(result[0])")
    )
    assert len(got.value) == 1 and math.isnan(got.value[0])
    m = measurement_from(
        prom_metric(stack.prometheus.url, "x", success_condition="isNaN(result[0])"), got, 0, 1
    )
    assert m.phase is Phase.SUCCESSFUL


def test_an_instant_query_of_a_range_selector_is_an_error(stack: Stack) -> None:
    # Prometheus answers a matrix: its points are not one value per series, so `result[0]`
    # would judge whichever point came first. Argo refuses it too.
    got = measure(
        prom_metric(stack.prometheus.url, CANARY.removeprefix("sum(").removesuffix(")") + "[1m]")
    )
    assert got.phase is Phase.ERROR and got.value is None
    assert got.details["result_type"] == "matrix"
    assert got.message.startswith("the instant query returned a range vector (matrix)")
    assert "rate(x[5m])" in got.message


def test_a_string_result_is_an_error_as_in_argo(stack: Stack) -> None:
    got = measure(prom_metric(stack.prometheus.url, '"hello"'))
    assert got.phase is Phase.ERROR
    assert "'string' is not supported" in got.message


# --------------------------------------------------------------------------- no data and errors


def test_a_query_matching_nothing_is_no_data(stack: Stack) -> None:
    got = measure(prom_metric(stack.prometheus.url, 'coalmine_router_requests_total{version="x"}'))
    assert got.phase is Phase.INCONCLUSIVE
    assert got.value is None
    assert got.message == "no data: the query returned no series"
    assert got.details["series"] == 0
    m = measurement_from(prom_metric("http://x", "q", success_condition="true"), got, 0, 1)
    assert m.phase is Phase.INCONCLUSIVE  # never Successful without data


def test_a_range_query_matching_nothing_is_no_data(stack: Stack) -> None:
    got = measure(
        prom_metric(
            stack.prometheus.url,
            "nothing_here_total",
            rangeQuery={"start": 'now() - duration("1m")', "end": "now()", "step": "5s"},
        )
    )
    assert got.phase is Phase.INCONCLUSIVE
    assert got.message == "no data: the query returned no series"


def test_bad_promql_is_an_error_with_prometheus_message(stack: Stack) -> None:
    got = measure(prom_metric(stack.prometheus.url, "sum(coalmine_router_requests_total"))
    assert got.phase is Phase.ERROR
    assert got.message.startswith(f"prometheus at {stack.prometheus.url} refused the query: ")
    assert "bad_data" in got.message and "parse error" in got.message
    assert "\n" not in got.message


def test_unreachable_address_is_an_error_without_credentials() -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = measure(prom_metric(f"http://admin:s3cr3t-pw@127.0.0.1:{port}", CANARY))
    assert got.phase is Phase.ERROR
    assert got.message.startswith(f"prometheus at http://127.0.0.1:{port} is unreachable")
    assert "s3cr3t" not in repr(got) and "admin" not in repr(got)


def test_a_slow_server_times_out_as_an_error() -> None:
    async def body() -> ProviderResult:
        async with fake_prometheus(delay=5) as (url, _):
            context = MeasureContext(rollout="shop", service="shop", now=time.time())
            started = time.monotonic()
            result = await PrometheusMetrics().measure(prom_metric(url, "up", timeout=1), context)
            assert time.monotonic() - started < 3
            return result

    got = asyncio.run(body())
    assert got.phase is Phase.ERROR
    assert "did not answer within 1s" in got.message


# --------------------------------------------------------------------------- what is sent


def test_the_query_is_sent_as_is_and_templating_happened_upstream(stack: Stack) -> None:
    text = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  args: [{name: version}, {name: address}]
  metrics:
    - name: canary-requests
      successCondition: result[0] >= 1
      provider:
        prometheus:
          address: "{{args.address}}"
          query: |
            sum(coalmine_router_requests_total{version=~"{{args.version}}|none", code_class!~"5.+"})
            + 0 # a PromQL comment, with "quotes" & more
"""
    bundle = load_text(text, "t.yaml")
    analysis = Analysis(
        (TemplateRef("t"),),
        (Arg("version", "canary"), Arg("address", stack.prometheus.url)),
    )
    (metric,) = resolve_analysis(bundle, analysis)
    query = metric.provider_config["query"]
    assert 'version=~"canary|none"' in query
    got = measure(metric)
    assert got.details["query"] == query
    assert got.value == [float(CANARY_REQUESTS)]
    m = measurement_from(metric, got, 0, 1)
    assert m.phase is Phase.SUCCESSFUL, m.message


def test_condition_through_measurement_from(stack: Stack) -> None:
    metric = prom_metric(stack.prometheus.url, CANARY, success_condition="result[0] >= 1")
    got = measure(metric)
    m = measurement_from(metric, got, 1.0, 2.0)
    assert m.phase is Phase.SUCCESSFUL
    assert m.value == [float(CANARY_REQUESTS)]
    failing = prom_metric(stack.prometheus.url, CANARY, success_condition="result[0] >= 1000")
    assert measurement_from(failing, measure(failing), 1.0, 2.0).phase is Phase.FAILED


def test_headers_basic_auth_and_the_get_fallback() -> None:
    async def body() -> tuple[ProviderResult, list[dict[str, Any]]]:
        async with fake_prometheus(refuse_post=True) as (url, seen):
            metric = prom_metric(
                url,
                "up",
                headers=[{"key": "X-Scope-OrgID", "value": "tenant-a"}],
                authentication={"basicAuth": {"username": "bob", "password": "hunter22"}},
            )
            context = MeasureContext(rollout="shop", service="shop", now=1700000000.5)
            return await PrometheusMetrics().measure(metric, context), seen

    got, seen = asyncio.run(body())
    assert got.value == [1.0]
    assert [r["method"] for r in seen] == ["POST", "GET"]
    last = seen[-1]
    assert last["path"] == "/api/v1/query"
    assert last["params"] == {"query": "up", "time": "1700000000.500"}
    assert last["headers"]["X-Scope-OrgID"] == "tenant-a"
    assert last["headers"]["Authorization"].startswith("Basic ")
    assert "hunter22" not in repr(got) and "tenant-a" not in repr(got)


async def _answer_with(
    body: str, status: int, user_info: str = "", **config: Any
) -> ProviderResult:
    """Measure against a loopback server that answers every request with ``body``, in which
    ``{auth}`` is the request's Authorization header (a proxy's error page that echoes it)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        text = body.replace("{auth}", request.headers.get("Authorization", ""))
        return web.Response(status=status, text=text, content_type="text/html")

    async with serve_all(handle) as url:
        address = url.replace("//", f"//{user_info}@") if user_info else url
        context = MeasureContext(rollout="shop", service="shop", now=time.time())
        return await PrometheusMetrics().measure(prom_metric(address, "up", **config), context)


@pytest.mark.parametrize(
    "config",
    [
        {"user_info": "admin:pw-s3cr3t"},
        {"authentication": {"basicAuth": {"username": "admin", "password": "pw-s3cr3t"}}},
        {"headers": [{"key": "Authorization", "value": "Bearer pw-s3cr3t"}]},
    ],
    ids=["url", "basicAuth", "header"],
)
def test_credentials_echoed_by_a_proxy_page_never_reach_the_message(config: dict[str, Any]) -> None:
    got = asyncio.run(_answer_with("<h1>Bad gateway</h1> you sent {auth}", 502, **config))
    assert got.phase is Phase.ERROR
    assert "answered HTTP 502 that is not a Prometheus API answer: <h1>Bad gateway</h1>" in (
        got.message
    )
    token = base64.b64encode(b"admin:pw-s3cr3t").decode()
    for secret in ("pw-s3cr3t", token, token[:12]):
        assert secret not in repr(got), got.message


@pytest.mark.parametrize(
    "body",
    ['{"answer": 42}', "[" * 50_000 + "]" * 50_000],
    ids=["json-without-status", "deeply-nested"],
)
def test_an_answer_that_is_not_the_prometheus_api_is_an_error(body: str) -> None:
    got = asyncio.run(_answer_with(body, 200))
    assert got.phase is Phase.ERROR
    assert "answered HTTP 200 that is not a Prometheus API answer" in got.message


def test_header_values_are_checked_before_sending_and_sent_as_utf8() -> None:
    async def body() -> tuple[ProviderResult, ProviderResult, list[dict[str, Any]]]:
        async with fake_prometheus() as (url, seen):
            context = MeasureContext(rollout="shop", service="shop", now=time.time())
            bad = await PrometheusMetrics().measure(
                prom_metric(url, "up", headers=[{"key": "Authorization", "value": "tok-1\n"}]),
                context,
            )
            good = await PrometheusMetrics().measure(
                prom_metric(url, "up", headers=[{"key": "X-Team", "value": "équipe"}]), context
            )
            return bad, good, seen

    bad, good, seen = asyncio.run(body())
    assert bad.phase is Phase.ERROR and "tok-1" not in repr(bad)
    assert bad.message.startswith("prometheus: headers[0].value: the value of header")
    assert good.value == [1.0] and len(seen) == 1
    assert seen[0]["headers"]["X-Team"] == "équipe"


@asynccontextmanager
async def fake_prometheus(
    delay: float = 0, refuse_post: bool = False
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the HTTP API: records requests, may be slow or refuse POST."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "params": {**dict(request.query), **form},
                "headers": dict(request.headers),
            }
        )
        if delay:
            await asyncio.sleep(delay)
        if refuse_post and request.method == "POST":
            return web.Response(status=405)
        return web.json_response(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]},
            }
        )

    async with serve_all(handle) as url:
        yield url, seen

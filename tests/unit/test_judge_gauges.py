"""Gauge metrics of the coalmine/judge plug-in: configuration, the Prometheus range queries
(through httpx.MockTransport), redaction, and how gauges join the router's requests. The real
Prometheus is exercised in tests/integration/test_judge_gauges.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from coalmine.analysis.judge import JudgeData, Request
from coalmine.analysis.judge.model import Sample
from coalmine.analysis.types import Phase
from coalmine.errors import SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.judge import (
    CombinedSource,
    GaugeSourceError,
    LiveJudgeMetrics,
    PrometheusGauges,
    parse_judge_config,
)
from coalmine.metrics.prometheus import MAX_POINTS, PrometheusMetrics
from coalmine.spec.model import Metric
from coalmine.spec.resolve import check_provider

QUERY = 'avg(rate(process_cpu_seconds_total{version="{{version}}"}[1m]))'
ADDRESS = "http://prom.test:9090"


def config(**more: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alpha": 0.05,
        "gaugeBucketSeconds": 2,
        "prometheus": {"address": ADDRESS, "timeout": 3},
        "metrics": [
            {"name": "cpu", "kind": "gauge", "query": QUERY, "relativeTolerance": 1.2},
        ],
    }
    base.update(more)
    return base


def judge_metric(cfg: dict[str, Any]) -> Metric:
    return Metric(name="judge", provider={"plugin": {"coalmine/judge": cfg}})


def matrix(*series: list[tuple[float, str]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[t, v] for t, v in points]} for points in series],
        },
    }


class FakePrometheus:
    """Answers range queries: ``values[version]`` at every step from start to end."""

    def __init__(self, values: dict[str, str], status: int = 200) -> None:
        self.values = values
        self.status = status
        self.forms: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query_range"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        version = "canary" if 'version="canary"' in form["query"] else "stable"
        assert f'version="{version}"' in form["query"]
        start, end, step = (float(form[k]) for k in ("start", "end", "step"))
        points = []
        t = start
        while t <= end + 1e-9:
            points.append((t, self.values[version]))
            t += step
        return httpx.Response(self.status, content=json.dumps(matrix(points)))

    def client(self) -> PrometheusMetrics:
        return PrometheusMetrics(transport=httpx.MockTransport(self))


# --------------------------------------------------------------------------- configuration


def test_gauge_metrics_parse_with_their_query_and_bucket() -> None:
    spec = parse_judge_config(config())
    assert spec.gauge_bucket_seconds == 2.0
    assert spec.metrics[0].kind == "gauge"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"metrics": [{"name": "cpu", "kind": "gauge"}]}, "metrics[0].query: a gauge metric"),
        (
            {"metrics": [{"name": "cpu", "kind": "gauge", "query": "avg(cpu)"}]},
            "must contain {{version}}",
        ),
        (
            {"metrics": [{"name": "e", "kind": "ratio", "query": QUERY}]},
            "metrics[0].query: only gauge metrics",
        ),
        ({"prometheus": None}, "coalmine/judge.prometheus: gauge metrics need"),
        ({"prometheus": "http://x"}, "coalmine/judge.prometheus: expected a mapping"),
        ({"prometheus": {"address": ADDRESS, "query": "up"}}, "prometheus.query: not allowed"),
        ({"prometheus": {"adress": ADDRESS}}, "prometheus.adress: unknown field"),
        ({"prometheus": {"address": "prom:9090"}}, "prometheus.address: address must be"),
        ({"prometheus": {"address": ADDRESS, "timeout": "1m"}}, "prometheus.timeout:"),
        ({"gaugeBucketSeconds": 0}, "gauge_bucket_seconds must be > 0"),
        ({"gaugeBuckets": 1}, "did you mean 'gaugeBucketSeconds'"),
    ],
)
def test_bad_gauge_configs_name_the_field(change: dict[str, Any], text: str) -> None:
    cfg = config(**change)
    if change.get("prometheus", "") is None:
        del cfg["prometheus"]
    with pytest.raises(ValueError, match="coalmine/judge") as info:
        parse_judge_config(cfg)
    assert text in str(info.value)


def test_validate_reports_gauge_problems_and_skips_unresolved_args() -> None:
    check_provider(judge_metric(config(prometheus={"address": "{{args.prometheus}}"})))
    with pytest.raises(SpecError, match="did you mean 'address'"):
        check_provider(judge_metric(config(prometheus={"adress": ADDRESS})))


# --------------------------------------------------------------------------- the source


def test_range_queries_per_version_become_samples_on_one_grid() -> None:
    fake = FakePrometheus({"canary": "0.5", "stable": "0.25"})
    source = PrometheusGauges.from_config(config(), fake.client())
    assert source is not None
    data = asyncio.run(source(1000.0, 1010.0))
    assert sorted(f["query"] for f in fake.forms) == [
        QUERY.replace("{{version}}", "canary"),
        QUERY.replace("{{version}}", "stable"),
    ]
    assert {(f["start"], f["end"], f["step"]) for f in fake.forms} == {
        ("1000.000", "1010.000", "2.000")
    }
    assert data.requests == ()
    canary = [(s.t, s.value) for s in data.samples if s.version == "canary"]
    baseline = [(s.t, s.value) for s in data.samples if s.version == "baseline"]
    assert canary == [(1000.0 + 2 * k, 0.5) for k in range(6)]
    assert [t for t, _ in baseline] == [t for t, _ in canary]
    assert {v for _, v in baseline} == {0.25}


def test_long_runs_are_cut_into_range_queries_prometheus_accepts() -> None:
    source = PrometheusGauges.from_config(config(gaugeBucketSeconds=1))
    assert source is not None
    windows = source.windows(0.0, 25_000.0)
    assert windows[0] == (0.0, MAX_POINTS - 1.0) and windows[-1][1] == 25_000.0
    assert all((b - a) / 1.0 < MAX_POINTS for a, b in windows)
    assert all(b2 == a1 + 1.0 for (_, a1), (b2, _) in itertools.pairwise(windows))
    assert source.windows(5.0, 5.0) == [(5.0, 5.0)]


def test_nan_points_are_dropped_and_several_series_all_count() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        doc = matrix([(1.0, "NaN"), (2.0, "1.5")], [(2.0, "+Inf"), (2.0, "2.5")])
        return httpx.Response(200, content=json.dumps(doc))

    source = PrometheusGauges.from_config(
        config(), PrometheusMetrics(transport=httpx.MockTransport(answer))
    )
    assert source is not None
    data = asyncio.run(source(0.0, 2.0))
    assert sorted(s.value for s in data.samples if s.version == "canary") == [1.5, 2.5]


def test_a_non_matrix_answer_is_a_source_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        doc = {"status": "success", "data": {"resultType": "vector", "result": []}}
        return httpx.Response(200, content=json.dumps(doc))

    source = PrometheusGauges.from_config(
        config(), PrometheusMetrics(transport=httpx.MockTransport(answer))
    )
    assert source is not None
    with pytest.raises(GaugeSourceError, match="instead of a matrix"):
        asyncio.run(source(0.0, 2.0))


def test_combined_source_has_requests_and_samples() -> None:
    async def requests(since: float, now: float) -> JudgeData:
        return JudgeData(requests=(Request(1.0, "canary", 10.0, 200),))

    async def gauges(since: float, now: float) -> JudgeData:
        return JudgeData(samples=(Sample(1.0, "canary", "cpu", 0.5),))

    data = asyncio.run(CombinedSource(requests, gauges)(0.0, 2.0))
    assert len(data.requests) == 1 and len(data.samples) == 1


# --------------------------------------------------------------------------- measurements


def context(**more: Any) -> MeasureContext:
    return MeasureContext(rollout="shop", service="shop", now=1030.0, run_started_at=1000.0, **more)


async def no_requests(since: float, now: float) -> JudgeData:
    return JudgeData()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_prometheus_is_an_error_without_credentials() -> None:
    address = f"http://admin:hunter22@127.0.0.1:{_free_port()}"
    cfg = config(
        prometheus={
            "address": address,
            "timeout": 2,
            "headers": [{"key": "Authorization", "value": "Bearer sekret-token"}],
        }
    )
    got = asyncio.run(LiveJudgeMetrics(no_requests).measure(judge_metric(cfg), context()))
    assert got.phase == Phase.ERROR
    assert "unreachable" in got.message and "gauge 'cpu'" in got.message
    assert "hunter22" not in got.message and "admin" not in got.message


def test_a_refusal_echoing_a_header_is_scrubbed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        token = request.headers["X-Token"]
        doc = {"status": "error", "errorType": "bad_data", "error": f"token {token} refused"}
        return httpx.Response(400, content=json.dumps(doc))

    cfg = config(
        prometheus={"address": ADDRESS, "headers": [{"key": "X-Token", "value": "tok-12345"}]}
    )
    live = LiveJudgeMetrics(no_requests, PrometheusMetrics(transport=httpx.MockTransport(answer)))
    got = asyncio.run(live.measure(judge_metric(cfg), context()))
    assert got.phase == Phase.ERROR and "refused the query" in got.message
    assert "tok-12345" not in got.message and "***" in got.message


def test_the_live_judge_fails_a_canary_gauge_over_tolerance() -> None:
    fake = FakePrometheus({"canary": "0.9", "stable": "0.3"})
    cfg = config(gaugeBucketSeconds=1)
    cfg["metrics"][0].update(minSamples=5, critical=True)
    got = asyncio.run(
        LiveJudgeMetrics(no_requests, fake.client()).measure(judge_metric(cfg), context())
    )
    assert got.phase == Phase.FAILED, got.message
    equal = FakePrometheus({"canary": "0.3", "stable": "0.3"})
    got = asyncio.run(
        LiveJudgeMetrics(no_requests, equal.client()).measure(
            judge_metric(cfg), context(final_look=True)
        )
    )
    assert got.phase == Phase.SUCCESSFUL, got.message


def test_without_gauges_the_live_judge_reads_only_the_router() -> None:
    calls: list[float] = []

    async def requests(since: float, now: float) -> JudgeData:
        calls.append(since)
        return JudgeData()

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no gauge metric: Prometheus must not be asked")

    cfg = {"metrics": [{"name": "errors", "kind": "ratio"}]}
    live = LiveJudgeMetrics(requests, PrometheusMetrics(transport=httpx.MockTransport(never)))
    got = asyncio.run(live.measure(judge_metric(cfg), context()))
    assert got.phase == Phase.RUNNING and calls == [1000.0]


def test_registry_uses_the_live_judge_with_the_injected_prometheus_client() -> None:
    from coalmine.metrics.registry import Providers
    from coalmine.traffic.client import RouterClient

    client = PrometheusMetrics(transport=httpx.MockTransport(FakePrometheus({})))
    router = RouterClient("127.0.0.1:1")
    provider = Providers(router, prometheus=client).for_metric(judge_metric(config()))
    assert isinstance(provider, LiveJudgeMetrics) and provider.prometheus is client
    asyncio.run(router.aclose())

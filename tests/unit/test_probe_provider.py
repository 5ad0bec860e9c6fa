"""The coalmine/probe plug-in: its configuration, and the ProbeResults contract with an
in-memory source (``StoreProbeResults`` over the state database behaves like this fake)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from coalmine.analysis.types import Phase, ProviderResult
from coalmine.errors import CoalmineError, NotSupportedError, SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.probe import (
    NO_SOURCE,
    ProbeConfig,
    ProbeMetrics,
    ProbeQuery,
    ProbeResults,
    ProbeSummary,
    parse_probe_config,
)
from coalmine.metrics.registry import Providers
from coalmine.spec.model import Metric
from coalmine.spec.resolve import SUPPORTED_PLUGINS, check_provider

NOW = 10_000.0


@dataclass
class FakeProbes:
    """Summaries by (service, flow, version) of the environment ``env``; records every call."""

    summaries: dict[tuple[str, str | None, str], ProbeSummary] = field(default_factory=dict)
    calls: list[tuple[str, str, str | None, str, float, float]] = field(default_factory=list)
    fail: Exception | None = None
    env: str = "prod"

    async def summary(self, query: ProbeQuery) -> ProbeSummary | None:
        q = query
        self.calls.append((q.service, q.environment, q.flow, q.version, q.since, q.until))
        if self.fail is not None:
            raise self.fail
        if q.environment != self.env:
            return None
        return self.summaries.get((q.service, q.flow, q.version))


def metric(**config: Any) -> Metric:
    """A coalmine/probe metric; ``environment`` is prod unless given (None: left out)."""
    config = {"environment": "prod", **config}
    if config["environment"] is None:
        del config["environment"]
    return Metric(name="probe", provider={"plugin": {"coalmine/probe": config}})


def measure(results: ProbeResults | None, m: Metric, time_scale: float = 1.0) -> ProviderResult:
    context = MeasureContext(rollout="shop", service="shop", now=NOW, time_scale=time_scale)
    return asyncio.run(ProbeMetrics(results).measure(m, context))


def healthy(runs: int = 10, successes: int = 10, **more: Any) -> ProbeSummary:
    return ProbeSummary(runs=runs, successes=successes, **more)


# --------------------------------------------------------------------------- configuration


def test_defaults_and_all_fields() -> None:
    assert parse_probe_config({"query": "success-ratio", "environment": "prod"}) == ProbeConfig(
        "success-ratio", "prod"
    )
    got = parse_probe_config(
        {
            "query": "latency",
            "environment": "staging",
            "flow": "checkout",
            "quantile": "0.95",  # args are substituted as strings
            "version": "canary",
            "window": "2m",
            "minRuns": "5",
        }
    )
    assert got == ProbeConfig("latency", "staging", "checkout", 0.95, "canary", 120.0, 5)


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({}, "query", "required"),
        ({"query": "errors"}, "query", "is not one of"),
        ({"query": "score", "verison": "canary"}, "verison", "did you mean 'version'"),
        ({"query": "score", "version": "baseline"}, "version", "canary, stable"),
        ({"query": "score", "quantile": 0.9}, "quantile", "only to query: latency"),
        ({"query": "latency", "quantile": 1.5}, "quantile", "between 0 and 1"),
        ({"query": "latency", "quantile": True}, "quantile", "between 0 and 1"),
        ({"query": "score", "window": "soon"}, "window", "duration"),
        ({"query": "score", "window": "0s"}, "window", "longer than zero"),
        ({"query": "score", "minRuns": 0}, "minRuns", "at least 1"),
        ({"query": "score", "minRuns": 2.5}, "minRuns", "at least 1"),
        ({"query": "score", "flow": ""}, "flow", "probe flow"),
        ({"query": "score", "environment": None}, "environment", "required"),
        ({"query": "score", "environment": " "}, "environment", "e.g. environment: prod"),
        ({"query": "score", "environment": 3}, "environment", "expected a name"),
    ],
)
def test_bad_configs_name_the_field(config: dict[str, Any], field: str, text: str) -> None:
    config = {"environment": "prod", **config}
    if config["environment"] is None:
        del config["environment"]
    with pytest.raises(ValueError) as info:
        parse_probe_config(config)
    assert f"coalmine/probe.{field}:" in str(info.value)
    assert text in str(info.value)
    assert getattr(info.value, "field", None) == field


def test_validate_checks_probe_configs_and_skips_unresolved_args() -> None:
    assert "coalmine/probe" in SUPPORTED_PLUGINS
    check_provider(metric(query="score", version="canary"))
    check_provider(metric(query="{{args.q}}", minRuns="{{args.n}}", quantile=0.9))
    with pytest.raises(SpecError) as info:
        check_provider(metric(query="score", windwo="5m"), "spec.metrics[0].provider")
    assert not isinstance(info.value, NotSupportedError)
    assert info.value.field == "spec.metrics[0].provider.plugin.coalmine/probe.windwo"
    assert "did you mean 'window'" in info.value.message
    check_provider(metric(query="score", environment="{{args.env}}"))
    with pytest.raises(SpecError) as info:
        check_provider(metric(query="score", environment=None), "spec.metrics[0].provider")
    assert info.value.field == "spec.metrics[0].provider.plugin.coalmine/probe.environment"


# --------------------------------------------------------------------------- measurements


def test_without_a_results_source_it_is_no_data_never_success() -> None:
    got = measure(None, metric(query="success-ratio"))
    assert got.phase == Phase.INCONCLUSIVE
    assert got.message == NO_SOURCE and got.message.startswith("no data:")


def test_both_versions_without_version_and_the_window_in_the_call() -> None:
    probes = FakeProbes(
        {
            ("shop", None, "canary"): healthy(10, 9),
            ("shop", None, "stable"): healthy(10, 10),
        }
    )
    got = measure(probes, metric(query="success-ratio", window="10m"), time_scale=2.0)
    assert got.phase is None, got.message
    assert got.value == {"canary": 0.9, "stable": 1.0}
    assert probes.calls == [
        ("shop", "prod", None, "canary", NOW - 300.0, NOW),
        ("shop", "prod", None, "stable", NOW - 300.0, NOW),
    ]
    assert got.details["window_s"] == 300.0
    assert got.details["canary"]["runs"] == 10


def test_one_version_flow_score_and_latency() -> None:
    summary = healthy(score=0.8, latency_ms={"p99": 420.0, "p50": 80.0}, success_ratio=0.75)
    probes = FakeProbes({("shop", "checkout", "canary"): summary})
    base = {"flow": "checkout", "version": "canary"}
    assert measure(probes, metric(query="score", **base)).value == 0.8
    assert measure(probes, metric(query="latency", **base)).value == 420.0
    assert measure(probes, metric(query="latency", quantile=0.5, **base)).value == 80.0
    # The service's own success ratio wins over successes / runs.
    assert measure(probes, metric(query="success-ratio", **base)).value == 0.75
    assert {c[2] for c in probes.calls} == {"checkout"}


def test_another_environments_runs_are_not_this_ones() -> None:
    probes = FakeProbes({("shop", None, "canary"): healthy(), ("shop", None, "stable"): healthy()})
    got = measure(probes, metric(query="success-ratio", environment="staging"))
    assert got.phase == Phase.INCONCLUSIVE
    assert "canary has no probe runs in staging" in got.message
    assert got.details["environment"] == "staging"
    assert {c[1] for c in probes.calls} == {"staging"}


@pytest.mark.parametrize(
    ("summary", "config", "text"),
    [
        (None, {"query": "success-ratio"}, "canary has no probe runs of flow 'login' in prod"),
        (healthy(2, 2), {"query": "success-ratio"}, "canary had 2 probe runs"),
        (healthy(2, 2), {"query": "score", "minRuns": 2}, "canary probes report no score"),
        (healthy(), {"query": "latency", "quantile": 0.9}, "no p90 latency"),
    ],
)
def test_too_few_runs_or_a_missing_value_is_no_data(
    summary: ProbeSummary | None, config: dict[str, Any], text: str
) -> None:
    probes = FakeProbes({} if summary is None else {("shop", "login", "canary"): summary})
    got = measure(probes, metric(flow="login", version="canary", **config))
    assert got.phase == Phase.INCONCLUSIVE
    assert got.message.startswith("no data:") and text in got.message
    assert got.value is None


def test_one_short_version_makes_the_pair_no_data() -> None:
    probes = FakeProbes(
        {("shop", None, "canary"): healthy(1, 1), ("shop", None, "stable"): healthy()}
    )
    got = measure(probes, metric(query="success-ratio", minRuns=3))
    assert got.phase == Phase.INCONCLUSIVE and "canary had 1 probe runs" in got.message


@pytest.mark.parametrize(
    "error", [CoalmineError("probe service is down"), ConnectionRefusedError("refused")]
)
def test_a_failing_service_is_an_error_measurement(error: Exception) -> None:
    got = measure(FakeProbes(fail=error), metric(query="score"))
    assert got.phase == Phase.ERROR and got.message.startswith("probes: ")


def test_a_bad_config_is_an_error_measurement() -> None:
    got = measure(FakeProbes(), metric(query="nope"))
    assert got.phase == Phase.ERROR and "coalmine/probe.query" in got.message


def test_registry_serves_the_probe_plugin_with_the_given_results() -> None:
    from coalmine.metrics.probe import ProbeMetrics as Provider

    class Router:  # not a RouterClient: only what Providers stores
        pass

    probes = FakeProbes()
    provider = Providers(Router(), probes=probes).for_metric(metric(query="score"))  # type: ignore[arg-type]
    assert isinstance(provider, Provider) and provider.results is probes
    without = Providers(Router()).for_metric(metric(query="score"))  # type: ignore[arg-type]
    assert isinstance(without, Provider) and without.results is None

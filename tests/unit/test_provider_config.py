"""Validation of the prometheus and web provider configurations, as `validate` reports it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from coalmine.analysis.types import Phase
from coalmine.errors import NotSupportedError, SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.prometheus import PrometheusMetrics, resolve_time
from coalmine.metrics.prometheus import parse_config as parse_prometheus
from coalmine.metrics.registry import Providers
from coalmine.metrics.web import WebMetrics
from coalmine.metrics.web import parse_config as parse_web
from coalmine.spec.loader import load_bundle
from coalmine.spec.model import Metric
from coalmine.spec.resolve import SUPPORTED_PROVIDERS, check_http_provider_config, check_runnable

HEAD = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: t
spec:
  args:
    - name: prom
      value: http://127.0.0.1:9090
  metrics:
    - name: first
      provider:
        web: {url: "http://127.0.0.1:1/ok"}
    - name: checked
      successCondition: result[0] >= 1
      provider:
"""
METRIC_LINE = 13  # "- name: checked"


def problems(tmp_path: Path, provider: str) -> list[SpecError]:
    path = tmp_path / "t.yaml"
    path.write_text(HEAD + provider)
    return check_runnable(load_bundle([path]))


def one_problem(tmp_path: Path, provider: str) -> SpecError:
    (err,) = problems(tmp_path, provider)
    assert err.file == str(tmp_path / "t.yaml")
    assert err.line == METRIC_LINE
    return err


def test_both_providers_are_supported() -> None:
    assert {"prometheus", "web"} <= set(SUPPORTED_PROVIDERS)


def test_valid_configurations_pass(tmp_path: Path) -> None:
    provider = """\
        prometheus:
          address: "{{args.prom}}"
          query: sum(up)
          timeout: 40
          insecure: true
          headers: [{key: X-Scope-OrgID, value: tenant_a}]
          authentication: {basicAuth: {username: u, password: p}}
          rangeQuery: {start: 'now() - duration("5m")', end: 'now()', step: 1m}
"""
    assert problems(tmp_path, provider) == []


def test_missing_address(tmp_path: Path) -> None:
    err = one_problem(tmp_path, "        prometheus: {query: up}\n")
    assert err.field == "spec.metrics[1].provider.prometheus.address"
    assert err.message == "missing required field 'address'"
    assert err.one_line().startswith(f"{tmp_path / 't.yaml'}:{METRIC_LINE}: ")


def test_web_method_delete(tmp_path: Path) -> None:
    err = one_problem(tmp_path, "        web: {url: 'http://x/y', method: DELETE}\n")
    assert err.field == "spec.metrics[1].provider.web.method"
    assert "unsupported method 'DELETE'" in err.message
    assert err.hint == "use GET, POST or PUT"


def test_web_lower_case_method_says_why(tmp_path: Path) -> None:
    err = one_problem(tmp_path, "        web: {url: 'http://x/y', method: post}\n")
    assert err.hint == "Argo accepts upper case only: POST"


def test_body_and_json_body(tmp_path: Path) -> None:
    provider = "        web: {url: 'http://x/y', method: POST, body: 'a', jsonBody: {a: 1}}\n"
    err = one_problem(tmp_path, provider)
    assert err.message == "use either body or jsonBody, not both"
    assert err.field == "spec.metrics[1].provider.web.jsonBody"


def test_body_with_get(tmp_path: Path) -> None:
    err = one_problem(tmp_path, "        web: {url: 'http://x/y', jsonBody: {a: 1}}\n")
    assert "jsonBody needs method POST or PUT" in err.message
    assert err.hint == "add method: POST"


def test_unknown_top_level_key_is_a_load_error_with_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(HEAD + "        web: {url: 'http://x/y', jsonpath: '{.a}'}\n")
    with pytest.raises(SpecError) as info:
        load_bundle([path])
    assert info.value.file == str(path)
    assert info.value.line == METRIC_LINE + 3
    assert info.value.message == "unknown field 'jsonpath'"
    assert info.value.hint == "did you mean 'jsonPath'?"


def test_unknown_nested_key_with_did_you_mean(tmp_path: Path) -> None:
    provider = """\
        prometheus:
          address: http://p:9090
          query: up
          rangeQuery: {start: now(), end: now(), stpe: 1m}
"""
    err = one_problem(tmp_path, provider)
    assert err.message == "unknown field 'stpe'"
    assert err.hint == "did you mean 'step'?"
    assert err.field == "spec.metrics[1].provider.prometheus.rangeQuery.stpe"
    header = "        web: {url: 'http://x', headers: [{name: A, value: b}]}\n"
    err = one_problem(tmp_path, header)
    assert err.message == "unknown field 'name'"
    assert err.field == "spec.metrics[1].provider.web.headers[0].name"


def test_sigv4_and_oauth2_are_not_supported_yet(tmp_path: Path) -> None:
    for kind in ("sigv4: {region: eu-west-1}", "oauth2: {tokenUrl: 'http://t', clientId: c}"):
        provider = f"""\
        prometheus:
          address: http://p:9090
          query: up
          authentication: {{{kind}}}
"""
        err = one_problem(tmp_path, provider)
        assert isinstance(err, NotSupportedError)
        name = kind.split(":")[0]
        assert err.message == f"authentication.{name} is not supported yet"
        assert err.field == f"spec.metrics[1].provider.prometheus.authentication.{name}"


def test_web_authentication_is_not_supported_yet(tmp_path: Path) -> None:
    provider = "        web: {url: 'http://x', authentication: {oauth2: {tokenUrl: 'http://t'}}}\n"
    err = one_problem(tmp_path, provider)
    assert isinstance(err, NotSupportedError)
    assert err.field == "spec.metrics[1].provider.web.authentication"


def test_args_are_checked_once_substituted(tmp_path: Path) -> None:
    provider = """\
        prometheus:
          address: "{{args.prom}}"
          query: up
          timeout: "{{args.prom}}"
"""
    err = one_problem(tmp_path, provider)
    assert err.field == "spec.metrics[1].provider.prometheus.timeout"
    assert "timeout must be a number of seconds" in err.message


def test_unused_templates_skip_unknown_args(tmp_path: Path) -> None:
    text = HEAD.replace("      value: http://127.0.0.1:9090\n", "") + (
        "        prometheus: {address: '{{args.prom}}', query: up, timeout: 5}\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(text)
    assert check_runnable(load_bundle([path])) == []


# --------------------------------------------------------------------------- field rules


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"query": "up"}, "address", "missing required field 'address'"),
        ({"address": "http://p"}, "query", "missing required field 'query'"),
        ({"address": "p:9090", "query": "up"}, "address", "must be an http:// or https:// URL"),
        ({"address": "http://p", "query": "up", "timeout": -1}, "timeout", "more than 0"),
        ({"address": "http://p", "query": "up", "timeout": "30s"}, "timeout", "seconds"),
        ({"address": "http://p", "query": "up", "insecure": "yes"}, "insecure", "true or false"),
        ({"address": "http://p", "query": "up", "headers": {"a": "b"}}, "headers", "a list"),
        (
            {"address": "http://p", "query": "up", "headers": [{"key": "A"}]},
            "headers[0].value",
            "needs a 'value'",
        ),
        (
            {"address": "http://p", "query": "up", "rangeQuery": {"start": "now()"}},
            "rangeQuery.end",
            "rangeQuery needs 'end'",
        ),
        (
            {
                "address": "http://p",
                "query": "up",
                "rangeQuery": {"start": "yesterday", "end": "now()", "step": "1m"},
            },
            "rangeQuery.start",
            "unsupported time expression 'yesterday'",
        ),
        (
            {
                "address": "http://p",
                "query": "up",
                "rangeQuery": {"start": "now()", "end": "now()", "step": "often"},
            },
            "rangeQuery.step",
            "expected a duration",
        ),
        (
            {
                "address": "http://p",
                "query": "up",
                "rangeQuery": {
                    "start": "now()",
                    "end": 'now() - duration("1h")',
                    "step": "1m",
                },
            },
            "rangeQuery",
            "start is after",
        ),
    ],
)
def test_prometheus_field_rules(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_prometheus(config)
    assert info.value.field == field
    assert message in info.value.message


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({}, "url", "missing required field 'url'"),
        ({"url": "ftp://x"}, "url", "http:// or https://"),
        ({"url": "http://x", "timeoutSeconds": -1}, "timeoutSeconds", "cannot be negative"),
        ({"url": "http://x", "timeoutSeconds": "ten"}, "timeoutSeconds", "whole number"),
        ({"url": "http://x", "jsonPath": "{.a["}, "jsonPath", "invalid JSONPath"),
        ({"url": "http://x", "method": "POST", "body": {"a": 1}}, "body", "use jsonBody"),
        ({"url": "http://x", "body": "a"}, "body", "needs method POST or PUT"),
    ],
)
def test_web_field_rules(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_web(config)
    assert info.value.field == field
    assert message in info.value.message


def test_web_defaults() -> None:
    config = parse_web({"url": "http://x/y"})
    assert config is not None
    assert (config.method, config.timeout, config.json_path, config.insecure) == (
        "GET",
        10.0,
        None,
        False,
    )
    zero = parse_web({"url": "http://x/y", "timeoutSeconds": 0})
    assert zero is not None and zero.timeout == 10.0  # Argo: 0 means the default


def test_prometheus_defaults() -> None:
    config = parse_prometheus({"address": "http://p:9090/", "query": "up"})
    assert config is not None
    assert (config.timeout, config.insecure, config.range_query) == (30.0, False, None)


def test_the_invalid_json_path_names_the_position() -> None:
    with pytest.raises(SpecError) as info:
        check_http_provider_config("web", {"url": "http://x", "jsonPath": "{.a[?(@.b =)]}"})
    assert "at position 10: expected ')', found '='" in info.value.message
    assert info.value.field == "web.jsonPath"


def test_resolve_time_forms() -> None:
    assert resolve_time("now()", 1000.0) == 1000.0
    assert resolve_time('now() - duration("5m")', 1000.0) == 700.0
    assert resolve_time("now( ) - duration('1h30m')", 10000.0) == 4600.0
    assert resolve_time("2024-05-01T12:00:00Z", 0) == 1714564800.0
    assert resolve_time("2024-05-01T14:00:00.5+02:00", 0) == 1714564800.5
    for bad in ('now() + duration("5m")', "now", "2024-05-01", 'duration("5m")', "-5m"):
        with pytest.raises(ValueError):
            resolve_time(bad, 0)


# --------------------------------------------------------------------------- at run time


def test_a_bad_config_at_run_time_is_an_error_measurement() -> None:
    context = MeasureContext(rollout="r", service="s", now=0.0)
    bad_web = Metric(name="m", provider={"web": {"url": "http://x", "method": "PATCH"}})
    got = asyncio.run(WebMetrics().measure(bad_web, context))
    assert got.phase is Phase.ERROR and "unsupported method 'PATCH'" in got.message
    bad_prom = Metric(name="m", provider={"prometheus": {"query": "up"}})
    got = asyncio.run(PrometheusMetrics().measure(bad_prom, context))
    assert got.phase is Phase.ERROR and "missing required field 'address'" in got.message


def test_the_registry_knows_both_providers() -> None:
    providers = Providers(router=None)  # type: ignore[arg-type]
    web = Metric(name="m", provider={"web": {"url": "http://x"}})
    prom = Metric(name="m", provider={"prometheus": {"address": "http://p", "query": "up"}})
    assert isinstance(providers.for_metric(web), WebMetrics)
    assert isinstance(providers.for_metric(prom), PrometheusMetrics)

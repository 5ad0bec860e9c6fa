"""Template lookup, arg substitution and the checks that stop a bundle from running."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalmine.errors import NotSupportedError, SpecError
from coalmine.spec.loader import load_bundle, load_text
from coalmine.spec.model import Analysis, Arg, TemplateRef
from coalmine.spec.resolve import check_router_config, check_runnable, resolve_analysis

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  strategy:
    canary:
      steps:
        - setWeight: 10
        - analysis:
            templates:
              - templateName: {template}
{extra}
"""

TEMPLATE = """\
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: {name}
spec:
  args:
{args}
  metrics:
    - name: {metric}
      successCondition: result < {{{{args.max}}}}
      provider:
{provider}
"""

ROUTER = """\
        plugin:
          coalmine/router:
            query: error-rate
            window: "{{args.window}}"
"""


def bundle_of(
    rollout_extra: str = "",
    template: str = "check",
    args: str = "",
    metric: str = "m",
    provider: str = ROUTER,
    more: str = "",
) -> str:
    args = args or "    - name: max\n      value: '0.05'\n    - name: window\n      value: 1m"
    return (
        ROLLOUT.format(template=template, extra=rollout_extra)
        + TEMPLATE.format(name="check", args=args, metric=metric, provider=provider)
        + more
    )


def test_examples_are_runnable_and_args_substituted() -> None:
    bundle = load_bundle([EXAMPLES / "rollouts.yaml"])
    assert check_runnable(bundle) == []
    assert check_runnable(bundle, "shop") == []
    rollout = bundle.rollouts["shop"]
    assert rollout.background is not None and rollout.background.starting_step == 2
    metrics = resolve_analysis(bundle, rollout.background.analysis)
    assert [m.name for m in metrics] == ["judge", "error-rate"]
    assert [m.provider_name for m in metrics] == ["coalmine/judge", "coalmine/router"]
    assert metrics[1].provider_config["window"] == "1m", "{{args.window}} is substituted"
    assert [m.dry_run for m in metrics] == [False, True]


def test_rollout_args_override_template_defaults() -> None:
    bundle = load_text(bundle_of(rollout_extra="            args: [{name: window, value: 5m}]"))
    step = bundle.rollouts["web"].steps[1]
    assert isinstance(step, Analysis)
    (metric,) = resolve_analysis(bundle, step)
    assert metric.provider_config == {"query": "error-rate", "window": "5m"}
    assert metric.success_condition == "result < 0.05"


def test_analysis_dry_run_marks_metrics() -> None:
    bundle = load_text(bundle_of())
    analysis = Analysis((TemplateRef("check"),), dry_run_metrics=(".*",))
    assert [m.dry_run for m in resolve_analysis(bundle, analysis)] == [True]


def test_missing_template_is_reported_at_the_analysis_step() -> None:
    bundle = load_text(bundle_of(template="chek"), "r.yaml")
    (err,) = check_runnable(bundle)
    assert (err.file, err.line) == ("r.yaml", 10)
    assert err.message == "AnalysisTemplate 'chek' not found"
    assert err.hint == "did you mean 'check'?"
    assert err.field == "spec.strategy.canary.steps[1].analysis.templates"


def test_cluster_scope_looks_in_cluster_templates() -> None:
    text = bundle_of(rollout_extra="                clusterScope: true")
    (err,) = check_runnable(load_text(text, "r.yaml"))
    assert err.message == "ClusterAnalysisTemplate 'check' not found"
    assert "remove clusterScope: true" in (err.hint or "")


def test_arg_without_value_must_be_supplied() -> None:
    text = bundle_of(args="    - name: max\n    - name: window\n      value: 1m")
    (err,) = check_runnable(load_text(text, "r.yaml"))
    assert (err.line, err.message) == (10, "arg 'max' of template 'check' has no value")
    assert "name: max" in (err.hint or "")


def test_unknown_rollout_arg_is_an_error() -> None:
    text = bundle_of(rollout_extra="            args: [{name: windw, value: 5m}]")
    (err,) = check_runnable(load_text(text, "r.yaml"))
    assert err.line == 10
    assert "arg 'windw' is not declared" in err.message
    assert err.hint == "did you mean 'window'?"


def test_unresolvable_arg_reference() -> None:
    provider = "        web: {url: 'http://a:1/{{args.path}}'}"
    bundle = load_text(bundle_of(provider=provider), "r.yaml")
    with pytest.raises(SpecError) as info:
        resolve_analysis(bundle, Analysis((TemplateRef("check"),)))
    assert info.value.line == 26
    assert "unknown arg 'path'" in info.value.message


def test_duplicate_metric_names_across_templates() -> None:
    other = TEMPLATE.format(
        name="other",
        args="    - name: max\n      value: '0.05'",
        metric="m",
        provider="        web: {url: 'http://a:1'}",
    )
    bundle = load_text(bundle_of(more=other), "r.yaml")
    analysis = Analysis((TemplateRef("check"), TemplateRef("other")))
    with pytest.raises(SpecError, match="metric 'm' is defined by templates 'check' and 'other'"):
        resolve_analysis(bundle, analysis)


def test_conflicting_arg_defaults() -> None:
    other = TEMPLATE.format(
        name="other",
        args="    - name: max\n      value: '1'",
        metric="n",
        provider="        web: {url: 'http://a:1'}",
    )
    bundle = load_text(bundle_of(more=other), "r.yaml")
    with pytest.raises(SpecError, match="different defaults"):
        resolve_analysis(bundle, Analysis((TemplateRef("check"), TemplateRef("other"))))


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("        job: {spec: {}}", "provider 'job' is not supported yet"),
        ("        datadog: {query: x}", "provider 'datadog' is not supported yet"),
        ("        plugin: {acme/metrics: {}}", "plug-in 'acme/metrics' is not supported yet"),
    ],
)
def test_unsupported_providers(provider: str, message: str) -> None:
    (err,) = check_runnable(load_text(bundle_of(provider=provider), "r.yaml"))
    assert isinstance(err, NotSupportedError)
    assert (err.file, err.line, err.message) == ("r.yaml", 26, message)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"query": "error-rate", "windw": "1m"}, "unknown field 'windw'"),
        ({"window": "1m"}, "missing required field 'query'"),
        ({"query": "p99"}, "unknown query 'p99'"),
        ({"query": "latency", "quantile": 1.5}, "quantile must be between 0 and 1"),
        ({"query": "error-rate", "quantile": 0.9}, "quantile applies only to query: latency"),
        ({"query": "requests", "version": "beta"}, "invalid version 'beta'"),
        ({"query": "requests", "window": "a while"}, "expected a duration"),
        ({"query": "requests", "minRequests": -1}, "minRequests must be an integer"),
    ],
)
def test_router_config_errors(config: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        check_router_config(config)


def test_router_config_accepts_defaults() -> None:
    check_router_config({"query": "latency"})
    check_router_config({"query": "availability", "version": "canary", "minRequests": "0"})


def test_router_window_is_checked_after_substitution() -> None:
    text = bundle_of(rollout_extra="            args: [{name: window, value: soon}]")
    (err,) = check_runnable(load_text(text, "r.yaml"))
    assert err.line == 26
    assert err.field == "spec.metrics[0].provider.plugin.coalmine/router.window"
    assert err.hint == "use 30s, 5m or 1h"


def test_check_one_rollout_by_name() -> None:
    bundle = load_text(bundle_of())
    assert check_runnable(bundle, "web") == []
    (err,) = check_runnable(bundle, "wbe")
    assert err.message == "rollout 'wbe' not found"


def test_resolve_with_explicit_args() -> None:
    bundle = load_text(bundle_of())
    analysis = Analysis((TemplateRef("check"),), args=(Arg("max", "7"),))
    (metric,) = resolve_analysis(bundle, analysis)
    assert metric.success_condition == "result < 7"

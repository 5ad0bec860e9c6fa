"""The loader on good and nasty manifests: every error names file:line and says what to do."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from coalmine.errors import NotSupportedError, SpecError
from coalmine.spec.loader import collect_errors, load_bundle
from coalmine.spec.model import Analysis, HeaderMatch, Pause, SetHeaderRoute, SetWeight

# Lines 1-8 are fixed; the steps start on line 9.
HEAD = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  strategy:
    canary:
      steps:
"""

TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: check
spec:
  metrics:
    - name: errors
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> SpecError:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_bundle([path])
    err = info.value
    assert err.file == str(path)
    assert "\n" not in err.one_line()
    return err


def rollout_error(tmp_path: Path, steps: str) -> SpecError:
    return load_error(tmp_path, HEAD + steps)


# --------------------------------------------------------------------------- good files


def test_all_step_kinds_load(tmp_path: Path) -> None:
    text = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: prod
  annotations:
    coalmine.dev/class: fix
    team: payments
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: web
          image: registry.local:5000/web:2.0.1@sha256:abc
  strategy:
    canary:
      canaryService: web-canary
      maxSurge: 25%
      trafficRouting:
        istio: {virtualService: {name: web}}
        managedRoutes:
          - name: beta
      steps:
        - setHeaderRoute:
            name: beta
            match:
              - headerName: X-Beta
                headerValue: {prefix: "yes"}
        - setWeight: 10
        - pause: {}
        - pause: {duration: 90}
        - pause: {duration: "1h"}
        - analysis:
            templates: [{templateName: check}]
            args: [{name: x, value: "1"}]
            dryRun: [{metricName: "err.*"}]
        - setHeaderRoute: {name: beta}
"""
    bundle = load_bundle([write(tmp_path, text)])
    rollout = bundle.rollouts["web"]
    assert rollout.namespace == "prod"
    assert rollout.canary_version == "2.0.1"
    assert rollout.service == "web"
    assert rollout.annotations == {"coalmine.dev/class": "fix", "team": "payments"}
    assert rollout.managed_routes == ("beta",)
    steps = rollout.steps
    assert steps[0] == SetHeaderRoute(
        "beta", (HeaderMatch("X-Beta", "prefix", "yes"),), location=steps[0].location
    )
    assert isinstance(steps[1], SetWeight) and steps[1].weight == 10
    assert [s.duration for s in steps[2:5] if isinstance(s, Pause)] == [None, 90.0, 3600.0]
    assert isinstance(steps[5], Analysis)
    assert steps[5].dry_run_metrics == ("err.*",)
    assert steps[5].location is not None and steps[5].location.line == 34
    assert isinstance(steps[6], SetHeaderRoute) and steps[6].matches == ()


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("shop:v2", "v2"),
        ("registry:5000/shop", "canary"),
        ("shop", "canary"),
        ("a/b/shop:1.0@sha256:ff", "1.0"),
    ],
)
def test_canary_version_from_image(tmp_path: Path, image: str, version: str) -> None:
    text = (
        HEAD.replace(
            "spec:\n",
            f"spec:\n  template:\n    spec:\n      containers:\n        - image: {image}\n",
            1,
        )
        + "        - setWeight: 5\n"
    )
    assert load_bundle([write(tmp_path, text)]).rollouts["web"].canary_version == version


def test_annotations_override_version_and_service(tmp_path: Path) -> None:
    text = (
        HEAD.replace(
            "  name: web\n",
            "  name: web\n  annotations:\n"
            "    coalmine.dev/version: v9\n    coalmine.dev/service: shop\n",
        )
        + "        - setWeight: 5\n"
    )
    rollout = load_bundle([write(tmp_path, text)]).rollouts["web"]
    assert (rollout.canary_version, rollout.service) == ("v9", "shop")


def test_template_defaults_and_dry_run(tmp_path: Path) -> None:
    text = """\
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata:
  name: shared
spec:
  args:
    - name: service
  dryRun:
    - metricName: "lat.*"
  measurementRetention:
    - metricName: "*"
      limit: 5
  metrics:
    - name: latency
      provider:
        web: {url: "http://x/{{args.service}}", jsonPath: "{$.p99}"}
    - name: errors
      interval: 1m
      initialDelay: 10s
      count: "5"
      failureLimit: -1
      consecutiveErrorLimit: 2
      provider: {prometheus: {address: "http://p:9090", query: up}}
"""
    bundle = load_bundle([write(tmp_path, text)])
    template = bundle.cluster_templates["shared"]
    assert template.cluster_scope
    assert template.args[0].value is None
    latency, errors = template.metrics
    assert latency.dry_run and not errors.dry_run
    assert (latency.effective_count, latency.failure_limit, latency.consecutive_error_limit) == (
        1,
        0,
        4,
    )
    assert (errors.interval, errors.initial_delay, errors.count) == (60.0, 10.0, 5)
    assert (errors.failure_limit, errors.consecutive_error_limit) == (-1, 2)
    assert errors.location is not None and errors.location.line == 17


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    text = "---\n# nothing\n---\n" + HEAD + "        - setWeight: 5\n---\n"
    assert list(load_bundle([write(tmp_path, text)]).rollouts) == ["web"]


def test_directory_loads_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, HEAD + "        - setWeight: 5\n", "a.yaml")
    write(tmp_path, "not: yaml: at all", "notes.txt")
    assert list(load_bundle([tmp_path]).rollouts) == ["web"]


# --------------------------------------------------------------------------- nasty files


def test_malformed_yaml(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "        - setWeight: 5\n       - pause: {}\n")
    assert err.line == 10
    assert err.message.startswith("malformed YAML")
    assert err.hint


def test_unknown_kind(tmp_path: Path) -> None:
    err = load_error(tmp_path, "apiVersion: apps/v1\n\nkind: Deployment\nmetadata: {name: x}\n")
    assert err.line == 3
    assert "unknown kind 'Deployment'" in err.message
    assert "Rollout, AnalysisTemplate, ClusterAnalysisTemplate" in (err.hint or "")


def test_unknown_api_version(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD.replace("v1alpha1", "v1beta1") + "        - setWeight: 5\n")
    assert err.line == 1
    assert "apiVersion" in err.message
    assert "argoproj.io/v1alpha1" in (err.hint or "")


def test_unknown_field_suggests_the_argo_name(tmp_path: Path) -> None:
    text = HEAD.replace("    canary:\n", "    canary:\n      stableServise: web\n")
    err = load_error(tmp_path, text + "        - setWeight: 5\n")
    assert err.line == 8
    assert err.field == "spec.strategy.canary.stableServise"
    assert err.message == "unknown field 'stableServise'"
    assert err.hint == "did you mean 'stableService'?"


def test_set_weight_out_of_range(tmp_path: Path) -> None:
    err = rollout_error(tmp_path, "        - setWeight: 20\n        - setWeight: 120\n")
    assert err.line == 10
    assert err.field == "spec.strategy.canary.steps[1].setWeight"
    assert "from 0 to 100" in err.message and "120" in err.message
    assert err.hint


def test_set_weight_not_a_number(tmp_path: Path) -> None:
    err = rollout_error(tmp_path, "        - setWeight: abc\n")
    assert err.line == 9
    assert "setWeight must be an integer from 0 to 100" in err.message
    assert "'abc'" in err.message


def test_pause_duration_in_words(tmp_path: Path) -> None:
    err = rollout_error(tmp_path, "        - pause:\n            duration: 5 minutes\n")
    assert err.line == 10
    assert err.field == "spec.strategy.canary.steps[0].pause.duration"
    assert "5 minutes" in err.message
    assert err.hint == "use 30s, 5m or 1h"


def test_blue_green_is_not_supported(tmp_path: Path) -> None:
    text = HEAD.replace("    canary:\n      steps:\n", "    blueGreen:\n      activeService: a\n")
    err = load_error(tmp_path, text)
    assert isinstance(err, NotSupportedError)
    assert err.line == 7
    assert err.message == "spec.strategy.blueGreen is not supported yet"


@pytest.mark.parametrize(
    "step",
    [
        "experiment:\n            templates: [{name: x, specRef: canary}]",
        "setCanaryScale: {replicas: 3}",
        "setMirrorRoute: {name: mirror, percentage: 10}",
        "plugin: {name: my/plugin}",
    ],
)
def test_unsupported_steps(tmp_path: Path, step: str) -> None:
    err = rollout_error(tmp_path, f"        - setWeight: 5\n        - {step}\n")
    assert isinstance(err, NotSupportedError)
    assert err.line == 10
    kind = step.split(":")[0]
    assert err.message == f"the '{kind}' step is not supported yet"


def test_step_with_two_keys(tmp_path: Path) -> None:
    err = rollout_error(tmp_path, "        - setWeight: 5\n          pause: {}\n")
    assert err.line == 9
    assert "exactly one" in err.message and "setWeight, pause" in err.message
    assert err.hint == "split it into one step per list item"


def test_unknown_step_suggests(tmp_path: Path) -> None:
    err = rollout_error(tmp_path, "        - setWieght: 5\n")
    assert err.message == "unknown step 'setWieght'"
    assert err.hint == "did you mean 'setWeight'?"


def test_value_from_arg_is_not_supported(tmp_path: Path) -> None:
    steps = """\
        - analysis:
            templates: [{templateName: check}]
            args:
              - name: hash
                valueFrom:
                  podTemplateHashValue: Latest
"""
    err = rollout_error(tmp_path, steps)
    assert isinstance(err, NotSupportedError)
    assert err.line == 13
    assert "valueFrom is not supported yet" in err.message


def test_invalid_header_regex(tmp_path: Path) -> None:
    text = HEAD.replace(
        "      steps:\n",
        "      trafficRouting:\n        managedRoutes: [{name: r}]\n      steps:\n",
    )
    steps = """\
        - setHeaderRoute:
            name: r
            match:
              - headerName: X-User
                headerValue:
                  regex: "beta-(["
"""
    err = load_error(tmp_path, text + steps)
    assert err.line == 16
    assert "invalid regular expression" in err.message


def test_header_value_needs_exactly_one_kind(tmp_path: Path) -> None:
    text = HEAD.replace(
        "      steps:\n",
        "      trafficRouting:\n        managedRoutes: [{name: r}]\n      steps:\n",
    )
    steps = (
        "        - setHeaderRoute:\n            name: r\n            match:\n"
        "              - headerName: X\n                headerValue: {exact: a, prefix: b}\n"
    )
    err = load_error(tmp_path, text + steps)
    assert err.line == 15
    assert "exactly one of exact, prefix, regex" in err.message


def test_header_route_not_in_managed_routes(tmp_path: Path) -> None:
    text = HEAD.replace(
        "      steps:\n",
        "      trafficRouting:\n        managedRoutes: [{name: r}]\n      steps:\n",
    )
    err = load_error(tmp_path, text + "        - setHeaderRoute:\n            name: beta\n")
    assert err.line == 12
    assert "header route 'beta' is not in trafficRouting.managedRoutes" in err.message
    assert "managedRoutes" in (err.hint or "")


def test_background_starting_step_past_the_end(tmp_path: Path) -> None:
    text = HEAD.replace(
        "      steps:\n",
        "      analysis:\n        templates: [{templateName: c}]\n"
        "        startingStep: 2\n      steps:\n",
    )
    err = load_error(tmp_path, text + "        - setWeight: 5\n        - pause: {}\n")
    assert err.line == 10
    assert "startingStep 2" in err.message
    assert "2 steps" in (err.hint or "")


def test_duplicate_template_names(tmp_path: Path) -> None:
    metric = "      provider: {web: {url: 'http://a:1'}}\n"
    text = TEMPLATE + metric + "---\n" + TEMPLATE + metric
    err = load_error(tmp_path, text)
    assert err.line == 13
    assert err.message == "duplicate AnalysisTemplate 'check'"
    assert f"{tmp_path / 'r.yaml'}:1" in (err.hint or "")


def test_same_name_in_other_kinds_is_fine(tmp_path: Path) -> None:
    metric = "      provider: {web: {url: 'http://a:1'}}\n"
    text = TEMPLATE + metric + "---\n" + TEMPLATE.replace("kind: Analysis", "kind: ClusterAnalysis")
    bundle = load_bundle([write(tmp_path, text + metric)])
    assert list(bundle.templates) == list(bundle.cluster_templates) == ["check"]


def test_unknown_coalmine_annotation(tmp_path: Path) -> None:
    text = HEAD.replace(
        "  name: web\n", "  name: web\n  annotations:\n    coalmine.dev/verison: v1\n"
    )
    err = load_error(tmp_path, text + "        - setWeight: 5\n")
    assert err.line == 6
    assert err.message == "unknown annotation 'coalmine.dev/verison'"
    assert err.hint == "did you mean 'coalmine.dev/version'?"


def test_bad_rollout_class(tmp_path: Path) -> None:
    text = HEAD.replace(
        "  name: web\n", "  name: web\n  annotations:\n    coalmine.dev/class: big\n"
    )
    err = load_error(tmp_path, text + "        - setWeight: 5\n")
    assert err.line == 6
    assert "feature, fix, rollback" in (err.hint or "")


def test_unknown_provider(tmp_path: Path) -> None:
    err = load_error(tmp_path, TEMPLATE + "      provider:\n        promethues: {query: up}\n")
    assert err.line == 9
    assert err.hint == "did you mean 'prometheus'?"


def test_metric_without_provider(tmp_path: Path) -> None:
    err = load_error(tmp_path, TEMPLATE + "      interval: 1m\n")
    assert err.line == 7
    assert "missing required field 'provider'" in err.message


def test_bad_metric_interval(tmp_path: Path) -> None:
    text = TEMPLATE + "      interval: soon\n      provider: {web: {url: 'http://a:1'}}\n"
    err = load_error(tmp_path, text)
    assert err.line == 8
    assert err.hint == "use 30s, 5m or 1h"


def test_consecutive_success_limit_not_supported(tmp_path: Path) -> None:
    text = (
        TEMPLATE + "      consecutiveSuccessLimit: 3\n      provider: {web: {url: 'http://a:1'}}\n"
    )
    err = load_error(tmp_path, text)
    assert isinstance(err, NotSupportedError)
    assert err.line == 8


def test_templated_count_not_supported(tmp_path: Path) -> None:
    text = TEMPLATE + "      count: '{{args.n}}'\n      provider: {web: {url: 'http://a:1'}}\n"
    err = load_error(tmp_path, text)
    assert isinstance(err, NotSupportedError)
    assert err.line == 8


def test_value_from_template_arg_not_supported(tmp_path: Path) -> None:
    text = TEMPLATE.replace(
        "  metrics:\n",
        "  args:\n    - name: key\n      valueFrom:\n"
        "        secretKeyRef: {name: s, key: k}\n  metrics:\n",
    )
    err = load_error(tmp_path, text + "      provider: {web: {url: 'http://a:1'}}\n")
    assert isinstance(err, NotSupportedError)
    assert err.line == 8


def test_condition_syntax_is_checked_when_the_expression_module_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def compile_expression(text: str) -> object:
        seen.append(text)
        if "))" in text:
            raise SpecError("unbalanced parenthesis", hint="check the brackets")
        return object()

    fake = types.ModuleType("coalmine.analysis.expr")
    fake.compile_expression = compile_expression  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "coalmine.analysis.expr", fake)
    import coalmine.analysis

    monkeypatch.setattr(coalmine.analysis, "expr", fake, raising=False)
    good = (
        TEMPLATE + "      successCondition: result < {{args.max}}\n"
        "      provider: {web: {url: 'http://a:1'}}\n"
    )
    load_bundle([write(tmp_path, good)])
    assert seen == ["result < 0"]
    bad = TEMPLATE + "      failureCondition: result > 1))\n      provider: {web: {url: 'h'}}\n"
    err = load_error(tmp_path, bad)
    assert err.line == 8
    assert err.message == "invalid failureCondition: unbalanced parenthesis"


def test_collect_errors_reports_every_document(tmp_path: Path) -> None:
    a = write(tmp_path, HEAD + "        - setWeight: 120\n", "a.yaml")
    b = write(tmp_path, "kind: Service\n", "b.yaml")
    c = write(tmp_path, HEAD + "        - setWeight: 5\n", "c.yaml")
    errors = collect_errors([a, b, c, tmp_path / "missing.yaml"])
    assert [(e.file, e.line) for e in errors] == [
        (str(tmp_path / "missing.yaml"), None),
        (str(a), 9),
        (str(b), 1),
    ]

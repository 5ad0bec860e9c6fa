"""Argo Rollouts manifests (Rollout, AnalysisTemplate, ClusterAnalysisTemplate) -> the model.

Every field Argo knows is accepted: Kubernetes-only fields are ignored, Argo features that coalmine
cannot honour raise :class:`NotSupportedError`, anything else is an unknown field. Errors name the
``file:line`` and dotted path of the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from coalmine.errors import SpecError
from coalmine.spec.model import (
    Analysis,
    AnalysisTemplate,
    Arg,
    BackgroundAnalysis,
    Bundle,
    HeaderMatch,
    Location,
    Metric,
    Pause,
    Rollout,
    SetHeaderRoute,
    SetWeight,
    Step,
    TemplateRef,
)
from coalmine.spec.yamlpos import Cursor, Document, read_documents, root_cursor

API_VERSION = "argoproj.io/v1alpha1"
KINDS = ("Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate")
OTHER_ARGO_KINDS = ("Experiment", "AnalysisRun")

# Field lists, taken from Argo Rollouts' CRDs (hard-coded: the CRDs are not needed at run time).
DOCUMENT_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
METADATA_FIELDS = ("name", "namespace", "annotations", "labels")
METADATA_IGNORED = (
    "generateName", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences",
    "managedFields", "selfLink",
)  # fmt: skip
ROLLOUT_SPEC_IGNORED = (
    "replicas", "selector", "template", "revisionHistoryLimit", "minReadySeconds",
    "progressDeadlineSeconds", "progressDeadlineAbort", "paused", "workloadRef", "restartAt",
    "rollbackWindow", "analysis",
)  # fmt: skip
CANARY_IGNORED = (
    "canaryService", "stableService", "maxSurge", "maxUnavailable", "antiAffinity",
    "scaleDownDelaySeconds", "scaleDownDelayRevisionLimit", "abortScaleDownDelaySeconds",
    "dynamicStableScale", "canaryMetadata", "stableMetadata", "minPodsPerReplicaSet", "pingPong",
    "replicaProgressThreshold",
)  # fmt: skip
TRAFFIC_ROUTING_IGNORED = (
    "istio", "nginx", "alb", "smi", "ambassador", "traefik", "apisix", "appMesh", "plugins",
)  # fmt: skip
ANALYSIS_IGNORED = ("analysisRunMetadata", "measurementRetention")
STEPS_SUPPORTED = ("setWeight", "pause", "analysis", "setHeaderRoute")
STEPS_NOT_SUPPORTED = ("experiment", "setCanaryScale", "setMirrorRoute", "plugin")
METRIC_FIELDS = (
    "name", "interval", "initialDelay", "count", "successCondition", "failureCondition",
    "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit", "consecutiveFailureLimit",
    "provider",
)  # fmt: skip
PROVIDER_KINDS = (
    "prometheus", "web", "job", "datadog", "newRelic", "wavefront", "kayenta", "cloudWatch",
    "graphite", "influxdb", "skywalking", "plugin",
)  # fmt: skip
PROVIDER_FIELDS = {
    "prometheus": (
        "address", "query", "timeout", "insecure", "headers", "authentication", "rangeQuery",
    ),
    "web": (
        "url", "method", "headers", "body", "jsonBody", "jsonPath", "timeoutSeconds", "insecure",
        "authentication",
    ),
}  # fmt: skip
COALMINE_ANNOTATIONS = (
    "coalmine.dev/version",
    "coalmine.dev/service",
    "coalmine.dev/environment",
    "coalmine.dev/class",
    "coalmine.dev/owner",
)
ROLLOUT_CLASSES = ("feature", "fix", "rollback")

ARG_REFERENCE = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KINDS_HINT = f"supported kinds: {', '.join(KINDS)} (apiVersion {API_VERSION})"


# --------------------------------------------------------------------------- public API


def load_bundle(paths: Sequence[str | Path]) -> Bundle:
    """Load every document of ``paths`` (files or directories); raise the first error."""
    bundle, errors = load_bundle_with_errors(paths)
    if errors:
        raise errors[0]
    return bundle


def collect_errors(paths: Sequence[str | Path]) -> list[SpecError]:
    """Every load error of ``paths`` (at most one per document)."""
    return load_bundle_with_errors(paths)[1]


def load_text(text: str, file: str = "<text>") -> Bundle:
    """Load documents from a string (raises the first error)."""
    from coalmine.spec.yamlpos import parse_documents

    bundle, errors = _build(parse_documents(text, file), (file,))
    if errors:
        raise errors[0]
    return bundle


def load_bundle_with_errors(paths: Sequence[str | Path]) -> tuple[Bundle, list[SpecError]]:
    """The bundle of every valid document, and the errors of the others."""
    files = _expand(paths)
    docs: list[Document] = []
    errors: list[SpecError] = []
    for file in files:
        try:
            docs.extend(read_documents(file))
        except SpecError as err:
            errors.append(err)
    bundle, doc_errors = _build(docs, tuple(str(f) for f in files))
    return bundle, errors + doc_errors


# --------------------------------------------------------------------------- documents


def _expand(paths: Sequence[str | Path]) -> list[str | Path]:
    out: list[str | Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


def _build(docs: Iterable[Document], files: tuple[str, ...]) -> tuple[Bundle, list[SpecError]]:
    bundle = Bundle(files=files)
    errors: list[SpecError] = []
    for doc in docs:
        if doc.data is None:
            continue
        try:
            _add_document(bundle, root_cursor(doc))
        except SpecError as err:
            errors.append(err)
    return bundle, errors


def _add_document(bundle: Bundle, doc: Cursor) -> None:
    if not isinstance(doc.value, dict):
        doc.fail("a document must be a mapping with apiVersion and kind", _KINDS_HINT)
    kind_cur = doc.require("kind", _KINDS_HINT)
    kind = kind_cur.string()
    if kind in OTHER_ARGO_KINDS:
        kind_cur.not_supported(f"kind '{kind}'", _KINDS_HINT)
    if kind not in KINDS:
        kind_cur.fail(f"unknown kind '{kind}'", _KINDS_HINT)
    api_cur = doc.require("apiVersion", f"use apiVersion: {API_VERSION}")
    if api_cur.value != API_VERSION:
        api_cur.fail(
            f"unknown apiVersion {api_cur.value!r} for kind '{kind}'",
            f"use apiVersion: {API_VERSION}",
        )
    doc.check_fields(DOCUMENT_FIELDS)
    if kind == "Rollout":
        rollout = parse_rollout(doc)
        _add_unique(bundle.rollouts, rollout.name, rollout, kind, doc)
    else:
        cluster = kind == "ClusterAnalysisTemplate"
        template = parse_template(doc, cluster_scope=cluster)
        target = bundle.cluster_templates if cluster else bundle.templates
        _add_unique(target, template.name, template, kind, doc)


def _add_unique(target: dict[str, Any], name: str, item: Any, kind: str, doc: Cursor) -> None:
    if name in target:
        first = target[name].location
        name_cur = doc.require("metadata").require("name")
        name_cur.fail(f"duplicate {kind} '{name}'", f"'{name}' is already defined at {first}")
    target[name] = item


def _metadata(doc: Cursor) -> tuple[str, str | None, dict[str, str]]:
    meta = doc.require("metadata", "add metadata: {name: ...}")
    meta.mapping()
    meta.check_fields(METADATA_FIELDS + METADATA_IGNORED)
    name_cur = meta.require("name")
    name = name_cur.nonempty_string()
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        name_cur.fail(
            f"invalid name {name!r}",
            "use lower-case letters, digits, '-' and '.', starting with a letter or digit",
        )
    namespace = None
    ns_cur = meta.get("namespace")
    if ns_cur is not None:
        namespace = ns_cur.nonempty_string()
        if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
            ns_cur.fail(
                f"invalid namespace {namespace!r}", "use lower-case letters, digits and '-'"
            )
    labels = meta.get("labels")
    if labels is not None:
        labels.string_map()
    ann_cur = meta.get("annotations")
    annotations = ann_cur.string_map() if ann_cur is not None else {}
    return name, namespace, annotations


def _location(cur: Cursor) -> Location:
    return Location(cur.file, cur.line)


# --------------------------------------------------------------------------- Rollout


def parse_rollout(doc: Cursor) -> Rollout:
    """A Rollout document (its kind and apiVersion already checked)."""
    name, namespace, annotations = _metadata(doc)
    _check_annotations(doc.require("metadata"))
    spec = doc.require("spec")
    spec.check_fields(("strategy", *ROLLOUT_SPEC_IGNORED))
    strategy = spec.require("strategy", "coalmine runs the canary strategy")
    strategy.check_fields(("canary",), not_supported=("blueGreen",))
    canary = strategy.require("canary", "add strategy.canary.steps")
    canary.check_fields(("steps", "analysis", "trafficRouting", *CANARY_IGNORED))

    managed = _managed_routes(canary.get("trafficRouting"))
    steps_cur = canary.get("steps")
    steps = tuple(_parse_step(s, managed) for s in (steps_cur.sequence() if steps_cur else []))

    background = None
    bg_cur = canary.get("analysis")
    if bg_cur is not None:
        background = _background(bg_cur, len(steps))

    return Rollout(
        name=name,
        steps=steps,
        namespace=namespace,
        background=background,
        managed_routes=managed,
        annotations=annotations,
        canary_version=annotations.get("coalmine.dev/version") or _image_tag(spec) or "canary",
        service=annotations.get("coalmine.dev/service") or name,
        location=_location(doc),
    )


def _check_annotations(meta: Cursor) -> None:
    ann = meta.get("annotations")
    if ann is None or ann.value is None:
        return
    for item in ann.fields():
        if not item.key.startswith("coalmine.dev/"):
            continue
        if item.key not in COALMINE_ANNOTATIONS:
            guess = _closest(item.key, COALMINE_ANNOTATIONS)
            hint = (
                f"did you mean '{guess}'?" if guess else "known: " + ", ".join(COALMINE_ANNOTATIONS)
            )
            item.fail(f"unknown annotation '{item.key}'", hint)
        value = item.nonempty_string()
        if item.key == "coalmine.dev/class" and value not in ROLLOUT_CLASSES:
            item.fail(f"invalid class {value!r}", "use one of: " + ", ".join(ROLLOUT_CLASSES))


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    from coalmine.spec.yamlpos import closest

    return closest(name, candidates)


def _image_tag(spec: Cursor) -> str | None:
    """The tag of the first container's image, if the pod template has one."""
    try:
        image = spec.value["template"]["spec"]["containers"][0]["image"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(image, str):
        return None
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] or None if ":" in last else None


def _managed_routes(routing: Cursor | None) -> tuple[str, ...]:
    if routing is None:
        return ()
    routing.check_fields(
        ("managedRoutes", *TRAFFIC_ROUTING_IGNORED), not_supported=("maxTrafficWeight",)
    )
    routes_cur = routing.get("managedRoutes")
    names: list[str] = []
    for item in routes_cur.sequence() if routes_cur else []:
        item.check_fields(("name",))
        name_cur = item.require("name")
        name = name_cur.nonempty_string()
        if name in names:
            name_cur.fail(f"duplicate managed route '{name}'")
        names.append(name)
    return tuple(names)


def _parse_step(cur: Cursor, managed: tuple[str, ...]) -> Step:
    data = cur.mapping()
    if len(data) != 1:
        keys = ", ".join(data) or "none"
        cur.fail(
            f"a step must have exactly one kind, got {len(data)} ({keys})",
            "split it into one step per list item",
        )
    (body,) = cur.fields()
    kind = body.key
    if kind in STEPS_NOT_SUPPORTED:
        body.not_supported(f"the '{kind}' step", "supported steps: " + ", ".join(STEPS_SUPPORTED))
    if kind == "setWeight":
        if isinstance(body.value, str):
            body.fail(
                f"setWeight must be an integer from 0 to 100, got {body.value!r}",
                "write a plain number, e.g. setWeight: 20",
            )
        weight = body.integer(0, 100, hint="setWeight is a percentage from 0 to 100")
        return SetWeight(weight, location=_location(body))
    if kind == "pause":
        return _pause(body)
    if kind == "analysis":
        return _analysis(body, ANALYSIS_IGNORED)
    if kind == "setHeaderRoute":
        return _header_route(body, managed)
    guess = _closest(kind, STEPS_SUPPORTED + STEPS_NOT_SUPPORTED)
    body.fail(
        f"unknown step '{kind}'",
        f"did you mean '{guess}'?" if guess else "use one of: " + ", ".join(STEPS_SUPPORTED),
    )


def _pause(cur: Cursor) -> Pause:
    if cur.value is None:
        cur.fail("pause needs a mapping", "write pause: {} to wait for promotion")
    cur.check_fields(("duration",))
    dur = cur.get("duration")
    return Pause(duration=dur.duration() if dur is not None else None, location=_location(cur))


def _analysis(cur: Cursor, extra: tuple[str, ...]) -> Analysis:
    cur.check_fields(("templates", "args", "dryRun", *extra))
    templates_cur = cur.require("templates", "list the AnalysisTemplates to run")
    refs: list[TemplateRef] = []
    for item in templates_cur.sequence():
        item.check_fields(("templateName", "clusterScope"))
        scope = item.get("clusterScope")
        refs.append(
            TemplateRef(
                template_name=item.require("templateName").nonempty_string(),
                cluster_scope=scope.boolean() if scope is not None else False,
            )
        )
    if not refs:
        templates_cur.fail("at least one template is required")
    args = _args(cur.get("args"), need_value=True)
    dry_cur = cur.get("dryRun")
    dry = _dry_run(dry_cur) if dry_cur is not None else ()
    return Analysis(templates=tuple(refs), args=args, dry_run_metrics=dry, location=_location(cur))


def _background(cur: Cursor, step_count: int) -> BackgroundAnalysis:
    analysis = _analysis(cur, (*ANALYSIS_IGNORED, "startingStep"))
    start_cur = cur.get("startingStep")
    start = 0
    if start_cur is not None:
        start = start_cur.integer(0)
        if start >= max(step_count, 1):
            start_cur.fail(
                f"startingStep {start} is past the last step",
                f"the rollout has {step_count} steps, numbered from 0",
            )
    return BackgroundAnalysis(analysis=analysis, starting_step=start)


def _args(cur: Cursor | None, need_value: bool) -> tuple[Arg, ...]:
    out: list[Arg] = []
    for item in cur.sequence() if cur is not None else []:
        item.check_fields(("name", "value"), not_supported=("valueFrom",))
        name = item.require("name").nonempty_string()
        if any(a.name == name for a in out):
            item.require("name").fail(f"duplicate arg '{name}'")
        value_cur = item.get("value")
        value = value_cur.string() if value_cur is not None else None
        if value is None and need_value:
            item.fail(f"arg '{name}' needs a value")
        out.append(Arg(name, value))
    return tuple(out)


def _dry_run(cur: Cursor) -> tuple[str, ...]:
    out: list[str] = []
    for item in cur.sequence():
        item.check_fields(("metricName",))
        name_cur = item.require("metricName")
        pattern = name_cur.nonempty_string()
        if pattern != "*":
            try:
                re.compile(pattern)
            except re.error as err:
                name_cur.fail(
                    f"invalid regular expression {pattern!r}: {err}",
                    "use '*' for every metric or a metric name",
                )
        out.append(pattern)
    return tuple(out)


def dry_run_matches(patterns: Iterable[str], metric_name: str) -> bool:
    """Whether a dryRun metricName pattern ('*' or a regular expression) names the metric."""
    return any(p == "*" or re.fullmatch(p, metric_name) for p in patterns)


def _header_route(cur: Cursor, managed: tuple[str, ...]) -> SetHeaderRoute:
    cur.check_fields(("name", "match"))
    name_cur = cur.require("name")
    name = name_cur.nonempty_string()
    if name not in managed:
        known = ", ".join(managed) if managed else "none"
        name_cur.fail(
            f"header route '{name}' is not in trafficRouting.managedRoutes",
            f"add '- name: {name}' to spec.strategy.canary.trafficRouting.managedRoutes"
            f" (declared: {known})",
        )
    matches: list[HeaderMatch] = []
    match_cur = cur.get("match")
    for item in match_cur.sequence() if match_cur is not None else []:
        item.check_fields(("headerName", "headerValue"))
        header = item.require("headerName").nonempty_string()
        value_cur = item.require("headerValue", "add headerValue: {exact: ...}")
        value_cur.check_fields(("exact", "prefix", "regex"))
        kinds = list(value_cur.mapping())
        if len(kinds) != 1:
            value_cur.fail(
                f"headerValue needs exactly one of exact, prefix, regex; got {len(kinds)}"
            )
        (body,) = value_cur.fields()
        text = body.string()
        if body.key == "regex":
            try:
                re.compile(text)
            except re.error as err:
                body.fail(
                    f"invalid regular expression {text!r}: {err}", "check the brackets and escapes"
                )
        matches.append(HeaderMatch(header, body.key, text))  # type: ignore[arg-type]
    return SetHeaderRoute(name=name, matches=tuple(matches), location=_location(cur))


# --------------------------------------------------------------------------- templates


def parse_template(doc: Cursor, cluster_scope: bool = False) -> AnalysisTemplate:
    """An AnalysisTemplate or ClusterAnalysisTemplate document."""
    name, _namespace, _annotations = _metadata(doc)
    spec = doc.require("spec")
    spec.check_fields(
        ("args", "metrics", "dryRun", "measurementRetention"), not_supported=("templates",)
    )
    args = _args(spec.get("args"), need_value=False)
    dry_cur = spec.get("dryRun")
    dry = _dry_run(dry_cur) if dry_cur is not None else ()
    metrics_cur = spec.require("metrics", "add at least one metric")
    metrics: list[Metric] = []
    for item in metrics_cur.sequence():
        metric = _metric(item, dry)
        if any(m.name == metric.name for m in metrics):
            item.require("name").fail(
                f"duplicate metric '{metric.name}'", "metric names must be unique in a template"
            )
        metrics.append(metric)
    if not metrics:
        metrics_cur.fail("at least one metric is required")
    return AnalysisTemplate(
        name=name,
        metrics=tuple(metrics),
        args=args,
        cluster_scope=cluster_scope,
        location=_location(doc),
    )


def _literal(cur: Cursor) -> Cursor:
    """Reject ``{{args.x}}`` in fields coalmine reads at load time."""
    if isinstance(cur.value, str) and "{{" in cur.value:
        cur.not_supported(f"a templated {cur.key} ({cur.value!r})", "write the value directly")
    return cur


def _metric(cur: Cursor, dry_patterns: tuple[str, ...]) -> Metric:
    cur.check_fields(METRIC_FIELDS, not_supported=("consecutiveSuccessLimit",))
    name = cur.require("name").nonempty_string()

    def opt(key: str) -> Cursor | None:
        found = cur.get(key)
        return _literal(found) if found is not None else None

    interval = opt("interval")
    delay = opt("initialDelay")
    count = opt("count")
    failure = opt("failureLimit")
    inconclusive = opt("inconclusiveLimit")
    errors = opt("consecutiveErrorLimit")
    failed_in_a_row = opt("consecutiveFailureLimit")
    metric = Metric(
        name=name,
        provider=_provider(cur.require("provider")),
        interval=interval.duration() if interval else None,
        count=(count.integer(0) or None) if count else None,  # Argo: 0 means unset
        initial_delay=delay.duration() if delay else 0.0,
        success_condition=_condition(cur.get("successCondition")),
        failure_condition=_condition(cur.get("failureCondition")),
        failure_limit=failure.integer(-1, hint="-1 means unlimited") if failure else 0,
        inconclusive_limit=inconclusive.integer(-1) if inconclusive else 0,
        consecutive_error_limit=errors.integer(0) if errors else 4,
        consecutive_failure_limit=failed_in_a_row.integer(0) if failed_in_a_row else None,
        dry_run=dry_run_matches(dry_patterns, name),
        location=_location(cur),
    )
    if metric.interval is not None and metric.interval <= 0:
        assert interval is not None
        interval.fail("interval must be greater than zero", "use 30s, 5m or 1h")
    if count is not None and metric.count is not None:
        if metric.count > 1 and metric.interval is None:
            count.fail("count above 1 needs an interval", "add interval: 30s")
        if 0 < metric.count < metric.failure_limit:
            count.fail("count must be at least failureLimit")
    return metric


def _condition(cur: Cursor | None) -> str | None:
    """A condition, its syntax checked when the expression module is available."""
    if cur is None:
        return None
    text = cur.nonempty_string()
    try:
        from coalmine.analysis import expr  # written separately; optional until it exists
    except ImportError:
        return text
    try:
        expr.compile_expression(ARG_REFERENCE.sub("0", text))
    except SpecError as err:
        cur.fail(
            f"invalid {cur.key}: {err.message}",
            err.hint or "e.g. result >= 0.99 or result.canary <= 2 * result.stable",
        )
    return text


def _provider(cur: Cursor) -> dict[str, Any]:
    data = cur.mapping()
    kinds_hint = "one of: " + ", ".join(PROVIDER_KINDS)
    if len(data) != 1:
        cur.fail(f"a provider needs exactly one kind, got {len(data)}", kinds_hint)
    (body,) = cur.fields()
    if body.key not in PROVIDER_KINDS:
        guess = _closest(body.key, PROVIDER_KINDS)
        body.fail(
            f"unknown provider '{body.key}'", f"did you mean '{guess}'?" if guess else kinds_hint
        )
    if body.key in PROVIDER_FIELDS:
        body.check_fields(PROVIDER_FIELDS[body.key])
    elif body.key == "plugin":
        plugins = body.mapping()
        if len(plugins) != 1:
            body.fail(
                f"plugin needs exactly one plug-in name, got {len(plugins)}",
                "e.g. plugin: {coalmine/router: {query: error-rate}}",
            )
        (config,) = body.fields()
        if config.value is not None:
            config.mapping()
    else:
        body.mapping()
    return data  # a YMap: it remembers the line of every field, for errors found later

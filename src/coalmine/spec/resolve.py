"""From a loaded bundle to what coalmine runs: template lookup, arg substitution, and the checks
that stop a valid file from running (missing templates, unset args, unsupported providers)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from coalmine.durations import parse_duration
from coalmine.errors import NotSupportedError, SpecError
from coalmine.spec.loader import ARG_REFERENCE, dry_run_matches
from coalmine.spec.model import (
    Analysis,
    AnalysisTemplate,
    Bundle,
    Location,
    Metric,
    Rollout,
    TemplateRef,
)
from coalmine.spec.yamlpos import DURATION_HINT, YMap, YSeq, closest, map_strings

# What the controller can measure with today; the rest of Argo's providers load but do not run.
SUPPORTED_PROVIDERS: tuple[str, ...] = ("prometheus", "web")
SUPPORTED_PLUGINS = ("coalmine/router", "coalmine/judge", "coalmine/probe")
ROUTER_QUERIES = ("error-rate", "availability", "latency", "request-rate", "requests")
ROUTER_VERSIONS = ("stable", "canary", "baseline")  # baseline: needs a baseline cohort
ROUTER_KEYS = ("query", "version", "quantile", "window", "minRequests")


def _error(
    message: str,
    where: Location | None,
    field: str | None = None,
    hint: str | None = None,
    cls: type[SpecError] = SpecError,
) -> SpecError:
    return cls(
        message,
        file=where.file if where else None,
        line=where.line if where else None,
        field=field,
        hint=hint,
    )


# --------------------------------------------------------------------------- lookup


def find_template(bundle: Bundle, ref: TemplateRef) -> AnalysisTemplate | None:
    """The template a reference names: cluster templates when ``cluster_scope`` is set."""
    pool = bundle.cluster_templates if ref.cluster_scope else bundle.templates
    return pool.get(ref.template_name)


def _missing(
    bundle: Bundle, ref: TemplateRef, analysis: Analysis, field: str = "analysis"
) -> SpecError:
    kind = "ClusterAnalysisTemplate" if ref.cluster_scope else "AnalysisTemplate"
    other = bundle.templates if ref.cluster_scope else bundle.cluster_templates
    if ref.template_name in other:
        flip = "remove clusterScope: true" if ref.cluster_scope else "add clusterScope: true"
        hint = f"'{ref.template_name}' exists with the other scope; {flip}"
    else:
        pool = bundle.cluster_templates if ref.cluster_scope else bundle.templates
        guess = closest(ref.template_name, pool)
        hint = f"did you mean '{guess}'?" if guess else f"add a {kind} to the files you load"
    return _error(
        f"{kind} '{ref.template_name}' not found", analysis.location, f"{field}.templates", hint
    )


# --------------------------------------------------------------------------- args


def resolve_args(bundle: Bundle, analysis: Analysis) -> dict[str, str]:
    """Template defaults overridden by the analysis' args; every declared arg must get a value."""
    declared: dict[str, str | None] = {}
    owner: dict[str, AnalysisTemplate] = {}
    for ref in analysis.templates:
        template = find_template(bundle, ref)
        if template is None:
            raise _missing(bundle, ref, analysis)
        for arg in template.args:
            known = declared.get(arg.name)
            if known is not None and arg.value is not None and arg.value != known:
                raise _error(
                    f"arg '{arg.name}' has different defaults in templates "
                    f"'{owner[arg.name].name}' and '{template.name}'",
                    template.location,
                    "spec.args",
                    "give it the same default, or pass it from the rollout",
                )
            if known is None:
                declared[arg.name] = arg.value
                owner[arg.name] = template
    for arg in analysis.args:
        declared[arg.name] = arg.value
    values: dict[str, str] = {}
    for name, value in declared.items():
        if value is None:
            raise _error(
                f"arg '{name}' of template '{owner[name].name}' has no value",
                analysis.location,
                "args",
                f"pass it: args: [{{name: {name}, value: ...}}]",
            )
        values[name] = value
    return values


def substitute(value: Any, args: dict[str, str], where: Location | None = None) -> Any:
    """Replace ``{{args.NAME}}`` in every string inside ``value``; unknown names are errors."""

    def one(match: Any) -> str:
        name = match.group(1)
        if name not in args:
            guess = closest(name, args)
            hint = f"did you mean '{guess}'?" if guess else "declare it in the template's args"
            raise _error(f"unknown arg '{name}' in {match.group(0)!r}", where, None, hint)
        return args[name]

    return map_strings(value, lambda text: ARG_REFERENCE.sub(one, text))


def resolve_analysis(bundle: Bundle, analysis: Analysis) -> tuple[Metric, ...]:
    """The metrics of every referenced template, in order, with args substituted and the
    analysis' dryRun applied. Raises SpecError."""
    args = resolve_args(bundle, analysis)
    seen: dict[str, str] = {}
    out: list[Metric] = []
    for ref in analysis.templates:
        template = find_template(bundle, ref)
        assert template is not None  # resolve_args checked
        for metric in template.metrics:
            if metric.name in seen:
                raise _error(
                    f"metric '{metric.name}' is defined by templates '{seen[metric.name]}' "
                    f"and '{template.name}'",
                    metric.location,
                    "name",
                    "metric names must be unique across the templates of one analysis",
                )
            seen[metric.name] = template.name
            out.append(_resolve_metric(metric, args, analysis))
    return tuple(out)


def _resolve_metric(metric: Metric, args: dict[str, str], analysis: Analysis) -> Metric:
    def text(value: str | None) -> str | None:
        return None if value is None else substitute(value, args, metric.location)

    return replace(
        metric,
        provider=substitute(metric.provider, args, metric.location),
        success_condition=text(metric.success_condition),
        failure_condition=text(metric.failure_condition),
        dry_run=metric.dry_run or dry_run_matches(analysis.dry_run_metrics, metric.name),
    )


# --------------------------------------------------------------------------- runnable checks


def check_runnable(bundle: Bundle, rollout_name: str | None = None) -> list[SpecError]:
    """Problems that stop coalmine from running a valid bundle. Without ``rollout_name``: every
    rollout and every template; with it: that rollout and the templates it uses."""
    if rollout_name is not None and rollout_name not in bundle.rollouts:
        guess = closest(rollout_name, bundle.rollouts)
        hint = f"did you mean '{guess}'?" if guess else "known: " + ", ".join(bundle.rollouts)
        return [SpecError(f"rollout '{rollout_name}' not found", hint=hint)]
    names = [rollout_name] if rollout_name else list(bundle.rollouts)
    errors: list[SpecError] = []
    checked: set[int] = set()
    for name in names:
        for field, analysis in _analyses(bundle.rollouts[name]):
            errors.extend(_check_analysis(bundle, analysis, field, checked))
    if rollout_name is None:
        for template in [*bundle.templates.values(), *bundle.cluster_templates.values()]:
            if id(template) not in checked:
                defaults = {a.name: a.value for a in template.args if a.value is not None}
                errors.extend(_check_template(template, defaults, partial=True))
    return _dedupe(errors)


def _analyses(rollout: Rollout) -> list[tuple[str, Analysis]]:
    """Each analysis of a rollout with its field path, the background one first."""
    prefix = "spec.strategy.canary"
    found = [
        (f"{prefix}.steps[{i}].analysis", s)
        for i, s in enumerate(rollout.steps)
        if isinstance(s, Analysis)
    ]
    if rollout.background is not None:
        found.insert(0, (f"{prefix}.analysis", rollout.background.analysis))
    return found


def _check_analysis(
    bundle: Bundle, analysis: Analysis, field: str, checked: set[int]
) -> list[SpecError]:
    errors: list[SpecError] = []
    present: list[TemplateRef] = []
    for ref in analysis.templates:
        if find_template(bundle, ref) is None:
            errors.append(_missing(bundle, ref, analysis, field))
        else:
            present.append(ref)
    templates = [t for t in (find_template(bundle, r) for r in present) if t is not None]
    declared = {a.name for t in templates for a in t.args}
    for arg in analysis.args:
        if templates and arg.name not in declared:
            guess = closest(arg.name, declared)
            errors.append(
                _error(
                    f"arg '{arg.name}' is not declared by any referenced template",
                    analysis.location,
                    f"{field}.args",
                    f"did you mean '{guess}'?"
                    if guess
                    else "remove it or declare it in the template's spec.args",
                )
            )
    if not templates:
        return errors
    try:
        args = resolve_args(bundle, replace(analysis, templates=tuple(present)))
        resolve_analysis(bundle, replace(analysis, templates=tuple(present)))
    except SpecError as err:
        return [*errors, err]
    for template in templates:
        checked.add(id(template))
        errors.extend(_check_template(template, args, partial=False))
    return errors


def _check_template(
    template: AnalysisTemplate, args: dict[str, str], partial: bool
) -> list[SpecError]:
    """Provider problems of each metric; ``partial``: args may be unknown (unused template)."""
    errors: list[SpecError] = []
    for i, metric in enumerate(template.metrics):
        field = f"spec.metrics[{i}].provider"
        try:
            provider = metric.provider
            if partial:
                provider = _substitute_known(provider, args)
            else:
                provider = substitute(provider, args, metric.location)
            check_provider(replace(metric, provider=provider), field)
        except SpecError as err:
            errors.append(err)
    return errors


def _substitute_known(value: Any, args: dict[str, str]) -> Any:
    return map_strings(
        value, lambda text: ARG_REFERENCE.sub(lambda m: args.get(m.group(1), m.group(0)), text)
    )


def check_provider(metric: Metric, field: str = "provider") -> None:
    """Raise NotSupportedError for providers coalmine does not run; check router configs."""
    (kind,) = metric.provider.keys()
    name = metric.provider_name
    runs = "coalmine measures with " + ", ".join(SUPPORTED_PROVIDERS + SUPPORTED_PLUGINS)
    if kind == "plugin":
        if name not in SUPPORTED_PLUGINS:
            raise _error(
                f"plug-in '{name}' is not supported yet",
                metric.location,
                f"{field}.plugin",
                runs,
                NotSupportedError,
            )
    elif kind not in SUPPORTED_PROVIDERS:
        raise _error(
            f"provider '{kind}' is not supported yet",
            metric.location,
            f"{field}.{kind}",
            runs,
            NotSupportedError,
        )
    if name == "coalmine/router":
        check_router_config(
            metric.provider_config, metric.location, f"{field}.plugin.coalmine/router"
        )
    elif name in ("prometheus", "web"):
        check_http_provider_config(name, metric.provider_config, metric.location, f"{field}.{name}")
    elif name == "coalmine/judge":
        from coalmine.metrics.judge import JudgeConfigError, parse_judge_config

        try:
            parse_judge_config(metric.provider_config)
        except JudgeConfigError as err:
            route = ("plugin", name, *err.path)
            raise _error(
                err.message,
                field_location(metric, route),
                f"{field}.plugin.{name}" + (f".{err.field}" if err.path else ""),
                err.hint or "see docs/judge.md for the judge's fields",
            ) from None
    elif name == "coalmine/probe":
        from coalmine.metrics.probe import parse_probe_config

        try:
            parse_probe_config(metric.provider_config, check_only=True)
        except ValueError as err:
            at = getattr(err, "field", "")
            raise _error(
                str(err),
                metric.location,
                f"{field}.plugin.coalmine/probe" + (f".{at}" if at else ""),
                "see docs/providers.md for the probe plug-in's fields",
            ) from None


def field_location(metric: Metric, route: tuple[str | int, ...]) -> Location | None:
    """Where a field of the metric's provider is, e.g. ``("plugin", "coalmine/judge",
    "groupWeights", "x")``: the line of the deepest part of ``route`` that exists (the loader
    keeps the provider as YAML mappings that remember their lines); else the metric's."""
    where = metric.location
    if where is None or not isinstance(metric.provider, YMap):
        return where
    return Location(where.file, _line_of(metric.provider, route))


def _line_of(node: YMap, route: tuple[str | int, ...]) -> int:
    line, value = node.line, node
    for part in route:
        if isinstance(value, YMap) and isinstance(part, str) and part in value:
            line, value = value.key_lines[part], value[part]
        elif isinstance(value, YSeq) and isinstance(part, int) and 0 <= part < len(value):
            line, value = value.item_lines[part], value[part]
        else:
            break
    return line


def check_http_provider_config(
    kind: str, config: dict[str, Any], where: Location | None = None, field: str | None = None
) -> None:
    """Validate a ``prometheus`` or ``web`` provider config (after arg substitution) with the
    provider's own rules. Values still holding ``{{args.x}}`` are left unchecked."""
    from coalmine.metrics import prometheus, web  # here: the spec layer loads without httpx

    parse = prometheus.parse_config if kind == "prometheus" else web.parse_config
    field = field or kind
    try:
        parse(config, check_only=True)
    except SpecError as err:
        raise _error(
            err.message,
            where,
            f"{field}.{err.field}" if err.field else field,
            err.hint,
            type(err),
        ) from None


def check_router_config(
    config: dict[str, Any], where: Location | None = None, field: str = "coalmine/router"
) -> None:
    """Validate a ``coalmine/router`` plug-in config (after arg substitution). Values still
    holding ``{{args.x}}`` are left unchecked."""

    def fail(key: str, message: str, hint: str | None = None) -> SpecError:
        return _error(message, where, f"{field}.{key}", hint)

    for key in config:
        if key not in ROUTER_KEYS:
            guess = closest(key, ROUTER_KEYS)
            raise fail(
                key,
                f"unknown field '{key}'",
                f"did you mean '{guess}'?" if guess else "known: " + ", ".join(ROUTER_KEYS),
            )
    queries = "one of: " + ", ".join(ROUTER_QUERIES)
    if "query" not in config:
        raise fail("query", "missing required field 'query'", queries)
    config = {k: v for k, v in config.items() if not (isinstance(v, str) and "{{" in v)}
    query = config.get("query")
    if "query" in config and query not in ROUTER_QUERIES:
        raise fail("query", f"unknown query {query!r}", queries)
    if "version" in config and config["version"] not in ROUTER_VERSIONS:
        raise fail(
            "version", f"invalid version {config['version']!r}", "use stable, canary or baseline"
        )
    if "quantile" in config:
        if query not in (None, "latency"):
            raise fail("quantile", "quantile applies only to query: latency")
        q = _number(config["quantile"])
        if q is None or not 0 < q < 1:
            raise fail(
                "quantile",
                f"quantile must be between 0 and 1, got {config['quantile']!r}",
                "e.g. 0.99 for p99",
            )
    if "window" in config:
        try:
            window = parse_duration(config["window"])
        except ValueError as err:
            raise fail("window", str(err), DURATION_HINT) from None
        if window <= 0:
            raise fail("window", "window must be longer than zero", DURATION_HINT)
    if "minRequests" in config:
        n = config["minRequests"]
        if isinstance(n, str) and n.strip().isdigit():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise fail("minRequests", f"minRequests must be an integer of at least 0, got {n!r}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dedupe(errors: list[SpecError]) -> list[SpecError]:
    seen: set[str] = set()
    out: list[SpecError] = []
    for err in errors:
        key = err.one_line()
        if key not in seen:
            seen.add(key)
            out.append(err)
    return out

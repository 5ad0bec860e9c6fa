"""The ``coalmine/judge`` metric plug-in: the statistical canary-versus-baseline judge.

Each look hands the judge every request the router saw since the analysis run started
(fetched incrementally), and maps its verdict to a measurement: fail → Failed, pass →
Successful, marginal → Inconclusive (a human decides), continue → a look without a decision,
no data → a look without a decision until the final look, where it is Inconclusive.

Gauge metrics (``kind: gauge`` with a PromQL ``query`` holding ``{{version}}``) come from the
Prometheus named by the config's ``prometheus`` block: ``PrometheusGauges`` range-queries each
version from the start of the run, and ``LiveJudgeMetrics`` joins them to the router's requests.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from coalmine.analysis.judge import JudgeData, JudgeMetric, JudgeSpec, Request, judge
from coalmine.analysis.judge.model import BASELINE, CANARY, Sample
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.errors import CoalmineError, SpecError
from coalmine.metrics.base import MeasureContext
from coalmine.metrics.prometheus import (
    MAX_POINTS,
    PrometheusConfig,
    PrometheusError,
    PrometheusMetrics,
    scrub,
)
from coalmine.metrics.prometheus import parse_config as parse_prometheus_config
from coalmine.spec.model import Metric
from coalmine.traffic.client import RouterClient

SPEC_FIELDS = {
    "alpha": ("alpha", float),
    "passScore": ("pass_score", float),
    "marginalScore": ("marginal_score", float),
    "earlyPass": ("early_pass", bool),
    "groupWeights": ("group_weights", dict),
    "gaugeBucketSeconds": ("gauge_bucket_seconds", float),
    "capWindowSeconds": ("cap_window_seconds", float),
    "prometheus": (None, object),  # checked by gauge_sources
    "metrics": (None, list),
}
METRIC_FIELDS = {
    "name": ("name", str),
    "kind": ("kind", str),
    "worse": ("worse", str),
    "quantile": ("quantile", float),
    "relativeTolerance": ("relative_tolerance", float),
    "absoluteTolerance": ("absolute_tolerance", float),
    "bound": ("bound", float),
    "critical": ("critical", bool),
    "group": ("group", str),
    "weight": ("weight", float),
    "minSamples": ("min_samples", int),
    "noData": ("no_data", str),
    "dryRun": ("dry_run", bool),
    "alphaWeight": ("alpha_weight", float),
    "query": (None, str),  # gauge metrics only: checked by gauge_sources
}
CHOICES = {
    "kind": ("ratio", "latency", "gauge"),
    "worse": ("higher", "lower"),
    "noData": ("inconclusive", "fail", "ignore"),
}
FETCH_LIMIT = 200_000

DataSource = Callable[[float, float], Awaitable[JudgeData]]  # (since, now) -> data


PLUGIN = "coalmine/judge"
WEIGHT_HINT = "a weight is a number such as 1 or 0.5; 0 leaves it out of the score"
_KINDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
Path = tuple[str | int, ...]


class JudgeConfigError(ValueError):
    """A bad ``coalmine/judge`` configuration. ``path`` locates the field inside the plug-in's
    config, e.g. ``("metrics", 0, "kind")``, so ``coalmine validate`` can give its line."""

    def __init__(self, path: Path, message: str, hint: str | None = None) -> None:
        self.path = path
        self.message = message
        self.hint = hint
        where = f"{PLUGIN}.{self.field}" if path else PLUGIN
        super().__init__(f"{where}: {message}" + (f" (hint: {hint})" if hint else ""))

    @property
    def field(self) -> str:
        """``path`` written like the loader's field paths: ``metrics[0].kind``."""
        out = ""
        for part in self.path:
            if isinstance(part, int):
                out += f"[{part}]"
            elif "." in part or "/" in part:
                out += f'["{part}"]'
            else:
                out += f".{part}" if out else part
        return out


def _split(field: str) -> Path:
    """A dotted field path (``headers[0].value``) as path parts."""
    return tuple(int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field))


def _number(path: Path, value: Any, hint: str | None = None, text: bool = False) -> float:
    """A number; with ``text`` also one written as a string (an ``{{args.x}}`` value)."""
    try:
        if text and isinstance(value, str):
            return float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise JudgeConfigError(path, "the number is too large", hint) from None
    except ValueError:
        pass
    raise JudgeConfigError(path, f"expected a number, got {value!r}", hint)


def _group_weights(path: Path, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise JudgeConfigError(path, f"expected a mapping of group to weight, got {value!r}")
    out = {}
    for group, raw in value.items():
        weight = _number((*path, str(group)), raw, WEIGHT_HINT, text=True)
        if not (weight >= 0 and math.isfinite(weight)):
            raise JudgeConfigError((*path, str(group)), f"must be >= 0, got {raw!r}", WEIGHT_HINT)
        out[str(group)] = weight
    return out


def _typed(path: Path, value: Any, kind: type) -> Any:
    key = path[-1]
    if key == "quantile" and value is None:
        return None  # the whole latency distribution
    if kind is float:
        return _number(path, value, WEIGHT_HINT if key == "weight" else None)
    if kind is dict:
        return _group_weights(path, value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = _KINDS.get(kind, f"a {kind.__name__}")
        raise JudgeConfigError(path, f"expected {expected}, got {value!r}")
    if key in CHOICES and value not in CHOICES[str(key)]:
        choices = CHOICES[str(key)]
        raise JudgeConfigError(path, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _fields(
    path: Path, raw: dict[str, Any], known: Mapping[str, tuple[str | None, type]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
            raise JudgeConfigError((*path, str(key)), f"unknown field {key!r}", hint)
        attr, kind = known[key]
        checked = _typed((*path, key), value, kind)
        if attr is not None:
            out[attr] = checked
    return out


def _blame(path: Path, err: ValueError, raw: dict[str, Any], known: Mapping[str, Any]) -> Path:
    """The field a model error (``pass_score must be ...``) is about: the first field its
    message names that the config sets; else ``path`` itself."""
    message = str(err)
    named = [
        (match.start(), key)
        for key, (attr, _) in known.items()
        if attr and key in raw and (match := re.search(rf"\b{attr}\b", message))
    ]
    return (*path, min(named)[1]) if named else path


def parse_judge_config(config: dict[str, Any]) -> JudgeSpec:
    """The plug-in's YAML (camelCase) as a JudgeSpec. JudgeConfigError (a ValueError) names
    the bad field."""
    spec = _fields((), config, SPEC_FIELDS)
    raw_metrics = config.get("metrics")
    if not raw_metrics:
        raise JudgeConfigError(("metrics",), "at least one metric is needed")
    metrics = []
    for i, raw in enumerate(raw_metrics):
        at: Path = ("metrics", i)
        if not isinstance(raw, dict):
            raise JudgeConfigError(at, "expected a mapping", "e.g. {name: errors, kind: ratio}")
        for required in ("name", "kind"):
            if required not in raw:
                raise JudgeConfigError(at, f"{required!r} is required")
        fields = _fields(at, raw, METRIC_FIELDS)
        try:
            metrics.append(JudgeMetric(**fields))
        except ValueError as err:
            raise JudgeConfigError(_blame(at, err, raw, METRIC_FIELDS), str(err)) from None
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise JudgeConfigError(("metrics",), "metric names must be unique")
    gauge_sources(config, check_only=True)
    try:
        return JudgeSpec(metrics=tuple(metrics), **spec)
    except ValueError as err:
        raise JudgeConfigError(_blame((), err, config, SPEC_FIELDS), str(err)) from None


class JudgeMetrics:
    """Judges the data its source returns for ``(since, now)``: the live router's records, or
    recorded data in a backtest, so both take the same path."""

    def __init__(self, source: DataSource) -> None:
        self.source = source

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        try:
            spec = parse_judge_config(metric.provider_config)
        except ValueError as err:
            return ProviderResult(phase=Phase.ERROR, message=str(err))
        if context.time_scale != 1.0:
            # The demo runs durations faster; the cap window is a duration like the others.
            spec = replace(spec, cap_window_seconds=spec.cap_window_seconds / context.time_scale)
        since = context.run_started_at if context.run_started_at is not None else context.now
        try:
            data = await self.source(since, context.now)
        except CoalmineError as err:
            return ProviderResult(phase=Phase.ERROR, message=err.one_line())
        verdict = judge(spec, data, final_look=context.final_look)
        return to_result(verdict, context.final_look)


class RouterRequests:
    """The router's records since a run started, fetched incrementally: each look only asks
    for what is new. One per rollout."""

    def __init__(self, router: RouterClient) -> None:
        self.router = router
        self._seen: dict[float, list[Request]] = {}

    async def __call__(self, since: float, now: float) -> JudgeData:
        seen = self._seen.setdefault(since, [])
        for key in [k for k in self._seen if k != since]:
            del self._seen[key]  # an older run: its data is no longer needed
        last = seen[-1].t if seen else since
        while True:
            batch = await self.router.records(last, FETCH_LIMIT)
            # ``seen`` keeps the router's own version names (stable, canary, baseline); they
            # are mapped to the judge's two sides below, on every look.
            seen.extend(
                Request(r["t"], r["version"], float(r["latency_ms"]), int(r["status"]))
                for r in batch
            )
            if len(batch) < FETCH_LIMIT:
                break
            last = seen[-1].t
        # The judge compares "canary" with "baseline". A router with a baseline cohort (a fresh
        # copy of stable with the canary's share of tenants) tags those records "baseline":
        # then they alone are the judge's baseline and the long-running stable's records are
        # left out, so the canary is compared with an equally young, equally loaded cohort.
        # Without one (no "baseline" record yet), stable is the baseline as before.
        cohort = any(r.version == "baseline" for r in seen)
        return JudgeData(
            requests=tuple(
                r
                if r.version in ("canary", "baseline")
                else Request(r.t, "baseline", r.latency_ms, r.status)
                for r in seen
                if not (cohort and r.version == "stable")
            )
        )


def to_result(verdict: Any, final_look: bool) -> ProviderResult:
    """A JudgeVerdict as a measurement."""
    phase = {
        "fail": Phase.FAILED,
        "pass": Phase.SUCCESSFUL,
        "marginal": Phase.INCONCLUSIVE,
        "continue": Phase.RUNNING,
        "no-data": Phase.INCONCLUSIVE if final_look else Phase.RUNNING,
    }[verdict.verdict]
    return ProviderResult(
        value=verdict.score, phase=phase, message=verdict.reason, details=verdict.to_dict()
    )


# --------------------------------------------------------------------------- gauges


GAUGE_VERSIONS = (("canary", CANARY), ("stable", BASELINE))  # label value -> judge side
_VERSION_PLACEHOLDER = re.compile(r"\{\{\s*version\s*\}\}")
PROMETHEUS_BLOCK_ONLY = ("query", "rangeQuery")  # per gauge metric, not in the shared block


class GaugeSourceError(CoalmineError):
    """A gauge could not be read from Prometheus; the message holds no credentials."""


@dataclass(frozen=True)
class GaugeQuery:
    metric: str
    query: str  # PromQL with the ``{{version}}`` placeholder

    def for_version(self, version: str) -> str:
        return _VERSION_PLACEHOLDER.sub(version, self.query)


def gauge_sources(
    config: dict[str, Any], check_only: bool = False
) -> tuple[tuple[GaugeQuery, ...], PrometheusConfig | None]:
    """The gauge metrics' queries and the shared ``prometheus`` block of a judge config.

    JudgeConfigError names the bad field. With ``check_only`` the block's values that still hold
    ``{{args.x}}`` are not checked and no PrometheusConfig is returned."""
    queries: list[GaugeQuery] = []
    for i, raw in enumerate(config.get("metrics") or []):
        if not isinstance(raw, dict):
            continue
        at: Path = ("metrics", i, "query")
        query = raw.get("query")
        if raw.get("kind") != "gauge":
            if query is not None:
                raise JudgeConfigError(
                    at,
                    "only gauge metrics have a query",
                    "ratio and latency come from the router's requests; remove it",
                )
            continue
        if not isinstance(query, str) or not query.strip():
            raise JudgeConfigError(
                at,
                "a gauge metric needs a PromQL query with {{version}}",
                'e.g. avg(rate(process_cpu_seconds_total{version="{{version}}"}[1m]))',
            )
        if not _VERSION_PLACEHOLDER.search(query):
            raise JudgeConfigError(
                at,
                "the query must contain {{version}}",
                "it is replaced by canary and stable in turn (one query per version)",
            )
        queries.append(GaugeQuery(str(raw.get("name")), query))
    block = config.get("prometheus")
    if block is None:
        if queries:
            raise JudgeConfigError(
                ("prometheus",),
                "gauge metrics need a prometheus block",
                "e.g. prometheus: {address: http://127.0.0.1:9090}",
            )
        return (), None
    if not isinstance(block, dict):
        raise JudgeConfigError(("prometheus",), "expected a mapping such as {address: ...}")
    for key in PROMETHEUS_BLOCK_ONLY:
        if key in block:
            raise JudgeConfigError(
                ("prometheus", key), "not allowed here", "each gauge metric has its own query"
            )
    try:
        parsed = parse_prometheus_config({**block, "query": "vector(0)"}, check_only=check_only)
    except SpecError as err:
        path = ("prometheus", *_split(err.field or ""))
        raise JudgeConfigError(path, err.message, err.hint) from None
    return tuple(queries), parsed


class PrometheusGauges:
    """Gauge samples from Prometheus: for each gauge metric, a range query per version from
    ``since`` to ``now`` at a step of the judge's ``gauge_bucket_seconds``. Each point of each
    series is a Sample (several series of one version all count: aggregate in the query to get
    one). NaN and infinite points are left out; no series means no samples."""

    def __init__(
        self,
        prometheus: PrometheusConfig,
        queries: tuple[GaugeQuery, ...],
        step: float,
        client: PrometheusMetrics | None = None,
    ) -> None:
        if step <= 0:
            raise ValueError("the step must be > 0")
        self.prometheus = prometheus
        self.queries = queries
        self.step = step
        self.client = client or PrometheusMetrics()

    @classmethod
    def from_config(
        cls, config: dict[str, Any], client: PrometheusMetrics | None = None
    ) -> PrometheusGauges | None:
        """The source a judge config asks for; None without gauge metrics. ValueError."""
        spec = parse_judge_config(config)
        queries, prometheus = gauge_sources(config)
        if not queries or prometheus is None:
            return None
        return cls(prometheus, queries, spec.gauge_bucket_seconds, client)

    def windows(self, since: float, now: float) -> list[tuple[float, float]]:
        """``[since, now]`` cut into range queries of at most MAX_POINTS steps each, on the
        grid ``since + k * step`` (so both versions' points share timestamps)."""
        out: list[tuple[float, float]] = []
        end = max(now, since)
        per_query = (MAX_POINTS - 1) * self.step
        start = since
        while start <= end:
            stop = min(end, start + per_query)
            out.append((start, stop))
            start = stop + self.step
        return out

    async def __call__(self, since: float, now: float) -> JudgeData:
        jobs = [
            (gauge, label, side, start, stop)
            for gauge in self.queries
            for label, side in GAUGE_VERSIONS
            for start, stop in self.windows(since, now)
        ]
        answers = await asyncio.gather(
            *(self._range(g.for_version(label), a, b) for g, label, _, a, b in jobs),
            return_exceptions=True,
        )
        samples: list[Sample] = []
        for (gauge, label, side, _, _), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, PrometheusError):
                message = scrub(str(answer), self.prometheus.secrets)
                raise GaugeSourceError(f"gauge {gauge.metric!r} ({label}): {message}")
            if isinstance(answer, BaseException):
                raise answer
            samples.extend(_points(answer, gauge.metric, side))
        return JudgeData(samples=tuple(samples))

    async def _range(self, query: str, start: float, stop: float) -> dict[str, Any]:
        config = replace(self.prometheus, query=query)
        form = {
            "query": query,
            "start": f"{start:.3f}",
            "end": f"{stop:.3f}",
            "step": f"{self.step:.3f}",
        }
        data, _ = await self.client._call(config, "/api/v1/query_range", form)  # shared client
        return data


def _points(data: dict[str, Any], metric: str, side: str) -> list[Sample]:
    kind = data.get("resultType")
    if kind != "matrix":
        raise GaugeSourceError(
            f"gauge {metric!r}: a range query answered a {kind!r} instead of a matrix"
        )
    out: list[Sample] = []
    try:
        for series in data.get("result") or []:
            for t, raw in series.get("values") or []:
                value = float(raw)
                if math.isfinite(value):
                    out.append(Sample(float(t), side, metric, value))
    except (TypeError, ValueError, AttributeError) as err:
        raise GaugeSourceError(f"gauge {metric!r}: cannot read Prometheus' answer: {err}") from None
    return out


class CombinedSource:
    """The router's requests and the gauges' samples, fetched concurrently, as one JudgeData."""

    def __init__(self, requests: DataSource, gauges: DataSource) -> None:
        self.requests = requests
        self.gauges = gauges

    async def __call__(self, since: float, now: float) -> JudgeData:
        first, second = await asyncio.gather(self.requests(since, now), self.gauges(since, now))
        return JudgeData(
            requests=first.requests + second.requests, samples=first.samples + second.samples
        )


class LiveJudgeMetrics:
    """The live ``coalmine/judge``: the router's requests, plus Prometheus gauges when the
    metric's config has gauge metrics (only the gauges when it has nothing else)."""

    def __init__(self, requests: DataSource, prometheus: PrometheusMetrics | None = None) -> None:
        self.requests = requests
        self.prometheus = prometheus or PrometheusMetrics()

    def source_for(self, config: dict[str, Any]) -> DataSource:
        try:
            gauges = PrometheusGauges.from_config(config, self.prometheus)
        except ValueError:
            return self.requests  # JudgeMetrics reports the configuration error
        if gauges is None:
            return self.requests
        kinds = {m.get("kind") for m in config.get("metrics") or [] if isinstance(m, dict)}
        if kinds == {"gauge"}:
            return gauges
        return CombinedSource(self.requests, gauges)

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        source = self.source_for(metric.provider_config)
        return await JudgeMetrics(source).measure(metric, context)

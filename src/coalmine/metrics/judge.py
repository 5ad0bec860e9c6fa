"""The ``coalmine/judge`` metric plug-in: the statistical canary-versus-baseline judge.

Each look hands the judge every request the router saw since the analysis run started
(fetched incrementally), and maps its verdict to a measurement: fail → Failed, pass →
Successful, marginal → Inconclusive (a human decides), continue → a look without a decision,
no data → a look without a decision until the final look, where it is Inconclusive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from coalmine.analysis.judge import JudgeData, JudgeMetric, JudgeSpec, Request, judge
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.errors import CoalmineError
from coalmine.metrics.base import MeasureContext
from coalmine.spec.model import Metric
from coalmine.traffic.client import RouterClient

SPEC_FIELDS = {
    "alpha": ("alpha", float),
    "passScore": ("pass_score", float),
    "marginalScore": ("marginal_score", float),
    "earlyPass": ("early_pass", bool),
    "groupWeights": ("group_weights", dict),
    "baseline": (None, str),
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
}
CHOICES = {
    "kind": ("ratio", "latency"),
    "worse": ("higher", "lower"),
    "noData": ("inconclusive", "fail", "ignore"),
    "baseline": ("stable",),
}
FETCH_LIMIT = 200_000

DataSource = Callable[[float, float], Awaitable[JudgeData]]  # (since, now) -> data


def _typed(where: str, key: str, value: Any, kind: type) -> Any:
    if key == "quantile" and value is None:
        return None  # the whole latency distribution
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is dict and isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ValueError(f"{where}.{key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    return value


def _fields(
    where: str, raw: dict[str, Any], known: Mapping[str, tuple[str | None, type]]
) -> dict[str, Any]:
    import difflib

    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown field {key!r}{hint}")
        attr, kind = known[key]
        checked = _typed(where, key, value, kind)
        if attr is not None:
            out[attr] = checked
    return out


def parse_judge_config(config: dict[str, Any]) -> JudgeSpec:
    """The plug-in's YAML (camelCase) as a JudgeSpec; ValueError names the bad field."""
    where = "coalmine/judge"
    spec = _fields(where, config, SPEC_FIELDS)
    raw_metrics = config.get("metrics")
    if not raw_metrics:
        raise ValueError(f"{where}.metrics: at least one metric is needed")
    metrics = []
    for i, raw in enumerate(raw_metrics):
        at = f"{where}.metrics[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{at}: expected a mapping")
        for required in ("name", "kind"):
            if required not in raw:
                raise ValueError(f"{at}: {required!r} is required")
        metrics.append(JudgeMetric(**_fields(at, raw, METRIC_FIELDS)))
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}.metrics: metric names must be unique")
    return JudgeSpec(metrics=tuple(metrics), **spec)


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
            seen.extend(
                Request(
                    r["t"],
                    "canary" if r["version"] == "canary" else "baseline",
                    float(r["latency_ms"]),
                    int(r["status"]),
                )
                for r in batch
            )
            if len(batch) < FETCH_LIMIT:
                return JudgeData(requests=tuple(seen))
            last = seen[-1].t


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

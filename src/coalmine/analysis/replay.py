"""Backtesting: recorded traffic through the live analysis code, on a simulated clock.

A replay reads a JSON-lines data file (request records and metric samples, see
``schemas/replay-data.schema.json`` and docs/backtesting.md), starts an analysis run with
:func:`coalmine.analysis.run.start_run` at the first data time, and then jumps a simulated clock
from one :func:`next_due_at` to the next. At each look every due metric is measured by the same
provider code the controller uses, fed only with the data visible at that time:

- ``coalmine/router``: :class:`coalmine.metrics.router.RouterMetrics` over a
  :class:`ReplayRouter`, whose :class:`~coalmine.traffic.window.MeasurementWindow` (the live
  router's window class, with the live defaults) has been given every request with ``t <= now``;
- ``coalmine/judge``: the judge with every request and sample since the run started;
- any other provider: the metric samples named after the metric (``result`` is the latest value
  at or before the look), or an error saying the metric cannot be replayed.

Each answer goes through :func:`measurement_from` and :func:`record` exactly as live; when the
data ends before the run completes, the run is terminated with :data:`DATA_ENDED`. Nothing here
reads a real clock or the network: the same data and templates give the same timeline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from coalmine.analysis.expr import format_value
from coalmine.analysis.run import (
    RunState,
    due_metrics,
    measurement_from,
    next_due_at,
    record,
    start_run,
    terminate,
)
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.durations import format_duration
from coalmine.errors import CoalmineError
from coalmine.metrics.base import MeasureContext, MetricProvider
from coalmine.spec.model import Analysis, Arg, Bundle, Metric, TemplateRef
from coalmine.spec.yamlpos import closest
from coalmine.traffic.base import Routing, Stats
from coalmine.traffic.window import MeasurementWindow

VERSIONS = ("stable", "baseline", "canary")  # "baseline" and "stable" are the same side
REQUEST_FIELDS = ("t", "version", "latency_ms", "status")
SAMPLE_FIELDS = ("t", "version", "metric", "value")
EPOCH_FROM = 1e9  # a t at or above this is epoch seconds (2001-09-09); below, seconds from start
DATA_ENDED = "the recorded data ended"
RUN_NAME = "replay"
MAX_LOOKS = 100_000  # a guard against templates that would measure forever at one instant
MAX_LINE_BYTES = 64 * 1024  # a data line is under 200 bytes; anything this long is not data
MAX_DIGITS = 100  # a JSON integer longer than this is not a time, a latency or a status
T_HINT = "seconds from the start of the recording, or epoch seconds: 12.5"
FORMAT_HINT = (
    'one JSON object per line: {"t": 12.5, "version": "canary", "latency_ms": 31.2, '
    '"status": 200} or {"t": 15, "version": "canary", "metric": "cpu", "value": 0.42}'
)


class ReplayDataError(CoalmineError):
    """A data file that cannot be replayed: ``file:line: field 'status': what is wrong``."""

    def one_line(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field_ = f"field '{self.field}': " if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{field_}{self.message}{hint}".replace("\n", " ")


class ReplayError(CoalmineError):
    """The templates and the data do not fit together (a metric that cannot be replayed...)."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RequestRecord:
    """One proxied request: when its response finished, which side served it, how it went."""

    t: float
    version: str  # as written: stable, baseline or canary
    latency_ms: float
    status: int
    line: int = 0

    @property
    def side(self) -> str:
        """The router's name for the version: ``canary`` or ``stable``."""
        return "canary" if self.version == "canary" else "stable"


@dataclass(frozen=True)
class MetricSample:
    """One value of a metric (what a Prometheus query or a web endpoint said at ``t``)."""

    t: float
    version: str
    metric: str
    value: float
    line: int = 0

    @property
    def side(self) -> str:
        return "canary" if self.version == "canary" else "stable"


@dataclass(frozen=True)
class ReplayData:
    """A validated data file, every list sorted by ``t`` (stable: equal times keep file order)."""

    source: str
    requests: tuple[RequestRecord, ...]
    samples: tuple[MetricSample, ...]
    epoch: bool  # t is epoch seconds (else seconds from the start of the recording)
    lines: int  # data lines read (blank lines are not counted)
    notes: tuple[str, ...] = ()

    @property
    def start(self) -> float:
        return min(self._times())

    @property
    def end(self) -> float:
        return max(self._times())

    def _times(self) -> list[float]:
        times = [r.t for r in self.requests[:1]] + [r.t for r in self.requests[-1:]]
        times += [s.t for s in self.samples[:1]] + [s.t for s in self.samples[-1:]]
        return times

    def summary(self) -> dict[str, Any]:
        sides = {"canary": 0, "stable": 0}
        for r in self.requests:
            sides[r.side] += 1
        return {
            "file": self.source,
            "lines": self.lines,
            "requests": len(self.requests),
            "canary_requests": sides["canary"],
            "stable_requests": sides["stable"],
            "samples": len(self.samples),
            "sample_metrics": sorted({s.metric for s in self.samples}),
            "time": "epoch" if self.epoch else "relative",
            "first_t": self.start,
            "last_t": self.end,
        }


def data_schema() -> dict[str, Any]:
    """The published JSON Schema of one data line (``coalmine/schemas/replay-data.schema.json``)."""
    text = resources.files("coalmine").joinpath("schemas/replay-data.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_data(path: str | Path) -> ReplayData:
    """Read and validate a data file; raise :class:`ReplayDataError` naming the line and field."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            return parse_data(_read_lines(handle, source), source)
    except FileNotFoundError:
        raise ReplayDataError(
            "data file not found",
            file=source,
            hint="record one with `coalmine analyze record --admin HOST:PORT --output FILE`",
        ) from None
    except IsADirectoryError:
        raise ReplayDataError(
            "a directory, not a data file", file=source, hint="pass a JSON-lines file"
        ) from None
    except OSError as err:
        raise ReplayDataError(f"cannot read: {err.strerror}", file=source) from None


def _read_lines(handle: IO[bytes], source: str) -> Iterator[str]:
    """The file's lines as text, each checked for length and UTF-8 before it is parsed, so that
    a binary file or a runaway line is named by its line number and never fills the memory."""
    for number in itertools.count(1):
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise ReplayDataError(
                f"the line is longer than {MAX_LINE_BYTES // 1024} KiB",
                file=source,
                line=number,
                hint="a data line is one short JSON object; is this a JSON-lines file?",
            )
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise ReplayDataError(
                f"not UTF-8 text ({err.reason} at column {err.start + 1})",
                file=source,
                line=number,
                hint="is this a JSON-lines file? " + FORMAT_HINT,
            ) from None


def parse_data(lines: Iterable[str], source: str = "<data>") -> ReplayData:
    """Validate JSON lines into :class:`ReplayData`. Blank lines are skipped; lines out of time
    order are sorted (stable), and a note says how many there were."""
    requests: list[RequestRecord] = []
    samples: list[MetricSample] = []
    first_t: tuple[float, int] | None = None
    latest = -math.inf
    late: list[int] = []
    count = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        count += 1
        item = _parse_line(text, source, number)
        if first_t is None:
            first_t = (item.t, number)
        elif (item.t >= EPOCH_FROM) != (first_t[0] >= EPOCH_FROM):
            raise _mixed_times(source, number, item.t, first_t)
        if item.t < latest:
            late.append(number)
        latest = max(latest, item.t)
        if isinstance(item, RequestRecord):
            requests.append(item)
        else:
            samples.append(item)
    if first_t is None:
        raise ReplayDataError(
            "no data: the file has no request records or metric samples",
            file=source,
            hint="record traffic with `coalmine analyze record`, or write " + FORMAT_HINT,
        )
    notes = []
    named = {r.version for r in requests} | {s.version for s in samples}
    if {"stable", "baseline"} <= named:
        notes.append("the data names both 'stable' and 'baseline': both are the compared-with side")
    if late:
        shown = ", ".join(str(n) for n in late[:5]) + (", ..." if len(late) > 5 else "")
        notes.append(
            f"{len(late)} line(s) were earlier than a line before them (lines {shown}); "
            "the data was sorted by t"
        )
    requests.sort(key=lambda r: r.t)
    samples.sort(key=lambda s: s.t)
    return ReplayData(
        source=source,
        requests=tuple(requests),
        samples=tuple(samples),
        epoch=first_t[0] >= EPOCH_FROM,
        lines=count,
        notes=tuple(notes),
    )


def _mixed_times(source: str, number: int, t: float, first: tuple[float, int]) -> ReplayDataError:
    def kind(value: float) -> str:
        return "epoch seconds" if value >= EPOCH_FROM else "seconds from the start"

    return ReplayDataError(
        f"t {_show(t)} is {kind(t)} but line {first[1]} has t {_show(first[0])} ({kind(first[0])})",
        file=source,
        line=number,
        field="t",
        hint="use one kind of time in a file",
    )


class _Unusable:
    """A JSON number no field can hold (``NaN``, ``Infinity``, a 5000-digit integer). Parsing
    keeps it as this marker so that the error names the field it was written in."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _parse_int(text: str) -> int | _Unusable:
    return int(text) if len(text) <= MAX_DIGITS else _Unusable(f"a {len(text)}-digit number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Duplicate(key)
        obj[key] = value
    return obj


class _Duplicate(ValueError):
    pass


def _show(value: Any) -> str:
    """A value the way it is written in JSON: ``"abc"``, ``true``, ``null``, ``12.5``, ``3``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def validate_line(text: str) -> RequestRecord | MetricSample:
    """One data line, or :class:`ReplayDataError` (without a file or line) saying what is wrong."""
    return _parse_line(text, "", 0)


def _parse_line(text: str, source: str, number: int) -> RequestRecord | MetricSample:
    def fail(message: str, field_: str | None = None, hint: str | None = None) -> ReplayDataError:
        return ReplayDataError(message, file=source, line=number, field=field_, hint=hint)

    try:
        obj = json.loads(
            text, parse_constant=_Unusable, parse_int=_parse_int, object_pairs_hook=_no_duplicates
        )
    except _Duplicate as err:
        raise fail("the field appears twice in the line", str(err), "keep one") from None
    except json.JSONDecodeError as err:
        raise fail(f"not valid JSON: {err.msg} (column {err.colno})", hint=FORMAT_HINT) from None
    except RecursionError:
        raise fail("not valid data: nested too deeply", hint=FORMAT_HINT) from None
    if not isinstance(obj, dict):
        raise fail(f"expected a JSON object, got {_kind_of(obj)}", hint=FORMAT_HINT)
    is_sample = "metric" in obj or ("value" in obj and "latency_ms" not in obj)
    known = SAMPLE_FIELDS if is_sample else REQUEST_FIELDS
    other = REQUEST_FIELDS if is_sample else SAMPLE_FIELDS
    what = "a metric sample" if is_sample else "a request record"
    for key in obj:
        if key in known:
            continue
        if key in other:
            raise fail(
                f"a line is a request record or a metric sample, not both: '{key}' does not "
                f"belong in {what}",
                key,
                "request records have t, version, latency_ms, status; "
                "metric samples have t, version, metric, value",
            )
        guess = closest(key, known)
        hint = f"did you mean '{guess}'?" if guess else f"{what} has " + ", ".join(known)
        raise fail(f"unknown field in {what}", key, hint)
    for key in known:
        if key not in obj:
            raise fail(f"missing in {what}", key, f"{what} has " + ", ".join(known))
    t = _number(obj["t"], "t", fail, minimum=0.0, hint=T_HINT)
    version = obj["version"]
    if version not in VERSIONS:
        guess = closest(version, VERSIONS) if isinstance(version, str) else None
        raise fail(
            f"expected one of stable, baseline, canary, got {_show(version)}",
            "version",
            f"did you mean '{guess}'?"
            if guess
            else "baseline and stable both name the side the canary is compared with",
        )
    if is_sample:
        metric = obj["metric"]
        if not isinstance(metric, str) or not metric.strip():
            raise fail(
                f"expected the metric's name, got {_show(metric)}",
                "metric",
                "the name of the AnalysisTemplate metric this value is for",
            )
        value = _number(obj["value"], "value", fail, hint="the metric's value at t: 0.42")
        return MetricSample(t, version, metric, value, number)
    latency = _number(
        obj["latency_ms"], "latency_ms", fail, minimum=0.0, hint="milliseconds, such as 31.2"
    )
    status = obj["status"]
    if isinstance(status, float) and status.is_integer():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int):
        raise fail(f"expected an integer, got {_show(status)}", "status", "an HTTP status: 200")
    if not 100 <= status <= 599:
        raise fail(
            f"expected an HTTP status from 100 to 599, got {status}", "status", "such as 200"
        )
    return RequestRecord(t, version, latency, status, number)


def _number(
    value: Any,
    name: str,
    fail: Callable[..., ReplayDataError],
    minimum: float | None = None,
    hint: str | None = None,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = "a finite number" if isinstance(value, _Unusable) else "a number"
        raise fail(f"expected {what}, got {_show(value)}", name, hint)
    number = float(value)
    if not math.isfinite(number):
        raise fail(f"expected a finite number, got {_show(value)}", name, hint)
    if minimum is not None and number < minimum:
        raise fail(f"expected a number of at least {minimum:g}, got {_show(value)}", name, hint)
    return number


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


# --------------------------------------------------------------------------- templates


def parse_args(pairs: Sequence[str]) -> tuple[Arg, ...]:
    """``["window=2m", "service=shop"]`` -> Args; a pair without ``=`` is an error."""
    out: list[Arg] = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ReplayError(
                f"expected name=value, got {pair!r}", field="--args", hint="e.g. --args window=2m"
            )
        out.append(Arg(name.strip(), value))
    return tuple(out)


def select_analysis(bundle: Bundle, names: Sequence[str], args: Sequence[Arg] = ()) -> Analysis:
    """The analysis to replay: the named templates (namespaced first, then cluster-scoped), or the
    only template of the bundle. Unknown names and args are errors with a did-you-mean."""
    every = [*bundle.templates, *bundle.cluster_templates]
    if not names:
        if len(every) != 1:
            found = ", ".join(sorted(every)) or "none"
            raise ReplayError(
                f"the template files define {len(every)} analysis templates ({found})",
                field="--name",
                hint="choose with --name TEMPLATE (repeat it to replay several together)"
                if every
                else "pass files that hold an AnalysisTemplate",
            )
        names = every
    refs: list[TemplateRef] = []
    for name in names:
        if name in bundle.templates:
            refs.append(TemplateRef(name))
        elif name in bundle.cluster_templates:
            refs.append(TemplateRef(name, cluster_scope=True))
        else:
            guess = closest(name, every)
            raise ReplayError(
                f"no analysis template named '{name}' in the template files",
                field="--name",
                hint=f"did you mean '{guess}'?" if guess else "known: " + ", ".join(sorted(every)),
            )
    declared: set[str] = set()
    for ref in refs:
        pool = bundle.cluster_templates if ref.cluster_scope else bundle.templates
        declared.update(a.name for a in pool[ref.template_name].args)
    for arg in args:
        if arg.name not in declared:
            guess = closest(arg.name, declared)
            known = ", ".join(sorted(declared)) or "none"
            raise ReplayError(
                f"arg '{arg.name}' is not declared by the templates",
                field="--args",
                hint=f"did you mean '{guess}'?" if guess else f"declared args: {known}",
            )
    return Analysis(templates=tuple(refs), args=tuple(args))


def resolve_metrics(
    bundle: Bundle, names: Sequence[str] = (), args: Sequence[Arg] = ()
) -> tuple[tuple[Metric, ...], dict[str, str]]:
    """The metrics to replay, with args substituted as for a live run, and the resolved args."""
    from coalmine.spec.resolve import resolve_analysis, resolve_args

    analysis = select_analysis(bundle, names, args)
    return resolve_analysis(bundle, analysis), resolve_args(bundle, analysis)


# --------------------------------------------------------------------------- simulated clock


class SimulatedClock:
    """The replay's time: moves only forward, only when the driver says so. Callable, so that it
    can be a :class:`MeasurementWindow`'s ``now``."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"the simulated clock cannot go back from {self._now} to {t}")
        self._now = t


# --------------------------------------------------------------------------- replay providers


class ReplayRouter:
    """A ``TrafficRouter`` over recorded requests: a live-configured :class:`MeasurementWindow`
    that, whenever it is asked, has been given every request with ``t <= now``, in time order,
    exactly as the live router's proxy would have recorded them."""

    def __init__(self, data: ReplayData, clock: SimulatedClock) -> None:
        self.window = MeasurementWindow(now=clock)  # live retention and sample cap
        self.clock = clock
        self._requests = data.requests
        self._fed = 0

    def catch_up(self) -> None:
        now = self.clock.now()
        while self._fed < len(self._requests) and self._requests[self._fed].t <= now:
            r = self._requests[self._fed]
            self.window.record(r.side, r.t, r.latency_ms, r.status)
            self._fed += 1

    async def stats(self, window_s: float, quantiles: tuple[float, ...] = (0.5, 0.99)) -> Stats:
        self.catch_up()
        return self.window.stats(window_s, quantiles)

    async def records(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        self.catch_up()
        return self.window.records(since, limit)

    async def set_routing(self, routing: Routing) -> Routing:
        return routing  # a replay has no traffic to steer

    async def get_routing(self) -> Routing:
        return Routing()


class SampleReplay:
    """Replays a metric from its recorded samples: ``result`` is the latest sample at or before
    the look; ``{canary, stable}`` when the data has samples of both sides for the metric."""

    def __init__(self, data: ReplayData, clock: SimulatedClock) -> None:
        self.clock = clock
        self._by_metric: dict[str, list[MetricSample]] = {}
        for sample in data.samples:
            self._by_metric.setdefault(sample.metric, []).append(sample)

    def has(self, metric_name: str) -> bool:
        return metric_name in self._by_metric

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult:
        samples = self._by_metric.get(metric.name, [])
        sides = sorted({s.side for s in samples})
        latest: dict[str, MetricSample] = {}
        for sample in samples:  # sorted by t: the last one at or before now wins
            if sample.t > context.now:
                break
            latest[sample.side] = sample
        details: dict[str, Any] = {
            "source": "samples",
            **{side: {"t": s.t, "line": s.line, "value": s.value} for side, s in latest.items()},
        }
        missing = [side for side in sides if side not in latest]
        if missing:
            return ProviderResult(
                value=None,
                message=f"no {' or '.join(missing)} sample of '{metric.name}' yet",
                details=details,
            )
        if len(sides) == 1:
            return ProviderResult(value=latest[sides[0]].value, details=details)
        return ProviderResult(
            value={side: latest[side].value for side in ("canary", "stable")}, details=details
        )


class RecordedJudgeData:
    """The ``coalmine/judge`` data source in a backtest: every recorded request and sample
    with ``since < t <= now``, as the live plug-in gets the router's records since the run
    started."""

    def __init__(self, data: ReplayData) -> None:
        from coalmine.analysis.judge import Request, Sample

        def side(version: str) -> str:
            return "canary" if version == "canary" else "baseline"

        self._requests = [
            Request(r.t, side(r.version), r.latency_ms, r.status) for r in data.requests
        ]
        self._samples = [Sample(s.t, side(s.version), s.metric, s.value) for s in data.samples]
        self._request_times = [r.t for r in data.requests]
        self._sample_times = [s.t for s in data.samples]

    async def __call__(self, since: float, now: float) -> Any:
        from coalmine.analysis.judge import JudgeData

        def visible(items: list[Any], times: list[float]) -> tuple[Any, ...]:
            return tuple(items[bisect_right(times, since) : bisect_right(times, now)])

        return JudgeData(
            visible(self._requests, self._request_times),
            visible(self._samples, self._sample_times),
        )


ReplayProviderFactory = Callable[[ReplayData, SimulatedClock], MetricProvider]


def _router_provider(data: ReplayData, clock: SimulatedClock) -> MetricProvider:
    from coalmine.metrics.router import RouterMetrics

    return RouterMetrics(ReplayRouter(data, clock))


def _judge_provider(data: ReplayData, clock: SimulatedClock) -> MetricProvider:
    from coalmine.metrics.judge import JudgeMetrics

    return JudgeMetrics(RecordedJudgeData(data))


# Provider name -> how to build its replay implementation (one per replay, shared by metrics).
REPLAY_PROVIDERS: dict[str, ReplayProviderFactory] = {
    "coalmine/router": _router_provider,
    "coalmine/judge": _judge_provider,
}


def choose_providers(
    metrics: Sequence[Metric],
    data: ReplayData,
    clock: SimulatedClock,
    factories: Mapping[str, ReplayProviderFactory] | None = None,
) -> tuple[dict[str, MetricProvider], list[str]]:
    """Metric name -> the provider that replays it, and notes about samples that go unused.
    Raises :class:`ReplayError` for a metric that needs a live system and has no samples."""
    from coalmine.spec.resolve import check_provider

    factories = REPLAY_PROVIDERS if factories is None else factories
    built: dict[str, MetricProvider] = {}
    samples = SampleReplay(data, clock)
    chosen: dict[str, MetricProvider] = {}
    notes: list[str] = []
    for metric in metrics:
        name = metric.provider_name
        if name in factories:
            check_provider(metric)  # the same config checks as a live run
            if name not in built:
                built[name] = factories[name](data, clock)
            chosen[metric.name] = built[name]
            if samples.has(metric.name):
                notes.append(
                    f"samples named '{metric.name}' are not used: the metric is measured from "
                    f"the request records by {name}"
                )
        elif samples.has(metric.name):
            chosen[metric.name] = samples
        else:
            where = metric.location
            raise ReplayError(
                f"metric '{metric.name}' uses provider '{name}', which needs a live system, and "
                f"the data has no samples named '{metric.name}'",
                file=where.file if where else None,
                line=where.line if where else None,
                hint=f'add its recorded values to the data: {{"t": 60, "version": "canary", '
                f'"metric": "{metric.name}", "value": 0.5}}, or replay without this template',
            )
    names = {m.name for m in metrics}
    unused = sorted({s.metric for s in data.samples} - names)
    if unused and "coalmine/judge" not in {m.provider_name for m in metrics}:
        notes.append("samples of " + ", ".join(repr(u) for u in unused) + " match no metric")
    return chosen, notes


# --------------------------------------------------------------------------- the timeline


@dataclass(frozen=True)
class TimelineEvent:
    """One line of the timeline. ``kind``: ``start``, ``measurement`` (one look of a metric),
    ``metric`` (a metric completed), ``run`` (the run completed or was terminated)."""

    t: float  # data time
    offset: float  # seconds since the run started
    kind: str
    phase: str
    message: str
    metric: str | None = None
    value: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    counted: bool = True  # False: measured in the same look after the run had completed

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "offset_s": round(self.offset, 6),
            "kind": self.kind,
            "metric": self.metric,
            "phase": self.phase,
            "value": self.value,
            "message": self.message,
            "details": self.details,
            "counted": self.counted,
        }


@dataclass(frozen=True)
class ReplayResult:
    run: RunState
    timeline: tuple[TimelineEvent, ...]
    data: ReplayData
    metrics: tuple[Metric, ...]
    args: dict[str, str]
    notes: tuple[str, ...] = ()

    @property
    def decided_at(self) -> float | None:
        """When the run completed (or was terminated), in data time."""
        return self.run.finished_at

    @property
    def decided_by_data_end(self) -> bool:
        return self.run.terminated

    def measurements(self, metric: str | None = None) -> list[TimelineEvent]:
        return [
            e
            for e in self.timeline
            if e.kind == "measurement" and (metric is None or e.metric == metric)
        ]

    def to_dict(self) -> dict[str, Any]:
        decided = self.run.finished_at
        return {
            "data": self.data.summary(),
            "args": dict(sorted(self.args.items())),
            "metrics": [m.name for m in self.metrics],
            "started_at": self.run.started_at,
            "outcome": {
                "phase": self.run.phase.value,
                "message": self.run.message,
                "decided_at": decided,
                "decided_after_s": None if decided is None else decided - self.run.started_at,
                "terminated": self.run.terminated,
            },
            "timeline": [e.to_dict() for e in self.timeline],
            "run": self.run.to_dict(),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- the driver


def replay(
    metrics: Sequence[Metric],
    data: ReplayData,
    *,
    start: float | None = None,
    args: Mapping[str, str] | None = None,
    factories: Mapping[str, ReplayProviderFactory] | None = None,
) -> ReplayResult:
    """Replay ``data`` through an analysis run of ``metrics`` (see the module docstring)."""
    return asyncio.run(replay_async(metrics, data, start=start, args=args, factories=factories))


async def replay_async(
    metrics: Sequence[Metric],
    data: ReplayData,
    *,
    start: float | None = None,
    args: Mapping[str, str] | None = None,
    factories: Mapping[str, ReplayProviderFactory] | None = None,
) -> ReplayResult:
    metrics = tuple(metrics)
    if not metrics:
        raise ReplayError("the templates define no metrics to replay")
    begin = data.start if start is None else start
    if begin > data.end:
        raise ReplayError(
            f"the start {_show(begin)} is after the last data time {_show(data.end)}",
            field="--start",
            hint=f"the data covers t {_show(data.start)} to {_show(data.end)}",
        )
    clock = SimulatedClock(begin)
    providers, notes = choose_providers(metrics, data, clock, factories)
    by_name = {m.name: m for m in metrics}
    run = start_run(RUN_NAME, metrics, begin)
    first = next_due_at(run, metrics)
    timeline = [
        TimelineEvent(
            begin,
            0.0,
            "start",
            run.phase.value,
            f"analysis run started with {len(metrics)} metric(s)"
            + ("" if first is None else f"; first look at +{format_duration(first - begin)}"),
        )
    ]
    timeline.extend(_changes(None, run, begin))
    looks = 0
    while not run.phase.completed:
        due = next_due_at(run, metrics)
        if due is None:
            break
        if due > data.end:
            before = run
            run = terminate(run, metrics, data.end, DATA_ENDED)
            timeline.extend(_changes(before, run, data.end))
            break
        now = max(due, clock.now())
        clock.advance_to(now)
        # Every due metric is measured from the same state, as the controller starts them all
        # in one tick; a measurement that lands after the run completed is ignored by record().
        taken = []
        for name in due_metrics(run, metrics, now):
            metric = by_name[name]
            context = MeasureContext(
                rollout=RUN_NAME,
                service=RUN_NAME,
                now=now,
                args=dict(args or {}),
                time_scale=1.0,
                run_started_at=run.started_at,
                final_look=metric.count is not None and run.metric(name).count + 1 >= metric.count,
            )
            result = await _measure(providers[name], metric, context)
            taken.append((name, measurement_from(metric, result, now, now)))
        decisions: list[TimelineEvent] = []  # shown after the look's measurements
        for name, measurement in taken:
            looks += 1
            if looks > MAX_LOOKS:
                raise ReplayError(
                    f"more than {MAX_LOOKS} measurements: a metric measures without end at "
                    f"one instant (interval 0?)",
                    hint="give every metric an interval above zero or a count",
                )
            before = run
            run = record(run, metrics, name, measurement, now)
            timeline.append(
                TimelineEvent(
                    now,
                    now - begin,
                    "measurement",
                    measurement.phase.value,
                    measurement.message,
                    metric=name,
                    value=measurement.value,
                    details=dict(measurement.details),
                    counted=run is not before,
                )
            )
            decisions.extend(_changes(before, run, now, first_metric=name))
        timeline.extend(decisions)
    return ReplayResult(
        run=run,
        timeline=tuple(timeline),
        data=data,
        metrics=metrics,
        args=dict(args or {}),
        notes=(*data.notes, *notes),
    )


async def _measure(
    provider: MetricProvider, metric: Metric, context: MeasureContext
) -> ProviderResult:
    """As the controller does: an expected failure or a provider bug is an Error measurement."""
    try:
        return await provider.measure(metric, context)
    except CoalmineError as err:
        return ProviderResult(phase=Phase.ERROR, message=err.one_line())
    except Exception as err:
        return ProviderResult(phase=Phase.ERROR, message=f"provider failed: {err!r}")


def _changes(
    before: RunState | None, after: RunState, now: float, first_metric: str | None = None
) -> list[TimelineEvent]:
    """Events for the metrics that completed and for the run, if it completed."""
    if before is after:
        return []
    events: list[TimelineEvent] = []
    old = {m.name: m.phase for m in before.metrics} if before else {}
    order = sorted(after.metrics, key=lambda m: m.name != first_metric)  # stable
    for result in order:
        if result.phase.completed and old.get(result.name) != result.phase:
            events.append(
                TimelineEvent(
                    now,
                    now - after.started_at,
                    "metric",
                    result.phase.value,
                    result.message,
                    metric=result.name,
                )
            )
    if after.phase.completed and (before is None or not before.phase.completed):
        at = after.finished_at if after.finished_at is not None else now
        events.append(
            TimelineEvent(at, at - after.started_at, "run", after.phase.value, after.message)
        )
    return events


# --------------------------------------------------------------------------- text output


def timeline_rows(result: ReplayResult) -> list[tuple[str, str, str, str, str]]:
    """(time from start, metric, phase, value, message) for each event, for a table."""
    rows = []
    for event in result.timeline:
        metric = event.metric or ("(run)" if event.kind in ("run", "start") else "")
        value = format_value(event.value, 40) if event.kind == "measurement" else ""
        if event.kind == "measurement" and not event.counted:
            message = f"(ignored: the run had completed) {event.message}"
        elif event.kind == "metric":  # its last measurement is the row above: say it once
            message = "metric decided: " + event.message.split("; last: ")[0]
        else:
            message = event.message
        rows.append((f"+{format_duration(event.offset)}", metric, event.phase, value, message))
    return rows


def outcome_line(result: ReplayResult) -> str:
    run = result.run
    if run.finished_at is None:
        return f"outcome: {run.phase.value} (undecided): {run.message}"
    after = format_duration(run.finished_at - run.started_at)
    how = "terminated" if run.terminated else "decided"
    return f"outcome: {run.phase.value}, {how} at +{after} (t={run.finished_at:g}): {run.message}"

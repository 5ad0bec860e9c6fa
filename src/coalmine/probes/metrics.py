"""Prometheus metrics of probe results and of the scheduler, for ``/metrics``.

Per target (labels ``flow, environment, location, version``; version ``""`` when unpinned),
from its latest result, with blackbox_exporter's names:

- ``probe_success``, ``probe_duration_seconds`` (the whole flow, retries and ``finally``
  included);
- ``probe_http_status_code``: the final status of the step that failed the flow, else of the
  last journey step that ran (``finally`` clean-up excluded); 0 when it got no response, as in
  blackbox;
- ``probe_http_duration_seconds{phase}``: resolve / connect / tls / processing / transfer summed
  over the final attempt of every step that ran. blackbox sums each phase over the redirects of
  its one request; a flow's steps play the role of those hops. Earlier (retried) attempts and
  the waits between them are in ``probe_duration_seconds`` only.

coalmine's own series: ``coalmine_probe_first_attempt_success`` (what the run would have been
without retries), ``coalmine_probe_last_run_timestamp_seconds`` (stale data is visible),
per step (``step`` label) ``coalmine_probe_step_success`` (skipped: 0),
``coalmine_probe_step_duration_seconds``, ``coalmine_probe_step_http_status_code`` and
``coalmine_probe_step_attempts``; summable counters ``coalmine_probe_runs_total``,
``coalmine_probe_runs_failed_total``, ``coalmine_probe_runs_first_attempt_failed_total`` and
``coalmine_probe_failures_total{step, reason}`` (``step`` ``""`` when the run failed outside a
step, e.g. a whole-run timeout).

Label values come from names in the flow files only, never from captured values.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from coalmine.probes.model import FlowResult, StepResult

if TYPE_CHECKING:
    from coalmine.probes.scheduler import SchedulerStats

LABELS = ["flow", "environment", "location", "version"]
PHASES = ("resolve", "connect", "tls", "processing", "transfer")

Key = tuple[str, str, str, str]


def target_key(result: FlowResult) -> Key:
    return (result.flow, result.environment, result.location, result.version or "")


def status_step(result: FlowResult) -> StepResult | None:
    """The step whose status ``probe_http_status_code`` reports (see the module doc)."""
    ran = [s for s in result.steps if s.attempts and not s.skipped]
    if result.failed_step is not None:
        for step in ran:
            if step.name == result.failed_step:
                return step
    journey = [s for s in ran if not s.is_finally]
    if journey:
        return journey[-1]
    return ran[-1] if ran else None


class ProbeMetricsCollector(Collector):
    """Latest result per target plus run counters; ``observe`` every finished run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[Key, FlowResult] = {}
        self._runs: Counter[Key] = Counter()
        self._failed: Counter[Key] = Counter()
        self._first_failed: Counter[Key] = Counter()
        self._failures: Counter[tuple[str, ...]] = Counter()

    def observe(self, result: FlowResult) -> None:
        key = target_key(result)
        with self._lock:
            latest = self._latest.get(key)
            if latest is None or result.started_at >= latest.started_at:
                self._latest[key] = result
            self._runs[key] += 1
            self._failed[key] += 0 if result.success else 1
            self._first_failed[key] += 0 if result.first_attempt_success else 1
            if not result.success:
                reason = result.reason or "error"
                self._failures[(*key, result.failed_step or "", reason)] += 1

    def describe(self) -> list[Metric]:
        return []  # families depend on the results seen; do not collect at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = dict(self._latest)
            runs, failed = dict(self._runs), dict(self._failed)
            first_failed, failures = dict(self._first_failed), dict(self._failures)
        success = GaugeMetricFamily(
            "probe_success", "Whether the flow's last run succeeded (after retries).", labels=LABELS
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "Duration of the flow's last run.", labels=LABELS
        )
        status = GaugeMetricFamily(
            "probe_http_status_code",
            "Response status of the failed step, else of the last step that ran (0: none).",
            labels=LABELS,
        )
        phases = GaugeMetricFamily(
            "probe_http_duration_seconds",
            "HTTP phases of the last run, summed over the final attempt of each step.",
            labels=[*LABELS, "phase"],
        )
        first = GaugeMetricFamily(
            "coalmine_probe_first_attempt_success",
            "Whether the last run would have succeeded without retries.",
            labels=LABELS,
        )
        last_run = GaugeMetricFamily(
            "coalmine_probe_last_run_timestamp_seconds",
            "When the last run started (epoch seconds).",
            labels=LABELS,
        )
        step_labels = [*LABELS, "step"]
        step_success = GaugeMetricFamily(
            "coalmine_probe_step_success",
            "Whether the step's final attempt passed in the last run (skipped: 0).",
            labels=step_labels,
        )
        step_duration = GaugeMetricFamily(
            "coalmine_probe_step_duration_seconds",
            "Duration of the step's final attempt in the last run.",
            labels=step_labels,
        )
        step_status = GaugeMetricFamily(
            "coalmine_probe_step_http_status_code",
            "Response status of the step's final attempt in the last run (0: none).",
            labels=step_labels,
        )
        step_attempts = GaugeMetricFamily(
            "coalmine_probe_step_attempts",
            "Attempts the step took in the last run (retries + 1; skipped: 0).",
            labels=step_labels,
        )
        for key, result in sorted(latest.items()):
            labels = list(key)
            success.add_metric(labels, 1.0 if result.success else 0.0)
            duration.add_metric(labels, result.duration_s)
            first.add_metric(labels, 1.0 if result.first_attempt_success else 0.0)
            last_run.add_metric(labels, result.started_at)
            chosen = status_step(result)
            final = chosen.final if chosen is not None else None
            status.add_metric(labels, float(final.status or 0) if final else 0.0)
            sums = dict.fromkeys(PHASES, 0.0)
            for step in result.steps:
                attempt = step.final
                if attempt is None or step.skipped:
                    continue
                for phase, seconds in attempt.timing.as_dict().items():
                    sums[phase] += seconds
            for phase in PHASES:
                phases.add_metric([*labels, phase], sums[phase])
            for step in result.steps:
                attempt = step.final
                ran = attempt is not None and not step.skipped
                step_key = [*labels, step.name]
                step_success.add_metric(step_key, 1.0 if ran and step.passed else 0.0)
                step_attempts.add_metric(step_key, float(len(step.attempts)) if ran else 0.0)
                if attempt is not None and ran:
                    step_duration.add_metric(step_key, attempt.duration_s)
                    step_status.add_metric(step_key, float(attempt.status or 0))
        yield from (success, duration, status, phases, first, last_run)
        yield from (step_success, step_duration, step_status, step_attempts)

        runs_total = CounterMetricFamily(
            "coalmine_probe_runs", "Flow runs finished.", labels=LABELS
        )
        failed_total = CounterMetricFamily(
            "coalmine_probe_runs_failed", "Flow runs that failed (after retries).", labels=LABELS
        )
        first_total = CounterMetricFamily(
            "coalmine_probe_runs_first_attempt_failed",
            "Flow runs whose first attempts failed (retries may have saved them).",
            labels=LABELS,
        )
        for key in sorted(runs):
            runs_total.add_metric(list(key), runs[key])
            failed_total.add_metric(list(key), failed.get(key, 0))
            first_total.add_metric(list(key), first_failed.get(key, 0))
        failures_total = CounterMetricFamily(
            "coalmine_probe_failures",
            "Failed flow runs by the step and reason that failed them.",
            labels=[*LABELS, "step", "reason"],
        )
        for fkey in sorted(failures):
            failures_total.add_metric(list(fkey), failures[fkey])
        yield from (runs_total, failed_total, first_total, failures_total)


class SchedulerCollector(Collector):
    """The scheduler's own SLI (on-time starts ÷ scheduled runs), lag and sink failures."""

    def __init__(
        self,
        stats: SchedulerStats,
        sink_failures: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.stats = stats
        self.sink_failures = sink_failures

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from coalmine.probes.scheduler import LAG_BUCKETS

        s = self.stats
        scheduled = CounterMetricFamily(
            "coalmine_probe_scheduler_runs_scheduled",
            "Scheduled runs (slots): started, skipped because the previous run was still "
            "going, skipped late, or missed while serve was down.",
        )
        scheduled.add_metric([], s.scheduled)
        on_time = CounterMetricFamily(
            "coalmine_probe_scheduler_runs_on_time",
            "Scheduled runs that started within the tolerance after their due time.",
        )
        on_time.add_metric([], s.on_time)
        missed = CounterMetricFamily(
            "coalmine_probe_scheduler_runs_missed",
            "Scheduled runs that did not start, by reason (overlap, late, restart).",
            labels=["reason"],
        )
        for reason, count in sorted(s.missed.items()):
            missed.add_metric([reason], count)
        cumulative = []
        for bound, count in zip(LAG_BUCKETS, s.lag_buckets, strict=True):
            cumulative.append((_float_label(bound), float(count)))
        cumulative.append(("+Inf", float(s.lag_count)))
        lag = HistogramMetricFamily(
            "coalmine_probe_scheduler_lag_seconds",
            "How long after its due time (slot + jitter) each run started.",
            buckets=cumulative,
            sum_value=s.lag_sum,
        )
        in_flight = GaugeMetricFamily(
            "coalmine_probe_scheduler_runs_in_flight", "Flow runs going on now."
        )
        in_flight.add_metric([], s.in_flight)
        targets = GaugeMetricFamily(
            "coalmine_probe_scheduler_targets", "Scheduled (flow, environment, location, version)."
        )
        targets.add_metric([], s.targets)
        yield from (scheduled, on_time, missed, lag, in_flight, targets)
        if self.sink_failures is not None:
            sinks = CounterMetricFamily(
                "coalmine_probe_sink_failures",
                "Results a sink could not take (errors, failed or dropped deliveries).",
                labels=["sink"],
            )
            for name, count in sorted(self.sink_failures().items()):
                sinks.add_metric([name], count)
            yield sinks


def _float_label(value: float) -> str:
    return repr(float(value))


def probe_registry(
    collector: ProbeMetricsCollector,
    stats: SchedulerStats | None = None,
    sink_failures: Callable[[], dict[str, int]] | None = None,
) -> CollectorRegistry:
    """A registry of its own (several services can live in one process) for ``/metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if stats is not None:
        registry.register(SchedulerCollector(stats, sink_failures))
    return registry

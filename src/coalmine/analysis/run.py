"""Argo Rollouts' analysis-run semantics as pure functions on immutable state.

Nothing here measures or sleeps: the runner asks :func:`due_metrics` what to measure, turns a
provider's answer into a :class:`Measurement` with :func:`measurement_from`, and feeds it back
with :func:`record`. Time is always passed in. Deviations from Argo (see docs/analysis.md):
a measurement without data is Inconclusive, and a terminated run reports what it measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from coalmine.analysis.expr import ExprError, ExprEvalError, evaluate_condition, format_value
from coalmine.analysis.types import Measurement, MetricResult, Phase, ProviderResult
from coalmine.spec.model import Metric

MAX_MEASUREMENTS = 50  # kept per metric; the counters stay exact
ERROR_RETRY_INTERVAL = 10.0  # Argo's retry delay after an error when the metric has no interval


@dataclass(frozen=True)
class RunState:
    name: str  # e.g. "step-5" or "background"
    started_at: float
    metrics: tuple[MetricResult, ...]  # one per metric, in the metric list's order
    phase: Phase = Phase.RUNNING
    message: str = ""
    terminated: bool = False
    finished_at: float | None = None

    def metric(self, name: str) -> MetricResult:
        for result in self.metrics:
            if result.name == name:
                return result
        raise KeyError(f"run {self.name!r} has no metric {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": self.started_at,
            "metrics": [m.to_dict() for m in self.metrics],
            "phase": self.phase.value,
            "message": self.message,
            "terminated": self.terminated,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            name=data["name"],
            started_at=data["started_at"],
            metrics=tuple(MetricResult.from_dict(m) for m in data["metrics"]),
            phase=Phase(data["phase"]),
            message=data.get("message", ""),
            terminated=data.get("terminated", False),
            finished_at=data.get("finished_at"),
        )


# --------------------------------------------------------------------------- scheduling


def start_run(name: str, metrics: Sequence[Metric], now: float) -> RunState:
    results = tuple(MetricResult(name=m.name, dry_run=m.dry_run) for m in metrics)
    return assess_run(RunState(name=name, started_at=now, metrics=results), metrics, now)


def _spec(metrics: Sequence[Metric], name: str) -> Metric:
    for metric in metrics:
        if metric.name == name:
            return metric
    raise KeyError(f"no metric named {name!r}")


def _due_at(run: RunState, metric: Metric, result: MetricResult) -> float | None:
    if result.phase.completed:
        return None
    if not result.measurements:
        return run.started_at + metric.initial_delay
    interval = metric.interval if metric.interval is not None else ERROR_RETRY_INTERVAL
    return result.measurements[-1].finished_at + interval


def _due_times(run: RunState, metrics: Sequence[Metric]) -> list[tuple[str, float]]:
    if run.phase.completed or run.terminated:
        return []
    times = []
    for result in run.metrics:
        due = _due_at(run, _spec(metrics, result.name), result)
        if due is not None:
            times.append((result.name, due))
    return times


def due_metrics(run: RunState, metrics: Sequence[Metric], now: float) -> list[str]:
    """Names of the metrics to measure now: the first measurement after ``initial_delay``,
    then one ``interval`` after the last measurement finished (10 s when retrying an error
    of a metric without interval)."""
    return [name for name, due in _due_times(run, metrics) if due <= now]


def next_due_at(run: RunState, metrics: Sequence[Metric]) -> float | None:
    """When the next measurement is due, or None when nothing more will be measured."""
    return min((due for _, due in _due_times(run, metrics)), default=None)


# --------------------------------------------------------------------------- one measurement


def measurement_from(
    metric: Metric, result: ProviderResult, started_at: float, finished_at: float
) -> Measurement:
    """Judge a provider's answer: the provider's own phase if it set one, Inconclusive when
    there is no data, otherwise the metric's conditions (Argo's EvaluateResult)."""

    def make(phase: Phase, message: str) -> Measurement:
        return Measurement(phase, started_at, finished_at, result.value, message, result.details)

    if result.phase == Phase.RUNNING:
        # "continue": the provider looked and has not enough evidence either way yet
        return make(Phase.RUNNING, result.message or "continue: not enough evidence yet")
    if result.phase is not None:
        if not result.phase.completed:
            return make(Phase.ERROR, f"provider returned unfinished phase {result.phase}")
        return make(result.phase, result.message)
    if result.value is None:
        return make(
            Phase.INCONCLUSIVE, "no data" + (f": {result.message}" if result.message else "")
        )
    phase, message = _evaluate(metric, result.value)
    return make(phase, message)


def _evaluate(metric: Metric, value: Any) -> tuple[Phase, str]:
    shown = f"result={format_value(value)}"
    success, failure = metric.success_condition, metric.failure_condition
    outcomes: dict[str, bool] = {}
    for condition in (success, failure):
        if condition:
            try:
                outcomes[condition] = evaluate_condition(condition, value)
            except (ExprError, ExprEvalError) as exc:
                return Phase.ERROR, f"cannot evaluate {condition}: {exc} ({shown})"

    def said(condition: str) -> str:
        return f"{condition} is {'true' if outcomes[condition] else 'false'} for {shown}"

    if not success and not failure:
        return Phase.SUCCESSFUL, f"no condition to check; {shown}"
    if success and not failure:
        return (Phase.SUCCESSFUL if outcomes[success] else Phase.FAILED), said(success)
    if failure and not success:
        return (Phase.FAILED if outcomes[failure] else Phase.SUCCESSFUL), said(failure)
    assert success and failure
    if outcomes[failure]:
        return Phase.FAILED, said(failure)
    if outcomes[success]:
        return Phase.SUCCESSFUL, said(success)
    return Phase.INCONCLUSIVE, f"neither {success} nor {failure} is true for {shown}"


# --------------------------------------------------------------------------- metric phase


def _assess_metric(metric: Metric, result: MetricResult) -> tuple[Phase, str]:
    """Argo's assessMetricStatus, with a sentence saying why."""
    if not result.measurements:
        return Phase.PENDING, ""
    if metric.failure_limit >= 0 and result.failed > metric.failure_limit:
        return Phase.FAILED, (
            f"{result.failed} of {result.count} measurements failed "
            f"(failureLimit {metric.failure_limit})"
        )
    limit = metric.consecutive_failure_limit
    if limit is not None and result.consecutive_failed > limit:
        return Phase.FAILED, (
            f"{result.consecutive_failed} measurements in a row failed "
            f"(consecutiveFailureLimit {limit})"
        )
    if result.inconclusive > metric.inconclusive_limit:
        return Phase.INCONCLUSIVE, (
            f"{result.inconclusive} of {result.count} measurements inconclusive "
            f"(inconclusiveLimit {metric.inconclusive_limit})"
        )
    if result.consecutive_error > metric.consecutive_error_limit:
        return Phase.ERROR, (
            f"{result.consecutive_error} consecutive measurement errors "
            f"(consecutiveErrorLimit {metric.consecutive_error_limit})"
        )
    count = metric.effective_count
    if (
        count is not None
        and result.count >= count
        and result.measurements[-1].phase == (Phase.RUNNING)
    ):
        return Phase.INCONCLUSIVE, f"{count} measurements taken and the last one was undecided"
    if count is not None and result.count >= count:
        return Phase.SUCCESSFUL, f"{result.successful} of {result.count} measurements successful"
    of = "" if count is None else f" of {count}"
    return Phase.RUNNING, f"{result.count}{of} measurements taken"


def _with_last(summary: str, result: MetricResult) -> str:
    if not result.measurements or not result.measurements[-1].message:
        return summary
    return f"{summary}; last: {result.measurements[-1].message}"


def record(
    run: RunState, metrics: Sequence[Metric], name: str, measurement: Measurement, now: float
) -> RunState:
    """Add a finished measurement of metric ``name`` and reassess the metric and the run.

    A measurement for a completed run or metric (one that was in flight when it finished) is
    ignored: a completed run never changes.
    """
    if not measurement.phase.completed and measurement.phase != Phase.RUNNING:
        raise ValueError(f"measurement of {name!r} is not finished: {measurement.phase}")
    metric = _spec(metrics, name)
    result = run.metric(name)
    if run.phase.completed or result.phase.completed:
        return run
    counted = measurement.phase != Phase.ERROR
    result = replace(
        result,
        measurements=(*result.measurements, measurement)[-MAX_MEASUREMENTS:],
        count=result.count + counted,
        successful=result.successful + (measurement.phase == Phase.SUCCESSFUL),
        failed=result.failed + (measurement.phase == Phase.FAILED),
        inconclusive=result.inconclusive + (measurement.phase == Phase.INCONCLUSIVE),
        error=result.error + (not counted),
        consecutive_error=0 if counted else result.consecutive_error + 1,
        consecutive_failed=(
            result.consecutive_failed + 1
            if measurement.phase == Phase.FAILED
            else result.consecutive_failed
            if measurement.phase == Phase.ERROR
            else 0
        ),
    )
    phase, summary = _assess_metric(metric, result)
    result = replace(result, phase=phase, message=_with_last(summary, result))
    updated = tuple(result if r.name == name else r for r in run.metrics)
    return assess_run(replace(run, metrics=updated), metrics, now)


# --------------------------------------------------------------------------- run phase


def _stop_metric(result: MetricResult, why: str) -> MetricResult:
    """Finish a metric that is still measuring: Successful only if it measured something and
    at least one measurement succeeded (its counters are within limits, or it would have
    completed already); otherwise Inconclusive."""
    if result.phase.completed:
        return result
    if not result.measurements:
        return replace(result, phase=Phase.INCONCLUSIVE, message=f"{why} before any measurement")
    if result.successful == 0:
        message = _with_last(f"{why} before any successful measurement", result)
        return replace(result, phase=Phase.INCONCLUSIVE, message=message)
    summary = f"{why} after {result.successful} of {result.count} measurements successful"
    return replace(result, phase=Phase.SUCCESSFUL, message=_with_last(summary, result))


_VERB = {
    Phase.FAILED: "failed",
    Phase.ERROR: "errored",
    Phase.INCONCLUSIVE: "was inconclusive",
    Phase.SUCCESSFUL: "succeeded",
}


def _decide(results: Sequence[MetricResult]) -> tuple[Phase, str]:
    """The run's phase from its metrics' phases, worst first, with the sentence why.

    Dry-run metrics never decide, but (as in Argo) the run waits for them to complete."""
    if not results:
        return Phase.SUCCESSFUL, "no metrics to measure"
    acting = [r for r in results if not r.dry_run]
    for phase in (Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE):
        for r in acting:
            if r.phase == phase:
                return phase, f"metric {r.name!r} {_VERB[phase]}: {r.message}"
    if all(r.phase.completed for r in results):
        if not acting:
            return Phase.SUCCESSFUL, "only dry-run metrics, all completed"
        names = ", ".join(repr(r.name) for r in acting)
        return Phase.SUCCESSFUL, f"all metrics successful ({names})"
    waiting = sum(not r.phase.completed for r in results)
    return Phase.RUNNING, f"{waiting} of {len(results)} metrics still measuring"


def _dry_run_notes(results: Sequence[MetricResult]) -> str:
    notes = [
        f"; dry-run metric {r.name!r} {_VERB[r.phase]} (not acted upon): {r.message}"
        for r in results
        if r.dry_run and r.phase.completed and r.phase != Phase.SUCCESSFUL
    ]
    return "".join(notes)


def assess_run(run: RunState, metrics: Sequence[Metric], now: float | None = None) -> RunState:
    """Recompute the phase and message of a running run from its metrics' phases.

    A completed run is returned unchanged. When the run completes, metrics still measuring
    are stopped (as by :func:`terminate`) and ``finished_at`` is set to ``now`` (default: the
    end of the latest measurement).
    """
    del metrics  # the metric phases already reflect the limits; kept for a uniform signature
    if run.phase.completed:
        return run
    phase, message = _decide(run.metrics)
    if not phase.completed:
        return replace(run, phase=phase, message=message)
    stopped = tuple(_stop_metric(r, f"stopped as the run {_VERB[phase]}") for r in run.metrics)
    if now is None:
        ends = [m.finished_at for r in run.metrics for m in r.measurements]
        now = max([run.started_at, *ends])
    return replace(
        run,
        metrics=stopped,
        phase=phase,
        message=message + _dry_run_notes(stopped),
        finished_at=now,
    )


def terminate(run: RunState, metrics: Sequence[Metric], now: float, reason: str) -> RunState:
    """Stop measuring (the step ended, the rollout was promoted or aborted).

    Unlike Argo, which calls every unfinished metric Successful, each metric still measuring
    becomes Successful only if it has a successful measurement and stayed within its limits,
    and Inconclusive otherwise ("terminated before any measurement").
    """
    if run.phase.completed:
        return run
    stopped = tuple(_stop_metric(r, "terminated") for r in run.metrics)
    phase, message = _decide(stopped)
    return replace(
        run,
        metrics=stopped,
        phase=phase,
        message=f"terminated ({reason}): {message}{_dry_run_notes(stopped)}",
        terminated=True,
        finished_at=now,
    )

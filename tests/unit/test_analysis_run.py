"""Argo Rollouts' analysis semantics on a simulated clock, and coalmine's deliberate changes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from coalmine.analysis.run import (
    MAX_MEASUREMENTS,
    RunState,
    assess_run,
    due_metrics,
    measurement_from,
    next_due_at,
    record,
    start_run,
    terminate,
)
from coalmine.analysis.types import Measurement, MetricResult, Phase, ProviderResult
from coalmine.spec.model import Metric

T0 = 1_700_000_000.0
TOOK = 2.0  # how long each simulated measurement takes
ERR = ProviderResult(phase=Phase.ERROR, message="connection refused")


def metric(name: str = "m", **kw: Any) -> Metric:
    kw.setdefault("success_condition", "result < 1")
    return Metric(name=name, provider={"prometheus": {}}, **kw)


def measure(m: Metric, value: Any, at: float) -> Measurement:
    result = value if isinstance(value, ProviderResult) else ProviderResult(value)
    return measurement_from(m, result, at, at + TOOK)


class Sim:
    """Measures whatever is due, in time order, from a scripted list of values per metric."""

    def __init__(self, metrics: Sequence[Metric], values: dict[str, Iterable[Any]]) -> None:
        self.metrics = list(metrics)
        self.values = {name: iter(v) for name, v in values.items()}
        self.run = start_run("step-1", self.metrics, T0)
        self.log: list[tuple[str, float, Phase]] = []  # (metric, start offset, run phase after)

    def step(self) -> bool:
        """Take the next due measurement(s); False when nothing more will be measured."""
        at = next_due_at(self.run, self.metrics)
        if at is None:
            return False
        assert due_metrics(self.run, self.metrics, at - 0.001) == []
        for name in due_metrics(self.run, self.metrics, at):
            spec = next(m for m in self.metrics if m.name == name)
            value = next(self.values[name])
            self.run = record(self.run, self.metrics, name, measure(spec, value, at), at + TOOK)
            self.log.append((name, at - T0, self.run.phase))
        return True

    def until_done(self, limit: int = 1000) -> RunState:
        for _ in range(limit):
            if not self.step():
                break
        return self.run


# --------------------------------------------------------------------------- scheduling


def test_count_three_all_pass_at_the_right_times() -> None:
    m = metric(interval=60, count=3, initial_delay=30)
    sim = Sim([m], {"m": [0.1, 0.2, 0.3]})
    assert sim.run.phase == Phase.RUNNING
    assert sim.run.metric("m").phase == Phase.PENDING
    assert due_metrics(sim.run, [m], T0 + 29.9) == []
    assert due_metrics(sim.run, [m], T0 + 30) == ["m"]
    run = sim.until_done()
    # first after the initial delay, then one interval after the previous one finished
    assert [t for _, t, _ in sim.log] == [30, 30 + TOOK + 60, 30 + 2 * (TOOK + 60)]
    assert [p for *_, p in sim.log] == [Phase.RUNNING, Phase.RUNNING, Phase.SUCCESSFUL]
    assert run.phase == Phase.SUCCESSFUL
    result = run.metric("m")
    assert (result.phase, result.count, result.successful) == (Phase.SUCCESSFUL, 3, 3)
    assert run.finished_at == T0 + 30 + 2 * (TOOK + 60) + TOOK
    assert due_metrics(run, [m], T0 + 10_000) == []
    assert next_due_at(run, [m]) is None
    assert run.message == "all metrics successful ('m')"


def test_no_interval_no_count_means_one_measurement() -> None:
    m = metric()
    sim = Sim([m], {"m": [0.5]})
    run = sim.until_done()
    assert len(sim.log) == 1
    assert run.phase == Phase.SUCCESSFUL
    assert run.metric("m").count == 1


def test_error_without_interval_is_retried_after_ten_seconds() -> None:
    m = metric()
    sim = Sim([m], {"m": [ERR, 0.5]})
    run = sim.until_done()
    assert [t for _, t, _ in sim.log] == [0, TOOK + 10]
    assert run.phase == Phase.SUCCESSFUL
    assert (run.metric("m").count, run.metric("m").error) == (1, 1)


def test_metrics_are_scheduled_independently() -> None:
    fast = metric("fast", interval=10, count=2)
    slow = metric("slow", interval=100, count=2, initial_delay=5)
    sim = Sim([fast, slow], {"fast": [0.1] * 2, "slow": [0.1] * 2})
    assert next_due_at(sim.run, sim.metrics) == T0
    run = sim.until_done()
    assert [(n, t) for n, t, _ in sim.log] == [
        ("fast", 0),
        ("slow", 5),
        ("fast", 12),
        ("slow", 107),
    ]
    assert run.phase == Phase.SUCCESSFUL


# --------------------------------------------------------------------------- limits


def test_failure_limit_fails_exactly_at_the_limit_plus_one() -> None:
    m = metric("error-rate", interval=10, count=5, failure_limit=1)
    sim = Sim([m], {"error-rate": [5, 0.1, 7, 0.1, 0.1]})
    run = sim.until_done()
    assert [p for *_, p in sim.log] == [Phase.RUNNING, Phase.RUNNING, Phase.FAILED]
    assert run.phase == Phase.FAILED
    result = run.metric("error-rate")
    assert (result.phase, result.count, result.failed) == (Phase.FAILED, 3, 2)
    assert run.message == (
        "metric 'error-rate' failed: 2 of 3 measurements failed (failureLimit 1); "
        "last: result < 1 is false for result=7"
    )
    assert run.finished_at == T0 + 2 * (TOOK + 10) + TOOK
    assert due_metrics(run, [m], T0 + 10_000) == []


def test_default_failure_limit_zero_fails_at_first_failure() -> None:
    run = Sim([metric(interval=10, count=3)], {"m": [3]}).until_done()
    assert run.phase == Phase.FAILED
    assert run.metric("m").count == 1


def test_failure_limit_minus_one_never_fails() -> None:
    m = metric(interval=10, count=5, failure_limit=-1)
    sim = Sim([m], {"m": [9] * 5})
    run = sim.until_done()
    assert len(sim.log) == 5
    assert all(p != Phase.FAILED for *_, p in sim.log)
    assert run.metric("m").failed == 5
    assert run.phase == Phase.SUCCESSFUL


def test_inconclusive_limit() -> None:
    m = metric(
        interval=10,
        count=5,
        success_condition="result < 1",
        failure_condition="result > 2",
        inconclusive_limit=1,
    )
    sim = Sim([m], {"m": [1.5, 0.5, 1.5, 0.5]})
    run = sim.until_done()
    assert [p for *_, p in sim.log] == [Phase.RUNNING] * 2 + [Phase.INCONCLUSIVE]
    assert run.phase == Phase.INCONCLUSIVE
    assert run.metric("m").inconclusive == 2
    assert "2 of 3 measurements inconclusive (inconclusiveLimit 1)" in run.message
    assert "neither result < 1 nor result > 2 is true for result=1.5" in run.message


def test_consecutive_error_limit_and_reset() -> None:
    m = metric(interval=10, count=10, consecutive_error_limit=4)
    # four errors, a success resets the streak, then five errors in a row
    sim = Sim([m], {"m": [ERR] * 4 + [0.1] + [ERR] * 5})
    run = sim.until_done()
    phases = [p for *_, p in sim.log]
    assert phases[:-1] == [Phase.RUNNING] * 9
    assert phases[-1] == Phase.ERROR
    result = run.metric("m")
    assert (result.error, result.consecutive_error, result.count) == (9, 5, 1)
    assert run.phase == Phase.ERROR
    assert run.message.startswith(
        "metric 'm' errored: 5 consecutive measurement errors (consecutiveErrorLimit 4)"
    )
    assert "connection refused" in run.message


def test_errors_do_not_count_towards_count() -> None:
    m = metric(interval=10, count=3)
    sim = Sim([m], {"m": [ERR, 0.1, ERR, 0.1, 0.1]})
    run = sim.until_done()
    assert len(sim.log) == 5
    result = run.metric("m")
    assert (result.phase, result.count, result.error, result.consecutive_error) == (
        Phase.SUCCESSFUL,
        3,
        2,
        0,
    )


def test_no_data_is_inconclusive_never_successful() -> None:
    no_conditions = metric(success_condition=None)
    measurement = measure(no_conditions, None, T0)
    assert measurement.phase == Phase.INCONCLUSIVE
    assert measurement.message == "no data"
    said = measurement_from(no_conditions, ProviderResult(None, message="empty vector"), T0, T0)
    assert said.message == "no data: empty vector"
    run = Sim([no_conditions], {"m": [None]}).until_done()
    assert run.phase == Phase.INCONCLUSIVE
    assert run.metric("m").inconclusive == 1


# --------------------------------------------------------------------------- indefinite runs


def test_indefinite_metric_runs_until_terminated() -> None:
    m = metric(interval=30)  # no count: measure until terminated
    sim = Sim([m], {"m": [0.1] * 200})
    for _ in range(120):
        sim.step()
    run = sim.run
    assert run.phase == Phase.RUNNING
    result = run.metric("m")
    assert result.phase == Phase.RUNNING
    assert result.count == result.successful == 120  # counters stay exact ...
    assert len(result.measurements) == MAX_MEASUREMENTS  # ... while history is trimmed
    assert result.measurements[-1].started_at == T0 + 119 * (30 + TOOK)
    now = T0 + 5000
    done = terminate(run, [m], now, "the rollout is fully promoted")
    assert done.phase == Phase.SUCCESSFUL
    assert done.terminated and done.finished_at == now
    assert done.metric("m").phase == Phase.SUCCESSFUL
    assert done.message.startswith("terminated (the rollout is fully promoted): ")
    assert due_metrics(done, [m], now + 1000) == [] and next_due_at(done, [m]) is None


def test_terminate_before_any_measurement_is_inconclusive() -> None:
    m = metric(interval=60, initial_delay=300)
    run = start_run("background", [m], T0)
    done = terminate(run, [m], T0 + 10, "the rollout was aborted")
    assert done.phase == Phase.INCONCLUSIVE
    assert done.metric("m").phase == Phase.INCONCLUSIVE
    assert done.metric("m").message == "terminated before any measurement"
    assert done.message == (
        "terminated (the rollout was aborted): "
        "metric 'm' was inconclusive: terminated before any measurement"
    )


def test_terminate_reports_what_was_measured() -> None:
    measured = metric("measured", interval=10, count=10, failure_limit=3)
    unlucky = metric(
        "unlucky", interval=10, count=10, failure_condition="result > 2", inconclusive_limit=5
    )
    unlucky = replace(unlucky, success_condition="result < 1")
    sim = Sim([measured, unlucky], {"measured": [0.1, 5, 0.1], "unlucky": [1.5, 1.5, 1.5]})
    for _ in range(3):
        sim.step()
    done = terminate(sim.run, sim.metrics, T0 + 100, "step ended")
    ok = done.metric("measured")
    assert ok.phase == Phase.SUCCESSFUL
    assert ok.message.startswith("terminated after 2 of 3 measurements successful; last: ")
    assert done.metric("unlucky").phase == Phase.INCONCLUSIVE
    assert "before any successful measurement" in done.metric("unlucky").message
    assert done.phase == Phase.INCONCLUSIVE
    assert "'unlucky'" in done.message


def test_completed_runs_do_not_change() -> None:
    m = metric(interval=10, count=3)
    run = Sim([m], {"m": [5]}).until_done()
    assert run.phase == Phase.FAILED
    assert terminate(run, [m], T0 + 999, "late") is run
    late = measure(m, 0.1, T0 + 500)
    assert record(run, [m], "m", late, T0 + 502) is run
    assert assess_run(run, [m]) is run


def test_unfinished_measurement_is_rejected() -> None:
    m = metric()
    run = start_run("r", [m], T0)
    with pytest.raises(ValueError, match="not finished"):
        record(run, [m], "m", Measurement(Phase.PENDING, T0, T0), T0)


def test_a_failing_metric_completes_the_run_and_stops_the_others() -> None:
    bad = metric("bad", interval=10, count=3, initial_delay=5)
    slow = metric("slow", interval=10, count=3)
    sim = Sim([bad, slow], {"bad": [5], "slow": [0.1]})
    run = sim.until_done()
    assert run.phase == Phase.FAILED
    assert run.metric("slow").phase == Phase.SUCCESSFUL  # stopped after measuring well
    assert "stopped as the run failed" in run.metric("slow").message
    assert next_due_at(run, sim.metrics) is None


def test_worst_phase_decides() -> None:
    metrics = [metric("a"), metric("b"), metric("c")]
    run = start_run("r", metrics, T0)
    phases = {"a": Phase.INCONCLUSIVE, "b": Phase.ERROR, "c": Phase.FAILED}
    forced = replace(
        run, metrics=tuple(replace(r, phase=phases[r.name], message="x") for r in run.metrics)
    )
    assessed = assess_run(forced, metrics, T0 + 5)
    assert assessed.phase == Phase.FAILED
    assert assessed.message == "metric 'c' failed: x"
    assert assessed.finished_at == T0 + 5


# --------------------------------------------------------------------------- dry run


def test_dry_run_failure_is_reported_but_never_acts() -> None:
    real = metric("real", interval=10, count=2)
    dry = metric("dry", interval=10, count=2, dry_run=True)
    sim = Sim([real, dry], {"real": [0.1, 0.1], "dry": [5, 5]})
    sim.step()
    assert sim.run.metric("dry").phase == Phase.FAILED
    assert sim.run.phase == Phase.RUNNING
    run = sim.until_done()
    assert run.phase == Phase.SUCCESSFUL
    assert run.metric("dry").phase == Phase.FAILED
    assert run.metric("dry").dry_run
    assert "dry-run metric 'dry' failed (not acted upon)" in run.message


def test_only_dry_run_metrics_succeed_when_complete() -> None:
    dry = metric("dry", interval=10, count=3, failure_limit=1, dry_run=True)
    sim = Sim([dry], {"dry": [5, 5]})
    sim.step()
    assert sim.run.phase == Phase.RUNNING
    run = sim.until_done()
    assert run.phase == Phase.SUCCESSFUL
    assert run.metric("dry").phase == Phase.FAILED


def test_run_waits_for_dry_run_metrics_as_argo_does() -> None:
    real = metric("real")
    dry = metric("dry", interval=10, count=3, dry_run=True)
    sim = Sim([real, dry], {"real": [0.1], "dry": [0.1] * 3})
    sim.step()
    assert sim.run.metric("real").phase == Phase.SUCCESSFUL
    assert sim.run.phase == Phase.RUNNING
    assert sim.until_done().phase == Phase.SUCCESSFUL


def test_no_metrics_is_successful_at_once() -> None:
    run = start_run("empty", [], T0)
    assert run.phase == Phase.SUCCESSFUL
    assert run.finished_at == T0


# --------------------------------------------------------------------------- measurements


@pytest.mark.parametrize(
    ("success", "failure", "value", "phase", "message"),
    [
        (
            "result.canary <= 1.5 * result.stable",
            None,
            {"canary": 0.21, "stable": 0.04},
            Phase.FAILED,
            "result.canary <= 1.5 * result.stable is false for result={canary: 0.21, stable: 0.04}",
        ),
        (
            "result[0] >= 0.95",
            None,
            [0.97],
            Phase.SUCCESSFUL,
            "result[0] >= 0.95 is true for result=[0.97]",
        ),
        (None, "result > 5", 7, Phase.FAILED, "result > 5 is true for result=7"),
        (None, "result > 5", 3, Phase.SUCCESSFUL, "result > 5 is false for result=3"),
        ("result < 1", "result > 5", 0.5, Phase.SUCCESSFUL, "result < 1 is true for result=0.5"),
        ("result < 9", "result > 5", 7, Phase.FAILED, "result > 5 is true for result=7"),
        (
            "result < 1",
            "result > 5",
            3,
            Phase.INCONCLUSIVE,
            "neither result < 1 nor result > 5 is true for result=3",
        ),
        (None, None, "ok", Phase.SUCCESSFUL, 'no condition to check; result="ok"'),
        (
            "result == 'ok'",
            None,
            "ok",
            Phase.SUCCESSFUL,
            "result == 'ok' is true for result=\"ok\"",
        ),
        (
            "result.x > 1",
            None,
            0.5,
            Phase.ERROR,
            'cannot evaluate result.x > 1: cannot fetch "x" from float (result=0.5)',
        ),
        ("result", None, 0.5, Phase.ERROR, "condition must be true or false, got 0.5"),
        ("result >", None, 0.5, Phase.ERROR, "unexpected end of expression at column 9"),
        ("result[0] < 1", "result[1] > 1", [0.5], Phase.ERROR, "index out of range"),
    ],
)
def test_measurement_phase_and_message(
    success: str | None, failure: str | None, value: Any, phase: Phase, message: str
) -> None:
    m = metric(success_condition=success, failure_condition=failure)
    details = {"samples": 12}
    got = measurement_from(m, ProviderResult(value, details=details), T0, T0 + 1)
    assert got.phase == phase
    assert message in got.message
    assert (got.value, got.details, got.started_at, got.finished_at) == (
        value,
        details,
        T0,
        T0 + 1,
    )


def test_provider_phase_wins_over_conditions() -> None:
    m = metric(success_condition="result < 1")
    judged = ProviderResult(5, phase=Phase.SUCCESSFUL, message="canary not worse (p=0.4)")
    got = measurement_from(m, judged, T0, T0)
    assert (got.phase, got.message) == (Phase.SUCCESSFUL, "canary not worse (p=0.4)")
    unfinished = measurement_from(m, ProviderResult(1, phase=Phase.PENDING), T0, T0)
    assert unfinished.phase == Phase.ERROR


# --------------------------------------------------------------------------- persistence


def test_round_trip_through_json() -> None:
    m = metric(interval=10, count=3, failure_condition="result.canary > 1")
    m = replace(m, success_condition=None)
    sim = Sim([m], {"m": [{"canary": 0.5, "stable": None}, ERR]})
    sim.step()
    sim.step()
    for run in (sim.run, terminate(sim.run, [m], T0 + 100, "aborted")):
        data = json.loads(json.dumps(run.to_dict()))
        back = RunState.from_dict(data)
        assert back == run
        assert isinstance(back.metrics[0], MetricResult)
        assert back.metrics[0].measurements[1].phase is Phase.ERROR


def test_metric_lookup() -> None:
    run = start_run("r", [metric("a")], T0)
    assert run.metric("a").name == "a"
    with pytest.raises(KeyError):
        run.metric("b")

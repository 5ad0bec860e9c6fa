"""Two additions to Argo's semantics: a provider may answer "continue" (it looked, the evidence
is not conclusive yet), and consecutiveFailureLimit fails a metric on failures in a row."""

from __future__ import annotations

from coalmine.analysis.run import measurement_from, record, start_run
from coalmine.analysis.types import Measurement, Phase, ProviderResult
from coalmine.spec.loader import load_text
from coalmine.spec.model import Metric

T0 = 1_000.0


def metric(**kw: object) -> Metric:
    base: dict[str, object] = {
        "name": "judge",
        "provider": {"plugin": {"coalmine/judge": {}}},
        "interval": 10.0,
        "count": 3,
    }
    return Metric(**{**base, **kw})  # type: ignore[arg-type]


def look(m: Metric, phase: Phase | None, value: object = 1.0) -> Measurement:
    return measurement_from(m, ProviderResult(value=value, phase=phase, message="m"), T0, T0)


def test_continue_is_a_look_that_neither_passes_nor_fails() -> None:
    m = metric()
    run = start_run("r", [m], T0)
    run = record(run, [m], "judge", look(m, Phase.RUNNING), T0)
    result = run.metric("judge")
    assert result.phase == Phase.RUNNING and result.count == 1
    assert (result.successful, result.failed, result.inconclusive) == (0, 0, 0)
    run = record(run, [m], "judge", look(m, Phase.RUNNING), T0 + 10)
    run = record(run, [m], "judge", look(m, Phase.SUCCESSFUL), T0 + 20)
    assert run.phase == Phase.SUCCESSFUL


def test_the_horizon_reached_on_an_undecided_look_is_inconclusive_not_successful() -> None:
    m = metric(count=2)
    run = start_run("r", [m], T0)
    for t in (T0, T0 + 10):
        run = record(run, [m], "judge", look(m, Phase.RUNNING), t)
    assert run.phase == Phase.INCONCLUSIVE
    assert "undecided" in run.metric("judge").message


def test_consecutive_failure_limit_fails_on_a_streak_only() -> None:
    m = metric(
        count=None, failure_limit=-1, consecutive_failure_limit=1, success_condition="result < 1"
    )
    run = start_run("r", [m], T0)
    for i, value in enumerate([5, 0, 5, 0, 5]):  # failures never two in a row
        run = record(run, [m], "judge", look(m, None, value), T0 + 10 * i)
    assert run.phase == Phase.RUNNING and run.metric("judge").failed == 3
    run = record(run, [m], "judge", look(m, None, 5), T0 + 60)
    assert run.phase == Phase.FAILED
    assert "2 measurements in a row failed (consecutiveFailureLimit 1)" in run.message


def test_consecutive_failure_limit_loads_from_yaml() -> None:
    bundle = load_text(
        """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
    - name: m
      interval: 10s
      consecutiveFailureLimit: 2
      successCondition: result < 1
      provider: {plugin: {coalmine/router: {query: error-rate, version: canary}}}
"""
    )
    assert bundle.templates["t"].metrics[0].consecutive_failure_limit == 2

"""judge(): explanations, JSON, final-look semantics, composite score, critical, no-data."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from coalmine.analysis.judge import (
    JudgeData,
    JudgeMetric,
    JudgeSpec,
    JudgeVerdict,
    MetricVerdict,
    Request,
    Sample,
    judge,
    metric_alpha,
)
from coalmine.analysis.judge.score import composite_score, overall


def traffic(
    seed: int = 0,
    n: int = 8000,
    canary_err: float = 0.01,
    base_err: float = 0.01,
    canary_lat: float = 1.0,
    share: float = 0.2,
    seconds: float = 400.0,
) -> list[Request]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, seconds, n))
    can = rng.random(n) < share
    lat = np.exp(rng.normal(np.log(40), 0.4, n)) * np.where(can, canary_lat, 1.0)
    err = rng.random(n) < np.where(can, canary_err, base_err)
    return [
        Request(float(a), "canary" if c else "baseline", float(x), 503 if e else 200)
        for a, c, x, e in zip(t, can, lat, err, strict=True)
    ]


def gauge(shift: float, seconds: int = 400, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(seconds):
        out.append(Sample(float(t), "baseline", "cpu", 40 + rng.normal(0, 2)))
        out.append(Sample(float(t), "canary", "cpu", 40 + shift + rng.normal(0, 2)))
    return out


ERR = JudgeMetric("errors", "ratio", relative_tolerance=2.0)
P99 = JudgeMetric("p99", "latency", quantile=0.99, relative_tolerance=1.2)
CPU = JudgeMetric("cpu", "gauge", absolute_tolerance=1.0)


def test_failing_ratio_explains_itself_with_numbers() -> None:
    spec = JudgeSpec(metrics=(replace(ERR, critical=True),))
    v = judge(spec, JudgeData(tuple(traffic(canary_err=0.08))))
    m = v.metrics[0]
    assert v.verdict == "fail" and m.verdict == "fail"
    assert m.canary is not None and m.baseline is not None
    assert f"{100 * m.canary:.2f}%" in m.reason
    assert f"{100 * m.baseline:.2f}%" in m.reason
    assert f"n={m.n_canary:,}" in m.reason and f"n={m.n_baseline:,}" in m.reason
    assert "≥ 100" in m.reason and "2× baseline" in m.reason
    assert m.threshold == pytest.approx(1 / spec.alpha)
    assert m.value is not None and m.value >= m.threshold
    assert m.interval is not None and m.interval[0] > 2.0  # rate ratio CS above tolerance
    assert "errors" in v.reason and "fail" in v.reason
    assert v.reason.count(".") <= 1  # one sentence


def test_latency_and_gauge_reasons_contain_numbers() -> None:
    spec = JudgeSpec(metrics=(P99, CPU))
    data = JudgeData(tuple(traffic(canary_lat=2.0)), tuple(gauge(5.0)))
    v = judge(spec, data)
    lat, cpu = v.metrics
    assert lat.verdict == "fail" and cpu.verdict == "fail"
    assert re.search(r"canary p99 latency [\d.]+ ms \(n=[\d,]+\) vs baseline [\d.]+ ms", lat.reason)
    assert "canary mean" in cpu.reason and "paired buckets" in cpu.reason
    assert cpu.interval is not None and cpu.interval[0] > 1.0


def test_json_round_trip() -> None:
    spec = JudgeSpec(metrics=(ERR, P99, CPU, JudgeMetric("idle", "gauge")))
    v = judge(spec, JudgeData(tuple(traffic(canary_err=0.05)), tuple(gauge(0.0))))
    text = json.dumps(v.to_dict(), allow_nan=False)
    back = JudgeVerdict.from_dict(json.loads(text))
    assert back == v


def test_final_look_semantics() -> None:
    spec = JudgeSpec(metrics=(ERR, P99, CPU))
    data = JudgeData(tuple(traffic()), tuple(gauge(0.0)))
    interim = judge(spec, data)
    assert interim.verdict == "continue"
    assert all(m.verdict == "continue" for m in interim.metrics)
    final = judge(spec, data, final_look=True)
    assert final.verdict == "pass" and final.score == 100.0
    assert all(m.verdict == "pass" for m in final.metrics)
    assert all("final look" in m.reason for m in final.metrics)


def test_early_pass_needs_evidence_of_being_within_tolerance() -> None:
    spec = JudgeSpec(metrics=(ERR,), early_pass=True)
    # Canary clearly better than 2x baseline with lots of data -> early pass.
    lots = JudgeData(tuple(traffic(n=60000, canary_err=0.01, base_err=0.01, share=0.5)))
    assert judge(spec, lots).verdict == "pass"
    # Little data: no proof yet -> continue.
    few = JudgeData(tuple(traffic(n=600)))
    assert judge(spec, few).verdict == "continue"
    # Without early_pass, never pass before the final look.
    assert judge(replace(spec, early_pass=False), lots).verdict == "continue"


def test_the_statistic_only_grows_with_data_prefixes() -> None:
    # The running maximum is what decides: a fail at some look stays a fail at later looks.
    reqs = traffic(canary_err=0.05)
    spec = JudgeSpec(metrics=(ERR,))
    values = []
    for cut in (2000, 4000, 6000, 8000):
        m = judge(spec, JudgeData(tuple(reqs[:cut]))).metrics[0]
        values.append(m.value)
    assert values == sorted(values)


def test_bonferroni_split_over_non_dry_metrics() -> None:
    spec = JudgeSpec(
        metrics=(ERR, P99, replace(CPU, dry_run=True)),
        alpha=0.02,
    )
    assert metric_alpha(spec) == pytest.approx(0.01)
    v = judge(spec, JudgeData(tuple(traffic()), tuple(gauge(0.0))))
    assert v.metrics[0].threshold == pytest.approx(100.0)


def test_alpha_weights_split_the_budget_unequally() -> None:
    err = replace(ERR, alpha_weight=3.0)
    spec = JudgeSpec(metrics=(err, P99, replace(CPU, dry_run=True)), alpha=0.02)
    assert metric_alpha(spec, err) == pytest.approx(0.015)
    assert metric_alpha(spec, P99) == pytest.approx(0.005)
    assert metric_alpha(spec) == pytest.approx(0.005)  # a weight-1 metric
    v = judge(spec, JudgeData(tuple(traffic()), tuple(gauge(0.0))))
    assert [m.alpha for m in v.metrics[:2]] == pytest.approx([0.015, 0.005])
    assert v.metrics[0].threshold == pytest.approx(1 / 0.015)
    with pytest.raises(ValueError, match="alpha_weight"):
        JudgeMetric("x", "ratio", alpha_weight=0.0)


def test_dry_run_metric_never_fails_the_run() -> None:
    spec = JudgeSpec(metrics=(ERR, replace(CPU, dry_run=True, critical=True)))
    v = judge(spec, JudgeData(tuple(traffic()), tuple(gauge(10.0))))
    assert v.metrics[1].verdict == "fail"
    assert v.verdict == "continue"


def _mv(
    name: str,
    verdict: str,
    *,
    critical: bool = False,
    group: str = "default",
    weight: float = 1.0,
    policy: str = "inconclusive",
) -> MetricVerdict:
    return MetricVerdict(
        name=name,
        verdict=verdict,
        critical=critical,
        group=group,  # type: ignore[arg-type]
        canary=None,
        baseline=None,
        n_canary=0,
        n_baseline=0,
        statistic="s",
        value=None,
        threshold=None,
        interval=None,
        reason="r",
        weight=weight,
        no_data_policy=policy,
    )


SPEC4 = JudgeSpec(metrics=tuple(JudgeMetric(n, "ratio") for n in "abcd"))


def test_composite_thresholds_at_the_final_look() -> None:
    all_pass = tuple(_mv(n, "pass") for n in "abcd")
    assert overall(SPEC4, all_pass, True).verdict == "pass"
    one_fail = (_mv("a", "fail"), *all_pass[1:])
    v = overall(SPEC4, one_fail, True)
    assert v.score == 75.0 and v.verdict == "marginal" and "a" in v.reason and "75" in v.reason
    two_fail = (_mv("a", "fail"), _mv("b", "fail"), *all_pass[2:])
    v = overall(SPEC4, two_fail, True)
    assert v.score == 50.0 and v.verdict == "fail"
    lenient = replace(SPEC4, pass_score=70.0)
    assert overall(lenient, one_fail, True).verdict == "pass"


def test_group_weights() -> None:
    vs = (_mv("a", "fail", group="lat"), _mv("b", "pass", group="err", weight=3.0))
    assert composite_score(SPEC4, vs, True) == pytest.approx(75.0)  # default: metric weights
    spec = replace(SPEC4, group_weights={"lat": 1.0, "err": 1.0})
    assert composite_score(spec, vs, True) == pytest.approx(50.0)


def test_interim_composite() -> None:
    cont = tuple(_mv(n, "continue") for n in "abcd")
    v = overall(SPEC4, cont, False)
    assert v.verdict == "continue" and v.score == 100.0
    v = overall(SPEC4, (_mv("a", "fail"), *cont[1:]), False)
    assert v.verdict == "continue" and v.score == 75.0  # non-critical failure, score still ok
    v = overall(SPEC4, (_mv("a", "fail"), _mv("b", "fail"), *cont[2:]), False)
    assert v.verdict == "fail" and "a, b" in v.reason


def test_critical_failure_overrides_the_score() -> None:
    vs = (_mv("a", "fail", critical=True), *(_mv(n, "pass") for n in "bcd"))
    for final in (False, True):
        v = overall(SPEC4, vs, final)
        assert v.verdict == "fail" and "critical metric a" in v.reason


def test_no_data_policies_at_the_final_look() -> None:
    passes = tuple(_mv(n, "pass") for n in "bcd")
    v = overall(SPEC4, (_mv("a", "no-data"), *passes), True)
    assert v.verdict == "no-data" and "a" in v.reason
    v = overall(SPEC4, (_mv("a", "no-data", policy="ignore"), *passes), True)
    assert v.verdict == "pass" and v.score == 100.0
    v = overall(SPEC4, (_mv("a", "no-data", policy="fail"), *passes), True)
    assert v.verdict == "marginal" and v.score == 75.0
    assert v.metrics[0].verdict == "fail"
    # A failure decides over inconclusive no-data.
    v = overall(SPEC4, (_mv("a", "no-data"), _mv("b", "fail", critical=True), *passes[1:]), True)
    assert v.verdict == "fail"


def test_no_data_from_real_data_and_min_samples() -> None:
    spec = JudgeSpec(metrics=(replace(ERR, min_samples=500),))
    few = [r for r in traffic(n=3000) if r.version == "baseline"] + [
        r for r in traffic(n=3000) if r.version == "canary"
    ][:100]
    v = judge(spec, JudgeData(tuple(sorted(few, key=lambda r: r.t))), final_look=True)
    assert v.verdict == "no-data"
    assert "only 100 canary" in v.metrics[0].reason and "need 500" in v.metrics[0].reason
    failing = replace(spec, metrics=(replace(ERR, min_samples=500, no_data="fail"),))
    assert judge(failing, JudgeData(tuple(few)), final_look=True).verdict == "fail"
    # No data at all.
    assert judge(spec, JudgeData()).verdict == "no-data"


def test_canary_errors_against_a_clean_baseline_fail_fast() -> None:
    spec = JudgeSpec(metrics=(JudgeMetric("errors", "ratio", critical=True),))
    reqs = traffic(canary_err=0.02, base_err=0.0, n=4000)
    v = judge(spec, JudgeData(tuple(reqs)))
    assert v.verdict == "fail"
    assert "baseline 0.00%" in v.metrics[0].reason


def test_bound_and_absolute_tolerance() -> None:
    reqs = JudgeData(tuple(traffic(canary_err=0.02, base_err=0.01, n=20000)))
    bound_ok = JudgeSpec(metrics=(JudgeMetric("e", "ratio", bound=0.05),))
    bound_bad = JudgeSpec(metrics=(JudgeMetric("e", "ratio", bound=0.005),))
    assert judge(bound_ok, reqs).metrics[0].verdict == "continue"
    assert judge(bound_bad, reqs).metrics[0].verdict == "fail"
    # The absolute test compares the canary with an anytime upper bound of the baseline's
    # rate, so it needs a clearer difference than the share-aware ratio test.
    worse = JudgeData(tuple(traffic(canary_err=0.04, base_err=0.01, n=20000)))
    abs_ok = JudgeSpec(metrics=(JudgeMetric("e", "ratio", absolute_tolerance=0.05),))
    abs_bad = JudgeSpec(metrics=(JudgeMetric("e", "ratio", absolute_tolerance=0.005),))
    assert judge(abs_ok, worse).metrics[0].verdict == "continue"
    assert judge(abs_bad, worse).metrics[0].verdict == "fail"
    assert judge(abs_bad, reqs).metrics[0].verdict == "continue"


def test_judge_is_deterministic_and_order_independent() -> None:
    reqs = traffic(canary_err=0.03)
    spec = JudgeSpec(metrics=(ERR, P99))
    a = judge(spec, JudgeData(tuple(reqs)))
    b = judge(spec, JudgeData(tuple(reversed(reqs))))
    assert a == b


def test_large_input_is_fast() -> None:
    import time

    reqs = tuple(traffic(n=200_000, seconds=1800.0))
    spec = JudgeSpec(
        metrics=(ERR, P99, JudgeMetric("lat", "latency", quantile=None, relative_tolerance=1.2))
    )
    start = time.perf_counter()
    judge(spec, JudgeData(reqs))
    assert time.perf_counter() - start < 1.0

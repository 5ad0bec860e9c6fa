"""The judge's entry point."""

from __future__ import annotations

from .metrics import (
    data_start,
    evaluate_gauge,
    evaluate_latency,
    evaluate_ratio,
    gauge_arrays,
    prepare_requests,
)
from .model import JudgeData, JudgeMetric, JudgeSpec, JudgeVerdict, MetricVerdict
from .score import overall


def metric_alpha(spec: JudgeSpec, metric: JudgeMetric | None = None) -> float:
    """Weighted Bonferroni share of alpha: ``alpha * w / (sum of the non-dry-run metrics' w)``
    with ``w = metric.alpha_weight`` (1 when ``metric`` is None). With the default weights this
    is alpha / (number of non-dry-run metrics). The shares of the non-dry-run metrics sum to
    alpha, so the union bound holds under any dependence between metrics. A dry-run metric is
    evaluated at the share its weight would give it, and spends nothing."""
    total = sum(x.alpha_weight for x in spec.metrics if not x.dry_run)
    w = 1.0 if metric is None else metric.alpha_weight
    return spec.alpha * w / (total if total > 0 else w)


def judge(spec: JudgeSpec, data: JudgeData, final_look: bool = False) -> JudgeVerdict:
    """Judge the canary from all data since the run started.

    Pure and deterministic: the data are processed in time order, so calling this at every
    look with all data so far is a sequential procedure whose probability of a false "fail"
    over the whole run, all metrics and all looks, is at most ``spec.alpha``.
    """
    t0 = data_start(data)
    prep = None
    results: list[MetricVerdict] = []
    for metric in spec.metrics:
        alpha_m = metric_alpha(spec, metric)
        if metric.kind == "gauge":
            arrays = gauge_arrays(data, metric.name)
            results.append(evaluate_gauge(metric, arrays, spec, t0, alpha_m, final_look))
            continue
        if prep is None:
            prep = prepare_requests(data, spec, t0)
        if metric.kind == "ratio":
            results.append(evaluate_ratio(metric, prep, alpha_m, final_look, spec.early_pass))
        else:
            results.append(evaluate_latency(metric, prep, alpha_m, final_look, spec.early_pass))
    return overall(spec, tuple(results), final_look)

"""Composite score and overall verdict from the per-metric verdicts.

Score: per group, the weighted share of its metrics that are "ok"; groups are weighted by
``spec.group_weights`` (default: the sum of the group's metric weights); 0-100.

- Interim looks: "pass", "continue" and "no-data" count as ok (passed so far); only "fail"
  counts against. A low interim score therefore means that failed non-critical metrics
  already weigh enough to abort.
- Final look: "pass" is ok, "fail" is not; "no-data" metrics are resolved by their policy
  (``fail`` → a failure, ``ignore`` and ``inconclusive`` → left out of the score; an
  inconclusive one makes the overall verdict "no-data" unless a failure decides it).

Dry-run metrics never count.
"""

from __future__ import annotations

from collections import defaultdict

from .model import JudgeSpec, JudgeVerdict, MetricVerdict, OverallVerdict


def composite_score(
    spec: JudgeSpec, verdicts: tuple[MetricVerdict, ...], final_look: bool
) -> float | None:
    """The 0-100 score, or None when no metric is scored."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for v in verdicts:
        if v.dry_run:
            continue
        if v.verdict == "no-data" and (final_look or v.no_data_policy == "ignore"):
            continue
        ok = v.verdict != "fail" if not final_look else v.verdict == "pass"
        groups[v.group].append((v.weight, 1.0 if ok else 0.0))
    total_w = 0.0
    total = 0.0
    for g, items in groups.items():
        wsum = sum(w for w, _ in items)
        gw = spec.group_weights.get(g, wsum)
        if gw <= 0 or wsum <= 0:
            continue
        total += gw * sum(w * ok for w, ok in items) / wsum
        total_w += gw
    if total_w <= 0:
        return None
    return 100.0 * total / total_w


def _names(vs: list[MetricVerdict]) -> str:
    return ", ".join(v.name for v in vs)


def _score_text(score: float | None) -> str:
    return "no score" if score is None else f"score {score:.0f}"


def overall(spec: JudgeSpec, verdicts: tuple[MetricVerdict, ...], final_look: bool) -> JudgeVerdict:
    """Combine metric verdicts into the judge's verdict (see the module docstring)."""
    live = [v for v in verdicts if not v.dry_run]
    if final_look:
        # Resolve "no-data" by policy.
        resolved: list[MetricVerdict] = []
        for v in verdicts:
            if v.verdict == "no-data" and v.no_data_policy == "fail" and not v.dry_run:
                v = MetricVerdict(
                    **{
                        **v.__dict__,
                        "verdict": "fail",
                        "reason": v.reason.replace(
                            "→ no data", "→ fail (no data at the final look)"
                        ),
                    }
                )
            resolved.append(v)
        verdicts = tuple(resolved)
        live = [v for v in verdicts if not v.dry_run]
    score = composite_score(spec, verdicts, final_look)
    failed = [v for v in live if v.verdict == "fail"]
    critical_failed = [v for v in failed if v.critical]
    st = _score_text(score)
    verdict: OverallVerdict
    if critical_failed:
        verdict = "fail"
        reason = f"critical metric {_names(critical_failed)} failed ({st}) → fail"
        return JudgeVerdict(verdict, score, verdicts, reason)
    if score is not None and score < spec.marginal_score and failed:
        reason = f"{_names(failed)} failed; {st} < marginal {spec.marginal_score:g} → fail"
        return JudgeVerdict("fail", score, verdicts, reason)
    inconclusive = [
        v for v in live if v.verdict == "no-data" and v.no_data_policy == "inconclusive"
    ]
    considered = [v for v in live if not (v.verdict == "no-data" and v.no_data_policy == "ignore")]
    if not final_look:
        if (considered and all(v.verdict == "no-data" for v in considered)) or not live:
            reason = f"no data yet for {_names(considered) or 'any metric'} → no-data"
            return JudgeVerdict("no-data", score, verdicts, reason)
        if spec.early_pass and considered and all(v.verdict == "pass" for v in considered):
            reason = f"every metric shown within tolerance ({st}) → early pass"
            return JudgeVerdict("pass", score, verdicts, reason)
        pending = [v for v in considered if v.verdict != "pass"]
        extra = f"; failed so far: {_names(failed)}" if failed else ""
        reason = f"waiting on {_names(pending) or 'nothing'} ({st}{extra}) → continue"
        return JudgeVerdict("continue", score, verdicts, reason)
    if inconclusive:
        reason = f"no data at the final look for {_names(inconclusive)} ({st}) → no-data"
        return JudgeVerdict("no-data", score, verdicts, reason)
    if score is None:
        return JudgeVerdict("no-data", None, verdicts, "no metric could be scored → no-data")
    if score >= spec.pass_score:
        extra = f" despite {_names(failed)} failing" if failed else ""
        reason = f"{st} ≥ pass {spec.pass_score:g}{extra} → pass"
        return JudgeVerdict("pass", score, verdicts, reason)
    reason = (
        f"{_names(failed)} failed; {st} between marginal {spec.marginal_score:g} and pass "
        f"{spec.pass_score:g} → marginal (pause for a human)"
    )
    return JudgeVerdict("marginal", score, verdicts, reason)

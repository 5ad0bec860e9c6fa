"""Agreement with Prometheus: the same 30 days of router request counters go into a real
Prometheus (backfilled with ``promtool tsdb create-blocks-from openmetrics``) and into coalmine's
engine; the burn rates over every window, the budget remaining and the alert states agree.

Prometheus evaluates recording rules only going forward, so the generated rules are checked at a
fixed past instant by querying their expressions with the recorded series they refer to
inlined (the same PromQL the rule group runs, one step at a time). The server also loads the
rule file, which must be healthy.

Counters are sampled every minute on whole minutes and queried on a whole minute, so each
window holds a sample at both ends and Prometheus does not extrapolate: a window's increase is
exactly the requests of its minutes, which is what the engine's buckets hold."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from coalmine.slo.engine import Bucket, SloResult, evaluate
from coalmine.slo.rules import BUDGET_REMAINING, BURN_ALERT, render_rules, rule_input_from_slo
from coalmine.slo.spec import DAY, HOUR, RouterSource, Sli, Slo, Window, default_alerting
from tests.fixtures.prometheus import PrometheusHandle, find_prometheus, launch_prometheus

MINUTE = 60
END = 1_700_006_400  # 2023-11-15T00:00:00Z, a whole hour: the evaluation instant
PERIOD = 30 * DAY
START = END - int(PERIOD)
OBJECTIVE = 99.5
SERVICE = "shop"
SHARE = {"stable": 0.9, "canary": 0.1}


def shop_slo() -> Slo:
    return Slo(
        name="shop-availability",
        service=SERVICE,
        objective=OBJECTIVE,
        sli=Sli("availability", RouterSource()),
        window=Window(rolling_s=PERIOD),
        alerting=default_alerting(PERIOD),
    )


# --------------------------------------------------------------------------- the traffic


@dataclass
class Minute:
    start: int
    requests: dict[str, int]  # per version
    errors: dict[str, int]


def error_rate(t: int, version: str) -> float:
    """Background errors, a bad quiet night 12 days ago, and a canary failing now."""
    hours_ago = (END - t) / HOUR
    if 12 * 24 <= hours_ago < 12 * 24 + 3:  # at night, low traffic: 30% errors for 3h
        return 0.30
    if hours_ago < 6 and version == "canary":  # the last 6 hours: the canary fails 40%
        return 0.40
    return 0.002


def traffic() -> list[Minute]:
    """A month of minutes: 20..280 requests a minute (quiet at midnight UTC), binomial errors."""
    rng = np.random.default_rng(20231115)
    out = []
    for t in range(START, END, MINUTE):
        day_phase = ((t % DAY) / DAY) * 2 * math.pi
        base = 150 + 130 * math.sin(day_phase - math.pi / 2)
        requests, errors = {}, {}
        for version, share in SHARE.items():
            n = int(base * share) + int(rng.integers(0, 4))
            requests[version] = n
            errors[version] = int(rng.binomial(n, error_rate(t, version)))
        out.append(Minute(t, requests, errors))
    return out


def samples(minutes: list[Minute]) -> dict[str, list[tuple[int, int]]]:
    """Cumulative counters per series, a sample at every whole minute from START to END
    inclusive (the counter at t holds the requests of the minutes before t)."""
    out = {}
    for version in SHARE:
        for code in ("2xx", "5xx"):
            labels = f'code_class="{code}",service="{SERVICE}",version="{version}"'
            total, points = 0, [(START, 0)]
            for m in minutes:
                bad = m.errors[version]
                total += bad if code == "5xx" else m.requests[version] - bad
                points.append((m.start + MINUTE, total))
            out[f"coalmine_router_requests_total{{{labels}}}"] = points
    return out


def openmetrics(series: dict[str, list[tuple[int, int]]], lo: int, hi: int) -> str:
    """The samples with ``lo <= t < hi`` as an OpenMetrics file."""
    lines = [
        "# HELP coalmine_router_requests Requests answered.",
        "# TYPE coalmine_router_requests counter",
    ]
    for name, points in series.items():
        lines.extend(f"{name} {v} {t}" for t, v in points if lo <= t < hi)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(series: dict[str, list[tuple[int, int]]], workdir: Path, data: Path) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` re-reads its whole input for every 2h
    block it writes, so the month goes in as 12 files of 60h (block-aligned), two at a time."""
    chunk = 30 * 2 * int(HOUR)
    assert START % (2 * HOUR) == 0 and PERIOD % chunk == 0
    pending = []
    for i, lo in enumerate(range(START, END + 1, chunk)):
        path = workdir / f"series-{i:02d}.om"
        path.write_text(openmetrics(series, lo, min(lo + chunk, END + 1)))
        pending.append(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                        str(path), str(data)])  # fmt: skip
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [
            subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in batch
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out.decode(errors="replace")[-2000:]


def buckets(minutes: list[Minute]) -> list[Bucket]:
    return [
        Bucket(m.start, sum(m.requests.values()) - sum(m.errors.values()), sum(m.requests.values()))
        for m in minutes
    ]


# --------------------------------------------------------------------------- Prometheus


@pytest.fixture(scope="module")
def scenario() -> Iterator[tuple[PrometheusHandle, dict[str, Any], SloResult, list[Minute]]]:
    if find_prometheus() is None or shutil.which("promtool") is None:
        pytest.fail("prometheus or promtool is not installed: run scripts/setup.sh test")
    minutes = traffic()
    slo = shop_slo()
    rules_text = render_rules([rule_input_from_slo(slo)])
    workdir = Path(tempfile.mkdtemp(prefix="coalmine-slo-agreement-"))
    try:
        (workdir / "rules.yml").write_text(rules_text)
        data = workdir / "data"
        backfill(samples(minutes), workdir, data)
        # the backfilled month is in the past: a short retention would delete it at start
        prom = launch_prometheus([], [workdir / "rules.yml"], data_dir=data, retention="3650d")
        try:
            result = evaluate(slo, buckets(minutes), now=END)
            yield prom, yaml.safe_load(rules_text), result, minutes
        finally:
            prom.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_RECORDED = re.compile(r"(coalmine:[a-z_]+:[a-z0-9]+)\{[^}]*\}")


def inline(expr: str, records: dict[str, str]) -> str:
    """Replace every recorded series by the expression that records it."""
    for _ in range(5):
        expr, n = _RECORDED.subn(lambda m: f"({records[m.group(1)]})", expr)
        if n == 0:
            return expr
    raise AssertionError(f"recording rules nest too deep: {expr}")


def at_end(prom: PrometheusHandle, expr: str) -> float | None:
    data = prom.api("query", query=expr, time=str(END))
    result = data["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def close(a: float | None, b: float | None, rel: float = 0.01) -> bool:
    assert a is not None and b is not None
    return abs(a - b) <= rel * max(abs(a), abs(b))


# --------------------------------------------------------------------------- tests


def test_the_backfilled_series_are_what_the_engine_counts(scenario: Any) -> None:
    prom, _, result, minutes = scenario
    total = sum(sum(m.requests.values()) for m in minutes)
    got = at_end(prom, "sum(increase(coalmine_router_requests_total[30d]))")
    assert got is not None and abs(got - total) < 1e-6 * total  # no extrapolation
    assert result.period.total == total


def test_burn_rates_over_every_window_agree_within_1_percent(scenario: Any) -> None:
    prom, doc, result, _ = scenario
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    engine = {w.window_s: w.burn_rate for w in result.windows}
    engine[PERIOD] = result.period.burn_rate
    checked = []
    for name, expr in records.items():
        if ":slo_burn_rate:rate" not in name:
            continue
        suffix = name.rsplit(":rate", 1)[1]
        span = {"m": MINUTE, "h": HOUR, "d": DAY}[suffix[-1]] * int(suffix[:-1])
        ours, theirs = engine[span], at_end(prom, inline(expr, records))
        assert close(ours, theirs), f"{suffix}: engine {ours}, Prometheus {theirs}"
        checked.append((suffix, round(theirs or 0, 3)))
    assert [s for s, _ in checked] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert len({v for _, v in checked}) > 4, checked  # the windows really differ


def test_budget_remaining_agrees_within_1_percent(scenario: Any) -> None:
    prom, doc, result, _ = scenario
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    theirs = at_end(prom, inline(records[BUDGET_REMAINING], records))
    ours = result.budget.remaining
    assert ours is not None and 0.05 < ours < 0.95  # a scenario where the budget matters
    assert close(ours, theirs), (ours, theirs)


def test_alert_states_agree_and_the_scenario_has_both_kinds(scenario: Any) -> None:
    prom, doc, result, _ = scenario
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    alerts = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == BURN_ALERT]
    theirs = {
        f"{a['labels']['severity']}-{a['labels']['long_window']}": at_end(
            prom, inline(a["expr"], records)
        )
        is not None
        for a in alerts
    }
    ours = {r.rule.name: r.state == "firing" for r in result.rules}
    assert ours == theirs
    assert any(ours.values()) and not all(ours.values()), ours


def test_averaging_5m_ratios_would_not_agree(scenario: Any) -> None:
    """Why ratios come from counts: the Sloth/Pyrra way (mean of 5-minute ratios over 30 days)
    is far off on this month, whose bad night had little traffic."""
    _, _, result, minutes = scenario
    ratios = []
    for i in range(0, len(minutes), 5):
        chunk = minutes[i : i + 5]
        total = sum(sum(m.requests.values()) for m in chunk)
        bad = sum(sum(m.errors.values()) for m in chunk)
        ratios.append(bad / total)
    averaged = sum(ratios) / len(ratios) / (1 - OBJECTIVE / 100)
    true = result.period.burn_rate
    assert true is not None and not close(averaged, true, rel=0.05), (averaged, true)


def test_prometheus_loads_the_rules_and_evaluates_them_without_errors(scenario: Any) -> None:
    prom = scenario[0]
    deadline = time.monotonic() + 10
    while True:
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and not [r for r in rules if r["lastEvaluation"].startswith("0001")]:
            break  # every rule has been evaluated at least once
        if time.monotonic() > deadline:
            pytest.fail(f"the rules were never all evaluated: {rules}")
        time.sleep(0.2)
    assert len(rules) == 21
    assert {r["health"] for r in rules} == {"ok"}, [r.get("lastError") for r in rules]

"""The generated rules in the real promtool: ``check rules`` accepts them and ``test rules`` runs
them over input series (Prometheus' own rule evaluation, alert by alert).

Series are the router's request counters, one sample a minute; evaluation times are whole
minutes, so every window holds samples at both ends and Prometheus' rates need no
extrapolation: the expected burn rates below are plain arithmetic on the counts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from coalmine.slo.rules import BURN_ALERT, render_rules, rule_input_from_slo
from coalmine.slo.spec import DAY, RouterSource, Sli, Slo, Window, default_alerting

OBJECTIVE = 99.9
SLO_NAME, SERVICE = "shop-availability", "shop"
SELECTOR = 'coalmine_router_requests_total{{service="shop",version="stable",code_class="{}"}}'
MINUTE = 60
RULES = {r.name: r for r in default_alerting(30 * DAY)}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package prometheus): scripts/setup.sh test")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return found


def slo() -> Slo:
    return Slo(
        name=SLO_NAME,
        service=SERVICE,
        objective=OBJECTIVE,
        sli=Sli("availability", RouterSource()),
        window=Window(rolling_s=30 * DAY),
        alerting=default_alerting(30 * DAY),
    )


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "slo-rules.yml"
    path.write_text(render_rules([rule_input_from_slo(slo())]))
    return path


# --------------------------------------------------------------------------- input series


@dataclass
class Traffic:
    """Per-minute requests and errors; cumulative counters are what Prometheus scrapes."""

    per_minute: list[tuple[int, int]]  # (requests, of which 5xx)
    with_5xx_series: bool = True

    def counters(self) -> tuple[list[int], list[int]]:
        ok, bad, total_ok, total_bad = [0], [0], 0, 0
        for requests, errors in self.per_minute:
            total_ok += requests - errors
            total_bad += errors
            ok.append(total_ok)
            bad.append(total_bad)
        return ok, bad

    def burn(self, at_s: int, window_s: float) -> float | None:
        """The burn rate over ``(at - window, at]``, from the counts themselves."""
        ok, bad = self.counters()
        end, start = at_s // MINUTE, max(0, at_s // MINUTE - int(window_s) // MINUTE)
        d_bad = bad[end] - bad[start]
        d_total = d_bad + ok[end] - ok[start]
        if d_total == 0:
            return None
        return d_bad / d_total / (1 - OBJECTIVE / 100)

    def input_series(self) -> list[dict[str, str]]:
        ok, bad = self.counters()
        series = [{"series": SELECTOR.format("2xx"), "values": " ".join(map(str, ok))}]
        if self.with_5xx_series:
            series.append({"series": SELECTOR.format("5xx"), "values": " ".join(map(str, bad))})
        return series


def steady(minutes: int, requests: int, errors: int) -> list[tuple[int, int]]:
    return [(requests, errors)] * minutes


def expected_alert(rule_text: dict[str, Any], traffic: Traffic, at_s: int) -> dict[str, Any]:
    """The alert promtool must produce: the rule's labels, and its annotations with
    ``$value`` (the long window's burn rate) filled in as Go's ``printf "%.3g"`` does."""
    rule = RULES[f"{rule_text['labels']['severity']}-{rule_text['labels']['long_window']}"]
    value = traffic.burn(at_s, rule.long_s)
    assert value is not None
    template = '{{ $value | printf "%.3g" }}'
    annotations = dict(rule_text["annotations"])
    assert template in annotations["description"]
    annotations["description"] = annotations["description"].replace(template, f"{value:.3g}")
    return {"exp_labels": dict(rule_text["labels"]), "exp_annotations": annotations}


def run_promtool_test(
    tmp_path: Path,
    rules_file: Path,
    traffic: Traffic,
    checks: Sequence[tuple[int, set[str]]],
    exprs: Sequence[tuple[int, str, list[dict[str, Any]]]] = (),
) -> subprocess.CompletedProcess[str]:
    """``checks``: (eval time in seconds, names of the rules that must fire, e.g. page-6h)."""
    alerts = [
        r
        for g in yaml.safe_load(rules_file.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == BURN_ALERT
    ]
    by_name = {f"{a['labels']['severity']}-{a['labels']['long_window']}": a for a in alerts}
    assert set(by_name) == set(RULES)
    alert_tests = [
        {
            "eval_time": f"{at // MINUTE}m",
            "alertname": BURN_ALERT,
            "exp_alerts": [expected_alert(by_name[n], traffic, at) for n in sorted(firing)],
        }
        for at, firing in checks
    ]
    expr_tests = [
        {"eval_time": f"{at // MINUTE}m", "expr": expr, "exp_samples": samples}
        for at, expr, samples in exprs
    ]
    doc = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": traffic.input_series(),
                "alert_rule_test": alert_tests,
                "promql_expr_test": expr_tests,
            }
        ],
    }
    test_file = tmp_path / "slo-rules.test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False, width=10_000))
    return subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )


def passed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


LABELS = f'{{slo="{SLO_NAME}",service="{SERVICE}"}}'
H = 3600


# --------------------------------------------------------------------------- tests


def test_promtool_check_rules_accepts_the_file(rules_file: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 8 windows (5m 30m 1h 2h 6h 1d 3d 30d) x (ratio, burn) + budget + 4 alerts
    assert re.search(r"SUCCESS: 21 rules found", result.stdout), result.stdout


def test_one_percent_errors_burn_10x_the_6h_page_fires_the_1h_page_does_not(
    tmp_path: Path, rules_file: Path
) -> None:
    traffic = Traffic(steady(8 * 60, 1000, 10))  # 1% errors against 0.1% allowed
    result = run_promtool_test(
        tmp_path,
        rules_file,
        traffic,
        checks=[(7 * H, {"page-6h", "ticket-1d", "ticket-3d"})],
        exprs=[
            (
                7 * H,
                "round(coalmine:slo_burn_rate:rate1h * 1000) / 1000",
                [{"labels": LABELS, "value": 10}],
            ),
            (
                7 * H,  # occurrences: the budget is 0.1% of the events seen; 1% were bad
                "round(coalmine:slo_error_budget_remaining:ratio * 1e6) / 1e6",
                [{"labels": LABELS, "value": -9}],
            ),
        ],
    )
    passed(result)


def test_two_percent_errors_burn_20x_and_the_1h_page_fires_too(
    tmp_path: Path, rules_file: Path
) -> None:
    traffic = Traffic(steady(3 * 60, 1000, 20))
    result = run_promtool_test(tmp_path, rules_file, traffic, checks=[(2 * H, set(RULES))])
    passed(result)


def test_the_6h_page_waits_for_the_long_window_to_fill_with_errors(
    tmp_path: Path, rules_file: Path
) -> None:
    """Six clean hours, then 1% errors: the 30m window burns at 10 after 30 minutes, but the 6h
    window only passes 6 after 3.6 hours of errors (6 * 6h / 10): the page waits for it."""
    traffic = Traffic(steady(6 * 60, 1000, 0) + steady(5 * 60, 1000, 10))
    early, late = 6 * H + 3 * H + 30 * MINUTE, 6 * H + 3 * H + 45 * MINUTE
    assert traffic.burn(early, 6 * H) < 6 < traffic.burn(late, 6 * H)  # type: ignore[operator]
    result = run_promtool_test(
        tmp_path,
        rules_file,
        traffic,
        checks=[
            (7 * H, {"ticket-3d"}),  # 1d window: 1h of 1% in 7h = 1.4x; 3d: above 1x
            (early, {"ticket-1d", "ticket-3d"}),
            (late, {"page-6h", "ticket-1d", "ticket-3d"}),
        ],
    )
    passed(result)


def test_an_idle_service_has_no_ratio_no_nan_and_no_alert(tmp_path: Path, rules_file: Path) -> None:
    """An hour at 1% errors, then silence: once every short window is silent, nothing fires
    although the 1d and 3d windows still burn at 10, and the silent windows hold no value."""
    traffic = Traffic(steady(60, 1000, 10) + steady(8 * 60, 0, 0))
    at = 7 * H + 30 * MINUTE  # the 6h window starts after the busy hour
    result = run_promtool_test(
        tmp_path,
        rules_file,
        traffic,
        checks=[(3 * H, {"ticket-3d"}), (at, set())],  # at 3h the 6h window still saw errors
        exprs=[
            (at, "coalmine:slo_error_ratio:rate1h", []),  # absent, not NaN
            (at, "coalmine:slo_burn_rate:rate6h", []),
            (at, "round(coalmine:slo_burn_rate:rate1d)", [{"labels": LABELS, "value": 10}]),
        ],
    )
    passed(result)


def test_a_service_that_never_failed_has_ratio_zero_and_its_whole_budget(
    tmp_path: Path, rules_file: Path
) -> None:
    """No 5xx series at all (no error was ever counted): the ratio is 0, not absent."""
    traffic = Traffic(steady(2 * 60, 500, 0), with_5xx_series=False)
    result = run_promtool_test(
        tmp_path,
        rules_file,
        traffic,
        checks=[(H, set())],
        exprs=[
            (H, "coalmine:slo_error_ratio:rate5m + 0", [{"labels": LABELS, "value": 0}]),
            (H, "coalmine:slo_error_budget_remaining:ratio + 0", [{"labels": LABELS, "value": 1}]),
        ],
    )
    passed(result)


def test_promtool_test_does_fail_on_a_wrong_expectation(tmp_path: Path, rules_file: Path) -> None:
    """The harness can fail: claiming the 1h page fires at 1% errors is refused."""
    traffic = Traffic(steady(8 * 60, 1000, 10))
    result = run_promtool_test(
        tmp_path, rules_file, traffic, checks=[(7 * H, {"page-1h", "page-6h", "ticket-1d"})]
    )
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr

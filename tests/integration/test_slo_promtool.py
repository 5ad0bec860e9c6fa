"""The generated rules in the real promtool: ``check rules`` accepts them and ``test rules`` runs
them over input series (Prometheus' own rule evaluation, alert by alert).

Series are the router's request counters, one sample a minute; evaluation times are whole
minutes, so every window holds samples at both ends and Prometheus' rates need no
extrapolation: the expected burn rates below are plain arithmetic on the counts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from coalmine.slo.rules import BURN_ALERT, render_rules, rule_input_from_slo
from coalmine.slo.spec import (
    DAY,
    HOUR,
    AlertRule,
    RouterSource,
    Sli,
    Slo,
    Window,
    default_alerting,
)

OBJECTIVE = 99.9
SLO_NAME, SERVICE = "shop-availability", "shop"
SELECTOR = 'coalmine_router_requests_total{{service={},version="stable",code_class="{}"}}'
MINUTE = 60
RULES = {r.name: r for r in default_alerting(30 * DAY)}
# the generated annotations that Prometheus fills in with the measured burn rates
LONG_RATE, SHORT_RATE = "burn_rate_long", "burn_rate_short"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package prometheus): scripts/setup.sh test")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return found


def slo(name: str = SLO_NAME, service: str = SERVICE, alerting: tuple[AlertRule, ...] = ()) -> Slo:
    return Slo(
        name=name,
        service=service,
        objective=OBJECTIVE,
        sli=Sli("availability", RouterSource()),
        window=Window(rolling_s=30 * DAY),
        alerting=alerting or default_alerting(30 * DAY),
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
    service: str = SERVICE

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
        service = json.dumps(self.service)  # a PromQL string literal
        series = [{"series": SELECTOR.format(service, "2xx"), "values": " ".join(map(str, ok))}]
        if self.with_5xx_series:
            bad_series = SELECTOR.format(service, "5xx")
            series.append({"series": bad_series, "values": " ".join(map(str, bad))})
        return series


def steady(minutes: int, requests: int, errors: int) -> list[tuple[int, int]]:
    return [(requests, errors)] * minutes


def expected_alert(
    rule_text: dict[str, Any], traffic: Traffic, at_s: int, rules: dict[str, AlertRule] = RULES
) -> dict[str, Any]:
    """The alert promtool must produce: the rule's labels (``rule`` names the table's rule),
    and its annotations with the burn rates measured over the long and the short window filled
    in as Go's ``printf`` does (``%.3g`` in the description, ``%.4g`` in their own
    annotations)."""
    rule = rules[literal(rule_text["labels"]["rule"])]
    long_rate, short_rate = traffic.burn(at_s, rule.long_s), traffic.burn(at_s, rule.short_s)
    assert long_rate is not None and short_rate is not None
    template = '{{ $value | printf "%.3g" }}'
    annotations = dict(rule_text["annotations"])
    assert template in annotations["description"]
    annotations["description"] = annotations["description"].replace(template, f"{long_rate:.3g}")
    annotations[LONG_RATE], annotations[SHORT_RATE] = f"{long_rate:.4g}", f"{short_rate:.4g}"
    return {
        "exp_labels": {k: literal(v) for k, v in rule_text["labels"].items()},
        "exp_annotations": {k: literal(v) for k, v in annotations.items()},
    }


def literal(template: str) -> str:
    """What Prometheus expands the generator's escaped ``{`` back to."""
    return template.replace('{{ "{" }}', "{")


def burn_alerts(rules_file: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(rules_file.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == BURN_ALERT]


def run_promtool_test(
    tmp_path: Path,
    rules_file: Path,
    traffic: Traffic,
    checks: Sequence[tuple[int, set[str]]],
    exprs: Sequence[tuple[int, str, list[dict[str, Any]]]] = (),
    rules: dict[str, AlertRule] = RULES,
) -> subprocess.CompletedProcess[str]:
    """``checks``: (eval time in seconds, names of the rules that must fire, e.g. page-6h)."""
    by_name = {literal(a["labels"]["rule"]): a for a in burn_alerts(rules_file)}
    assert set(by_name) == set(rules)
    alert_tests = [
        {
            "eval_time": f"{at // MINUTE}m",
            "alertname": BURN_ALERT,
            "exp_alerts": [expected_alert(by_name[n], traffic, at, rules) for n in sorted(firing)],
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


def test_the_alert_carries_both_measured_burn_rates_and_the_tables_rule_name(
    tmp_path: Path,
) -> None:
    """An hour at 2% errors, then five minutes at 5%: the 1h window burns at 22.5, the 5m one
    at 50; the alert states both, and names the rule as the SLO's table does."""
    fast = AlertRule("page-fast", "page", HOUR, 5 * MINUTE, 14.4)
    rules_file = tmp_path / "slo-rules.yml"
    rules_file.write_text(render_rules([rule_input_from_slo(slo(alerting=(fast,)))]))
    traffic = Traffic(steady(60, 1000, 20) + steady(5, 1000, 50))
    at = 65 * MINUTE
    (rule_text,) = burn_alerts(rules_file)
    expected = expected_alert(rule_text, traffic, at, {"page-fast": fast})
    assert expected["exp_labels"]["rule"] == "page-fast"
    assert expected["exp_annotations"][LONG_RATE] == "22.5"
    assert expected["exp_annotations"][SHORT_RATE] == "50"
    result = run_promtool_test(
        tmp_path, rules_file, traffic, [(at, {"page-fast"})], rules={"page-fast": fast}
    )
    passed(result)


def test_names_with_quotes_backslashes_braces_and_newlines_give_a_file_promtool_accepts(
    tmp_path: Path,
) -> None:
    """Built without the loader, which restricts names: the generator escapes on its own, in
    PromQL selectors and in the alert templates, and Prometheus expands them back verbatim."""
    name, service, rule_name = 'shop "a" \\ {{ $value }} {', 'sh"op\\\n{{ .x }}{', "page {{ x }"
    table = (
        replace(default_alerting(30 * DAY)[0], name=rule_name),
        *default_alerting(30 * DAY)[1:],
    )
    rules_file = tmp_path / "slo-rules.yml"
    rules_file.write_text(render_rules([rule_input_from_slo(slo(name, service, table))]))
    check = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    traffic = Traffic(steady(3 * 60, 1000, 20), service=service)
    rules = {r.name: r for r in table}
    (page, *_) = burn_alerts(rules_file)
    expected = expected_alert(page, traffic, 2 * H, rules)
    labels, annotations = expected["exp_labels"], expected["exp_annotations"]
    assert (labels["slo"], labels["service"], labels["rule"]) == (name, service, rule_name)
    assert annotations["summary"].startswith(f"{name} ({service}) burns")
    passed(run_promtool_test(tmp_path, rules_file, traffic, [(2 * H, set(rules))], rules=rules))

"""Rule generation: the tables, the shape of the rule file and the errors (no promtool here;
tests/integration/test_slo_promtool.py runs the real one)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
import yaml

from coalmine.errors import SpecError
from coalmine.slo.alertmanager import alertmanager_config, render_alertmanager
from coalmine.slo.rules import (
    BURN_ALERT,
    NO_DATA_ALERT,
    BurnRule,
    RuleInput,
    google_table,
    render_rules,
    rule_input_from_slo,
)
from coalmine.slo.spec import (
    DAY,
    HOUR,
    MINUTE,
    AlertRule,
    Budgeting,
    Location,
    ProbeSource,
    PrometheusSource,
    RouterSource,
    Sli,
    Slo,
    Window,
    count_template,
    default_alerting,
)


def router_slo(**changes: Any) -> Slo:
    slo = Slo(
        name="shop-availability",
        service="shop",
        objective=99.9,
        sli=Sli("availability", RouterSource()),
        window=Window(rolling_s=30 * DAY),
        alerting=default_alerting(30 * DAY),
        location=Location("slos.yaml", 3),
    )
    return replace(slo, **changes)


def rules_of(text: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(text)
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.mark.parametrize(
    ("days", "factors"),
    [(30, [14.4, 6, 3, 1]), (28, [13.44, 5.6, 2.8, 0.9333]), (7, [3.36, 1.4, 0.7, 0.2333])],
)
def test_google_tables_spend_the_same_budget_share_whatever_the_window(
    days: int, factors: list[float]
) -> None:
    table = google_table(days * DAY)
    assert [r.factor for r in table] == pytest.approx(factors, rel=1e-3)
    assert [(r.severity, r.long_s, r.short_s) for r in table] == [
        ("page", HOUR, 5 * MINUTE),
        ("page", 6 * HOUR, 30 * MINUTE),
        ("ticket", DAY, 2 * HOUR),
        ("ticket", 3 * DAY, 6 * HOUR),
    ]


def test_every_window_ratio_comes_from_the_raw_counters_never_from_shorter_ratios() -> None:
    rules = rules_of(render_rules([rule_input_from_slo(router_slo())]))
    ratios = {r["record"]: r["expr"] for r in rules if "slo_error_ratio" in r.get("record", "")}
    suffixes = {name.rsplit(":rate", 1)[1] for name in ratios}
    assert suffixes == {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
    for name, expr in ratios.items():
        window = name.rsplit(":rate", 1)[1]
        ranges = set(re.findall(r"\[([0-9a-z]+)\]", expr))
        assert ranges == {window}, expr
        assert "coalmine:" not in expr and "_over_time" not in expr, expr
        assert 'code_class="5xx"' in expr and "coalmine_router_requests_total" in expr
        assert "> 0" in expr and "or vector(0)" in expr  # idle window: no ratio; no 5xx: 0


def test_alerts_carry_windows_factor_and_time_to_exhaustion() -> None:
    rules = rules_of(render_rules([rule_input_from_slo(router_slo())]))
    alerts = [r for r in rules if r.get("alert") == BURN_ALERT]
    assert [
        (a["labels"]["severity"], a["labels"]["long_window"], a["labels"]["short_window"])
        for a in alerts
    ] == [
        ("page", "1h", "5m"),
        ("page", "6h", "30m"),
        ("ticket", "1d", "2h"),
        ("ticket", "3d", "6h"),
    ]
    first = alerts[0]
    assert first["labels"]["slo"] == "shop-availability"
    assert first["labels"]["service"] == "shop"
    assert first["labels"]["burn_rate_factor"] == "14.4"
    assert [a["labels"]["rule"] for a in alerts] == ["page-1h", "page-6h", "ticket-1d", "ticket-3d"]
    assert first["labels"]["time_to_exhaustion"] == "50h"  # 30d / 14.4
    assert "~2.1 days" in first["annotations"]["description"]
    assert "coalmine slo explain shop-availability" in first["annotations"]["runbook"]
    assert first["expr"].count("> 14.4") == 2  # long AND short window
    assert " and " in first["expr"]
    assert [a["labels"]["time_to_exhaustion"] for a in alerts] == ["50h", "5d", "10d", "30d"]


def test_alerts_name_the_tables_rule_and_carry_both_burn_rates_as_annotations() -> None:
    """The rule label is what the engine calls the burn; the rates are annotations (they
    change while the alert fires, labels must not)."""
    fast = AlertRule("page-fast", "page", HOUR, 5 * MINUTE, 14.4)
    (alert,) = [
        r
        for r in rules_of(render_rules([rule_input_from_slo(router_slo(alerting=(fast,)))]))
        if r.get("alert") == BURN_ALERT
    ]
    assert alert["labels"]["rule"] == "page-fast"
    annotations = alert["annotations"]
    assert annotations["burn_rate_long"] == '{{ $value | printf "%.4g" }}'
    short = annotations["burn_rate_short"]
    assert 'printf "coalmine:slo_burn_rate:rate5m{slo=%q, service=%q}"' in short
    assert "$labels.slo $labels.service | query" in short
    assert not {"burn_rate_long", "burn_rate_short"} & set(alert["labels"])


def test_names_never_open_a_template_action_in_alert_labels_or_annotations() -> None:
    text = render_rules([sample_input(slo="a {{ $value }}", service='b"\\{', runbook_url="u{{x")])
    alert = next(r for r in rules_of(text) if r.get("alert") == BURN_ALERT)
    assert alert["labels"]["slo"] == 'a {{ "{" }}{{ "{" }} $value }}'
    assert alert["labels"]["service"] == 'b"\\{{ "{" }}'
    assert alert["annotations"]["summary"].startswith('a {{ "{" }}{{ "{" }} $value }} (b"')
    assert alert["annotations"]["runbook_url"] == 'u{{ "{" }}{{ "{" }}x'
    assert 'slo="a {{ $value }}", service="b\\"\\\\{"' in alert["expr"]  # PromQL literals


def test_budget_remaining_is_one_minus_the_burn_over_the_slo_window() -> None:
    rules = rules_of(render_rules([rule_input_from_slo(router_slo(objective=99.5))]))
    burn_30d = next(r for r in rules if r.get("record") == "coalmine:slo_burn_rate:rate30d")
    assert burn_30d["expr"].endswith("/ 0.005")
    budget = next(r for r in rules if r.get("record", "").endswith("budget_remaining:ratio"))
    assert budget["expr"].startswith("1 - coalmine:slo_burn_rate:rate30d{")


def test_latency_from_the_router_uses_the_histogram_bucket_and_says_what_it_approximates() -> None:
    slo = router_slo(name="shop-latency", sli=Sli("latency", RouterSource(), threshold_ms=250))
    inp = rule_input_from_slo(slo)
    text = render_rules([inp])
    assert 'le="0.25"' in text and "coalmine_router_request_duration_seconds_count" in text
    assert any("5xx" in note for note in inp.notes)
    assert "# NOTE shop-latency:" in text


def test_a_latency_threshold_between_buckets_is_an_error_with_the_buckets_as_hint() -> None:
    slo = router_slo(sli=Sli("latency", RouterSource(), threshold_ms=300))
    with pytest.raises(SpecError) as err:
        rule_input_from_slo(slo)
    assert err.value.field == "sli.threshold" and err.value.file == "slos.yaml"
    assert "250ms" in (err.value.hint or "")


def test_prometheus_sources_keep_their_queries() -> None:
    source = PrometheusSource(
        "http://prom:9090",
        total=count_template('http_requests_total{job="api"}'),
        good=count_template('http_requests_total{job="api",code!~"5.."}'),
    )
    inp = rule_input_from_slo(router_slo(sli=Sli("availability", source)))
    text = render_rules([inp])
    assert 'increase(http_requests_total{job="api",code!~"5.."}[6h])' in text
    assert "clamp(1 - (sum(" in text  # good events: 1 - good/total


@pytest.mark.parametrize(
    ("changes", "fld"),
    [
        ({"sli": Sli("availability", ProbeSource(("login",)))}, "sli.source"),
        ({"budgeting": Budgeting("timeslices", 60.0, 0.9)}, "budgeting"),
    ],
)
def test_what_prometheus_cannot_compute_is_refused_with_a_located_error(
    changes: dict[str, Any], fld: str
) -> None:
    with pytest.raises(SpecError) as err:
        rule_input_from_slo(router_slo(**changes))
    assert err.value.field == fld and err.value.line == 3 and err.value.hint


def test_a_calendar_month_is_approximated_by_30_days_and_the_file_says_so() -> None:
    inp = rule_input_from_slo(router_slo(window=Window(calendar="month", timezone="Europe/Paris")))
    assert inp.window_s == 30 * DAY
    assert "rolling 30d" in render_rules([inp])


def test_missing_data_alert_policy_adds_a_no_data_ticket() -> None:
    rules = rules_of(render_rules([rule_input_from_slo(router_slo(missing_data="alert"))]))
    nodata = [r for r in rules if r.get("alert") == NO_DATA_ALERT]
    assert len(nodata) == 1 and nodata[0]["labels"]["severity"] == "ticket"
    assert "burn_rate_factor" not in nodata[0]["labels"]
    plain = rules_of(render_rules([rule_input_from_slo(router_slo())]))
    assert not [r for r in plain if r.get("alert") == NO_DATA_ALERT]


def sample_input(**changes: Any) -> RuleInput:
    base = RuleInput(
        slo="s",
        service="svc",
        objective=99.0,
        total="sum(rate(t[{{window}}]))",
        bad="sum(rate(b[{{window}}]))",
        window_s=7 * DAY,
        rules=google_table(7 * DAY),
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "fld"),
    [
        ({"objective": 100.0}, "objective"),
        ({"objective": 0.0}, "objective"),
        ({"good": "sum(rate(g[{{window}}]))"}, "sli"),
        ({"total": "sum(rate(t[5m]))"}, "sli.total"),
        ({"rules": (BurnRule("page", 8 * DAY, HOUR, 2.0),)}, "alerting[0].long"),
        ({"rules": (BurnRule("page", HOUR, 2 * HOUR, 2.0),)}, "alerting[0]"),
        ({"rules": (BurnRule("page", HOUR, 300, 0.0),)}, "alerting[0].factor"),
        ({"rules": ()}, "alerting"),
    ],
)
def test_invalid_inputs_are_spec_errors_naming_the_field(changes: dict[str, Any], fld: str) -> None:
    with pytest.raises(SpecError) as err:
        render_rules([sample_input(**changes)])
    assert err.value.field == fld


def test_two_slos_with_one_name_are_refused() -> None:
    with pytest.raises(SpecError, match="two SLOs"):
        render_rules([sample_input(), sample_input()])


def test_label_values_with_quotes_are_escaped_in_selectors() -> None:
    text = render_rules([sample_input(slo='say "hi"')])
    assert 'slo="say \\"hi\\""' in text


# --------------------------------------------------------------------------- alertmanager


def test_alertmanager_routes_pages_and_tickets_and_pages_inhibit_tickets() -> None:
    config = alertmanager_config(
        coalmine_url="http://127.0.0.1:9999/alertmanager/webhook",
        page_webhooks=["https://pager.example/hook"],
    )
    routes = config["route"]["routes"]
    assert config["route"]["group_by"] == ["slo", "service"]
    assert [r["matchers"][0] for r in routes] == ['severity="page"', 'severity="ticket"']
    receivers = {r["name"]: r for r in config["receivers"]}
    page_urls = [w["url"] for w in receivers[routes[0]["receiver"]]["webhook_configs"]]
    assert page_urls == ["http://127.0.0.1:9999/alertmanager/webhook", "https://pager.example/hook"]
    assert all(w["send_resolved"] for w in receivers[routes[0]["receiver"]]["webhook_configs"])
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="page"']
    assert inhibit["target_matchers"] == ['severity="ticket"']
    assert inhibit["equal"] == ["slo", "service"]


def test_a_bad_webhook_url_is_named_by_position_never_echoed() -> None:
    with pytest.raises(SpecError) as err:
        render_alertmanager(page_webhooks=["https://ok.example/x", "ftp://secret-token@host/"])
    assert err.value.field == "page_webhooks[1]"
    assert "secret-token" not in err.value.one_line()


def test_tickets_must_go_somewhere() -> None:
    with pytest.raises(SpecError, match="nowhere"):
        render_alertmanager(tickets_to_coalmine=False)

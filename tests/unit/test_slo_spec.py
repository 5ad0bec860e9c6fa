"""slos.yaml: the example loads, defaults are right, and every bad input names file:line:field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coalmine.errors import SpecError
from coalmine.slo.loader import load_slos
from coalmine.slo.spec import (
    DAY,
    HOUR,
    MINUTE,
    ProbeSource,
    PrometheusSource,
    RouterSource,
    SloSet,
    default_alerting,
    parse_span,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
apiVersion: coalmine.dev/v1
kind: SLOSet
slos:
  - name: api-availability
    service: api
    objective: 99.9
    sli:
      type: availability
      source: router
    window: 30d
"""


def load(tmp_path: Path, text: str) -> SloSet:
    path = tmp_path / "slos.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_slos([path])


def error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert info.value.file == str(tmp_path / "slos.yaml")
    return info.value


def test_the_example_loads() -> None:
    slos = load_slos([ROOT / "examples" / "slos.yaml"])
    assert [s.name for s in slos.slos] == [
        "shop-availability",
        "shop-latency",
        "maestro-api-probes",
        "maestro-api-availability",
    ]
    shop, latency, probes, prom = slos.slos
    assert isinstance(shop.sli.source, RouterSource) and shop.traffic_per_s == 20
    assert [r.factor for r in shop.alerting] == pytest.approx([14.4, 6, 3, 1])
    assert latency.sli.threshold_ms == 250 and latency.window.timezone == "Europe/Berlin"
    assert isinstance(probes.sli.source, ProbeSource)
    # the flows bind themselves (slo: maestro-api-probes); only prod runs count
    assert probes.sli.source.flows == () and probes.sli.source.environment == "prod"
    assert probes.budgeting.method == "timeslices" and probes.missing_data == "bad"
    assert isinstance(prom.sli.source, PrometheusSource)
    assert prom.sli.source.bad_query("5m") == (
        'sum(increase(http_requests_total{job="maestro-api",code=~"5.."}[5m]))'
    )
    assert prom.alerting[0].for_s == 2 * MINUTE
    assert slos.warnings == ()


def test_default_tables_keep_the_share_of_the_budget() -> None:
    assert [r.factor for r in default_alerting(30 * DAY)] == pytest.approx([14.4, 6, 3, 1])
    assert [r.factor for r in default_alerting(28 * DAY)] == pytest.approx(
        [13.44, 5.6, 2.8, 0.93333333]
    )
    assert [r.factor for r in default_alerting(7 * DAY)] == pytest.approx(
        [3.36, 1.4, 0.7, 0.23333333]
    )
    windows = [(r.long_s, r.short_s) for r in default_alerting(30 * DAY)]
    assert windows == [
        (HOUR, 5 * MINUTE),
        (6 * HOUR, 30 * MINUTE),
        (DAY, 2 * HOUR),
        (3 * DAY, 6 * HOUR),
    ]


def test_spans_with_days() -> None:
    assert parse_span("30d") == 30 * DAY and parse_span("1w") == 7 * DAY
    assert parse_span("1d12h") == 36 * HOUR and parse_span("300ms") == 0.3
    with pytest.raises(ValueError):
        parse_span("30x")


def test_a_plain_list_under_slos_is_enough(tmp_path: Path) -> None:
    slos = load(tmp_path, "slos:\n" + GOOD.split("slos:\n", 1)[1])
    assert slos.slos[0].name == "api-availability" and slos.slos[0].objective == 99.9


@pytest.mark.parametrize(
    ("edit", "line", "field", "message", "hint"),
    [
        (("objective: 99.9", "objective: 100"), 6, "slos[0].objective", "strictly between", "99.9"),
        (("objective: 99.9", "objective: 0"), 6, "slos[0].objective", "strictly between", None),
        (("source: router", "source: routr"), 9, "slos[0].sli.source", "unknown value", "router"),
        (
            ("window: 30d", "window: 1d"),
            10,
            "slos[0].window",
            "shorter than the long window 3d",
            None,
        ),
        (("window: 30d", "window: 30x"), 10, "slos[0].window", "expected a duration", "30d"),
        (
            ("objective: 99.9", "objectve: 99.9"),
            6,
            "slos[0].objectve",
            "unknown field",
            "objective",
        ),
        (("type: availability", "type: latency"), 7, "slos[0].sli", "needs a threshold", "300ms"),
        (
            ("source: router", "source: router\n      flows: [x]"),
            10,
            "slos[0].sli.flows",
            "source probe",
            None,
        ),
    ],
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path,
    edit: tuple[str, str],
    line: int,
    field: str,
    message: str,
    hint: str | None,
) -> None:
    err = error(tmp_path, GOOD.replace(*edit))
    assert (err.line, err.field) == (line, field)
    assert message in err.message
    if hint is not None:
        assert err.hint is not None and hint in err.hint
    assert err.one_line().startswith(f"{tmp_path / 'slos.yaml'}:{line}: {field}: ")


def test_unknown_timezone_suggests_the_closest(tmp_path: Path) -> None:
    text = GOOD.replace(
        "window: 30d", "window:\n      calendar: month\n      timezone: Europe/Berln"
    )
    err = error(tmp_path, text)
    assert (err.line, err.field) == (12, "slos[0].window.timezone")
    assert err.hint == "did you mean 'Europe/Berlin'?"


def test_duplicate_names_point_at_the_second(tmp_path: Path) -> None:
    second = GOOD.split("slos:\n", 1)[1]
    err = error(tmp_path, GOOD + second)
    assert err.line == 11 and err.field == "name"
    assert err.hint is not None and ":4" in err.hint


def test_alert_windows_are_whole_buckets(tmp_path: Path) -> None:
    text = GOOD + textwrap.indent(
        textwrap.dedent(
            """\
            alerting:
              - {name: fast, severity: page, long: 1h, short: 90s, factor: 14.4}
            """
        ),
        "    ",
    )
    err = error(tmp_path, text)
    assert (err.line, err.field) == (12, "slos[0].alerting[0].short")
    assert "not a whole number of 1m" in err.message


def test_rules_need_a_short_window_below_the_long_one(tmp_path: Path) -> None:
    text = GOOD + "    alerting:\n      - {severity: page, long: 1h, short: 1h, factor: 14.4}\n"
    err = error(tmp_path, text)
    assert (err.line, err.field) == (12, "slos[0].alerting[0].short")


def test_release_thresholds_must_be_ordered(tmp_path: Path) -> None:
    text = GOOD + "    releasePolicy:\n      normalAbove: 30\n      cautiousAbove: 40\n"
    err = error(tmp_path, text)
    assert (err.line, err.field) == (13, "slos[0].releasePolicy.cautiousAbove")


def test_prometheus_queries_must_count_events(tmp_path: Path) -> None:
    text = GOOD.replace(
        "source: router",
        "source: prometheus\n      address: http://127.0.0.1:9090\n"
        "      good: rate(x[5m])\n      total: requests_total",
    )
    err = error(tmp_path, text)
    assert (err.line, err.field) == (11, "slos[0].sli.good")
    text = text.replace("good: rate(x[5m])", "good: sum(rate(ok_total[{{window}}])) * 60")
    source = load(tmp_path, text).slos[0].sli.source
    assert isinstance(source, PrometheusSource)
    assert source.good_query(3600) == "sum(rate(ok_total[1h])) * 60"
    assert source.total_query(300) == "sum(increase(requests_total[5m]))"


def test_timeslices_need_a_ratio_in_range(tmp_path: Path) -> None:
    text = GOOD + "    budgeting: {method: timeslices, slice: 1m, goodRatio: 1.5}\n"
    err = error(tmp_path, text)
    assert (err.line, err.field) == (11, "slos[0].budgeting.goodRatio")


def test_low_traffic_guard_warns_at_load_time(tmp_path: Path) -> None:
    slos = load(tmp_path, GOOD + "    traffic: 1/m\n")
    messages = [w.one_line() for w in slos.warnings]
    # 60 events an hour: one failure is 1.7% > 1.44% (page-1h); 6h needs 3 (360 x 0.6% = 2.16)
    assert len(messages) == 1
    assert messages[0].startswith(f"{tmp_path / 'slos.yaml'}:4: alerting: ")
    assert "a single failed event would fire page-1h (page)" in messages[0]
    assert not load(tmp_path, GOOD + "    traffic: 10/s\n").warnings


def test_unknown_api_version(tmp_path: Path) -> None:
    err = error(tmp_path, GOOD.replace("coalmine.dev/v1", "coalmine.dev/v2"))
    assert (err.line, err.field) == (1, "apiVersion")


def test_the_published_schema_accepts_the_example_and_rejects_bad_input() -> None:
    import yaml
    from jsonschema import Draft202012Validator

    from coalmine.spec.schema import KINDS, json_schema

    assert "slos" in KINDS
    validator = Draft202012Validator(json_schema("slos"))
    doc = yaml.safe_load((ROOT / "examples" / "slos.yaml").read_text())
    assert list(validator.iter_errors(doc)) == []
    doc["slos"][0]["objective"] = 100
    doc["slos"][0]["sli"]["flows"] = ["x"]  # a probe field on a router SLI
    doc["slos"][1]["missingData"] = "zero"
    assert len(list(validator.iter_errors(doc))) == 3
    del doc["slos"][2]["sli"]["environment"]  # a probe SLI must say whose runs count
    errors = [e.message for e in validator.iter_errors(doc)]
    assert len(errors) == 4 and "'environment' is a required property" in errors

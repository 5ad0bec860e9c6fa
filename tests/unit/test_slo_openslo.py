"""OpenSLO v1 import: what maps becomes a coalmine SLO; the rest is an error naming the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from coalmine.errors import SpecError
from coalmine.slo.loader import load_slos
from coalmine.slo.spec import DAY, HOUR, MINUTE, PrometheusSource, SloSet

DOCS = """\
apiVersion: openslo/v1
kind: DataSource
metadata: {name: prom}
spec:
  type: Prometheus
  connectionDetails: {url: "http://127.0.0.1:9090"}
---
apiVersion: openslo/v1
kind: SLI
metadata: {name: web-ratio}
spec:
  ratioMetric:
    counter: true
    good:
      metricSource:
        metricSourceRef: prom
        spec:
          query: http_requests_total{job="web",code!~"5.."}
    total:
      metricSource:
        metricSourceRef: prom
        spec:
          query: http_requests_total{job="web"}
---
apiVersion: openslo/v1
kind: AlertCondition
metadata: {name: fast-burn}
spec:
  severity: page
  condition: {kind: burnrate, op: gt, threshold: 13.44, lookbackWindow: 1h, alertAfter: 2m}
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata: {name: web-pages}
spec:
  alertWhenBreaching: true
  alertWhenNoData: true
  conditions:
    - conditionRef: fast-burn
    - kind: AlertCondition
      metadata: {name: slow-burn}
      spec:
        severity: ticket
        condition: {kind: burnrate, threshold: 0.9333, lookbackWindow: 3d, alertAfter: 0m}
  notificationTargets:
    - targetRef: oncall
---
apiVersion: openslo/v1
kind: AlertNotificationTarget
metadata: {name: oncall}
spec: {target: pagerduty}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability, displayName: Web availability}
spec:
  description: Web requests that do not fail
  service: web
  indicatorRef: web-ratio
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Good
      target: 0.995
  alertPolicies:
    - web-pages
"""

INLINE = """\
- apiVersion: openslo/v1
  kind: SLO
  metadata: {name: search-slices}
  spec:
    service: search
    indicator:
      metadata: {name: search-errors}
      spec:
        ratioMetric:
          counter: true
          bad:
            metricSource:
              type: Prometheus
              spec: {query: 'search_requests_total{code=~"5.."}', url: "http://prom:9090"}
          total:
            metricSource:
              type: Prometheus
              spec: {query: search_requests_total, url: "http://prom:9090"}
    timeWindow:
      - duration: 1M
        isRolling: false
        calendar: {startTime: "2024-01-01 00:00:00", timeZone: America/New_York}
    budgetingMethod: Timeslices
    objectives:
      - targetPercent: 99
        timeSliceTarget: 0.95
        timeSliceWindow: 5
"""


def load(tmp_path: Path, text: str) -> SloSet:
    path = tmp_path / "openslo.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_slos([path])


def error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert info.value.file == str(tmp_path / "openslo.yaml")
    return info.value


def test_referenced_objects_map_onto_an_slo(tmp_path: Path) -> None:
    (slo,) = load(tmp_path, DOCS).slos
    assert (slo.name, slo.service, slo.origin) == ("web-availability", "web", "openslo")
    assert slo.objective == pytest.approx(99.5)
    assert slo.window.rolling_s == 28 * DAY and slo.budgeting.method == "occurrences"
    assert slo.missing_data == "alert"  # alertWhenNoData
    assert slo.description == "Web requests that do not fail"
    source = slo.sli.source
    assert isinstance(source, PrometheusSource) and source.address == "http://127.0.0.1:9090"
    assert (
        source.good_query("5m") == 'sum(increase(http_requests_total{job="web",code!~"5.."}[5m]))'
    )
    fast, slow = slo.alerting
    assert (fast.name, fast.severity, fast.long_s, fast.short_s) == (
        "fast-burn",
        "page",
        HOUR,
        5 * MINUTE,
    )
    assert fast.factor == 13.44 and fast.for_s == 2 * MINUTE and fast.receivers == ("oncall",)
    assert (slow.long_s, slow.short_s, slow.factor, slow.for_s) == (3 * DAY, 6 * HOUR, 0.9333, 0)
    assert slo.location is not None and slo.location.line == 53  # its apiVersion


def test_inline_calendar_timeslices_and_bad_queries(tmp_path: Path) -> None:
    (slo,) = load(tmp_path, INLINE).slos
    assert slo.window.calendar == "month" and slo.window.timezone == "America/New_York"
    assert slo.budgeting.method == "timeslices"
    assert slo.budgeting.slice_s == 5 * MINUTE  # a bare number is minutes in OpenSLO
    assert slo.budgeting.good_ratio == 0.95 and slo.objective == 99
    assert [r.factor for r in slo.alerting] == pytest.approx([14.4, 6, 3, 1])  # 30d table
    source = slo.sli.source
    assert isinstance(source, PrometheusSource) and source.bad is not None
    assert source.good_query("1m").startswith("(sum(increase(search_requests_total[1m]))) - (")


def test_mixed_with_coalmine_slos_and_names_stay_unique(tmp_path: Path) -> None:
    ours = textwrap.dedent(
        """\
        ---
        slos:
          - name: web-availability
            service: web
            objective: 99
            sli: {type: availability, source: router}
            window: 7d
        """
    )
    err = error(tmp_path, DOCS + ours)
    assert err.message == "duplicate SLO name 'web-availability'"


@pytest.mark.parametrize(
    ("edit", "line", "field", "message"),
    [
        (
            ("budgetingMethod: Occurrences", "budgetingMethod: RatioTimeslices"),
            63,
            "spec.budgetingMethod",
            "cannot import budgetingMethod: 'RatioTimeslices'",
        ),
        (("target: 0.995", "target: 99.5"), 66, "spec.objectives[0].target", "between 0 and 1"),
        (
            ("type: Prometheus\n  connectionDetails", "type: Datadog\n  connectionDetails"),
            5,
            "spec.type",
            "metric source type 'Datadog'",
        ),
        (
            ("alertWhenNoData: true", "alertWhenResolved: true"),
            37,
            "spec.alertWhenResolved",
            "send_resolved",
        ),
        (("severity: page", "severity: critical"), 29, "spec.severity", "severity 'critical'"),
        (
            ("indicatorRef: web-ratio", "indicatorRef: web-ratios"),
            59,
            "spec.indicatorRef",
            "no SLI named",
        ),
        (("counter: true", "counter: false"), 13, "spec.ratioMetric.counter", "gauges"),
        (("op: gt,", "op: lt,"), 30, "spec.condition.op", "op 'lt'"),
        (
            ("    - web-pages", "    - web-pagse"),
            68,
            "spec.alertPolicies[0]",
            "no AlertPolicy named",
        ),
        (("duration: 28d", "duration: 1M"), 61, "spec.timeWindow[0].duration", "no fixed length"),
    ],
)
def test_what_does_not_map_is_an_error_naming_the_field(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, message: str
) -> None:
    assert edit[0] in DOCS
    err = error(tmp_path, DOCS.replace(*edit, 1))
    assert (err.line, err.field) == (line, field)
    assert message in err.message


def test_threshold_metrics_and_two_objectives_are_refused(tmp_path: Path) -> None:
    err = error(
        tmp_path, DOCS.replace("  ratioMetric:\n", "  thresholdMetric: {}\n  ratioMetric:\n")
    )
    assert (err.line, err.field) == (12, "spec.thresholdMetric")
    two = DOCS.replace("      target: 0.995\n", "      target: 0.995\n    - target: 0.99\n")
    err = error(tmp_path, two)
    assert err.field == "spec.objectives" and "exactly one objective" in err.message


def test_calendar_weeks_and_odd_start_times_are_refused(tmp_path: Path) -> None:
    err = error(tmp_path, INLINE.replace("duration: 1M", "duration: 1w"))
    assert (err.line, err.field) == (20, "[0].spec.timeWindow[0].duration")
    err = error(tmp_path, INLINE.replace("2024-01-01 00:00:00", "2024-01-01 12:00:00"))
    assert err.field == "[0].spec.timeWindow[0].calendar.startTime"
    assert "midnight on the 1st" in err.message


def test_a_prometheus_address_is_required(tmp_path: Path) -> None:
    text = INLINE.replace(', url: "http://prom:9090"', "")
    err = error(tmp_path, text)
    assert err.message == "no Prometheus address" and err.line == 16  # total's metricSource


@pytest.mark.parametrize(
    ("edit", "line", "field", "message", "hint"),
    [
        (
            ("lookbackWindow: 1h", "lookbackWindow: 7m"),
            30,
            "spec.condition.lookbackWindow",
            "AlertCondition 'fast-burn' (SLO 'web-availability'): the short window, "
            "lookbackWindow / 12 = 35s, is not a whole number of 1m (coalmine's buckets)",
            "use a lookbackWindow that is a multiple of 12m",
        ),
        (
            ("lookbackWindow: 1h", "lookbackWindow: 60d"),
            30,
            "spec.condition.lookbackWindow",
            "AlertCondition 'fast-burn' (SLO 'web-availability'): the lookbackWindow 60d is "
            "longer than the timeWindow 28d",
            "use a lookbackWindow of at most 28d, or a longer timeWindow",
        ),
        (
            ("lookbackWindow: 3d", "lookbackWindow: 29d"),
            44,
            "spec.conditions[1].spec.condition.lookbackWindow",
            "AlertCondition 'slow-burn' (SLO 'web-availability'): the lookbackWindow 29d is "
            "longer than the timeWindow 28d",
            "use a lookbackWindow of at most 28d, or a longer timeWindow",
        ),
        (
            ("alertAfter: 2m", "alertAfter: 400d"),
            30,
            "spec.condition.alertAfter",
            "400d is longer than 366d, the longest allowed",
            "e.g. 5m",
        ),
        (
            ("    - conditionRef: fast-burn\n", "    - conditionRef: fast-burn\n" * 2),
            27,
            "metadata.name",
            "the SLO's alert policies use AlertCondition 'fast-burn' twice",
            "reference each condition once",
        ),
        (
            ("service: web", 'service: "web{{"'),
            58,
            "spec.service",
            "invalid service name 'web{{'",
            "the service's name in coalmine.yaml: lowercase letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit",
        ),
        (
            ("target: 0.995", 'target: "99.5%"'),
            66,
            "spec.objectives[0].target",
            "expected a number, got the string '99.5%'",
            "target is a ratio such as 0.999",
        ),
    ],
)
def test_alert_condition_problems_point_at_the_condition(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, message: str, hint: str
) -> None:
    assert edit[0] in DOCS
    err = error(tmp_path, DOCS.replace(*edit, 1))
    assert err.one_line() == (
        f"{tmp_path / 'openslo.yaml'}:{line}: {field}: {message} (hint: {hint})"
    )


def test_default_alerts_that_do_not_fit_say_so_in_openslo_words(tmp_path: Path) -> None:
    text = DOCS.replace("duration: 28d", "duration: 1d").replace(
        "  alertPolicies:\n    - web-pages\n", ""
    )
    err = error(tmp_path, text)
    assert (err.line, err.field) == (60, "spec.timeWindow")
    assert "shorter than the long window 3d of alert rule 'ticket-3d'" in err.message
    assert err.hint == "lengthen the timeWindow, or add alertPolicies with shorter lookbackWindows"

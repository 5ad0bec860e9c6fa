"""Nasty slos.yaml input: each problem is one line naming file:line and field, with a hint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from coalmine.errors import SpecError
from coalmine.slo.loader import load_slos
from coalmine.slo.spec import DAY

ROOT = Path(__file__).resolve().parents[2]
COALMINE = ROOT / ".venv" / "bin" / "coalmine"
GOOD = """\
slos:
  - name: shop-availability
    service: shop
    objective: 99.9
    sli: {type: availability, source: router}
    window: 30d
"""
MINIMAL = (
    "(hint: a minimal slos.yaml: slos: [{name: shop-availability, service: shop, "
    "objective: 99.9, sli: {type: availability, source: router}, window: 30d}])"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slos.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error(path: Path | str) -> str:
    with pytest.raises(SpecError) as info:
        load_slos([path])
    return info.value.one_line()


def edited(tmp_path: Path, old: str, new: str) -> str:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    return error(path).removeprefix(f"{path}:")


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("window", "shown"),
    [
        ("100000d", "100000d"),
        ("99999999999999999999d", "99999999999999999999d"),
        ("9" * 400 + "d", "99999999999999999999..."),  # inf as a float
        ("9" * 400, "99999999999999999999..."),  # an integer too large for a float
        (".inf", "inf"),
        ("367d", "367d"),
    ],
)
def test_a_window_longer_than_366d_is_refused(tmp_path: Path, window: str, shown: str) -> None:
    assert edited(tmp_path, "window: 30d", f"window: {window}") == (
        f"6: slos[0].window: {shown} is longer than 366d, the longest allowed "
        "(hint: e.g. 30d, 28d or 7d)"
    )


def test_366d_is_the_longest_window(tmp_path: Path) -> None:
    (slo,) = load_slos([write(tmp_path, GOOD.replace("30d", "366d"))]).slos
    assert slo.window.rolling_s == 366 * DAY
    text = GOOD.replace("window: 30d", "window: {rolling: 1000d}")
    assert error(write(tmp_path, text)).endswith(
        ":6: slos[0].window.rolling: 1000d is longer than 366d, the longest allowed "
        "(hint: e.g. 30d, 28d or 7d)"
    )
    assert edited(tmp_path, "window: 30d", "window: .nan") == (
        "6: slos[0].window: expected a duration, got nan (hint: e.g. 30d, 28d or 7d)"
    )


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("long: 400d, short: 1h", "long", "400d is longer than 366d, the longest allowed"),
        ("long: 1h, short: .inf", "short", "inf is longer than 366d, the longest allowed"),
        ("long: 1h, short: 5m, for: 1000d", "for", "1000d is longer than 366d"),
    ],
)
def test_alert_windows_are_bounded_too(tmp_path: Path, rule: str, field: str, message: str) -> None:
    alerting = f"\n    alerting: [{{severity: page, factor: 14.4, {rule}}}]"
    assert edited(tmp_path, "window: 30d", "window: 30d" + alerting).startswith(
        f"7: slos[0].alerting[0].{field}: {message}"
    )


def test_a_window_of_too_many_buckets_is_refused(tmp_path: Path) -> None:
    # 30d of 1s buckets is 2.6 million entries for the engine; 366d of 1m is the most
    assert edited(tmp_path, "window: 30d", "window: 30d\n    resolution: 1s") == (
        "6: slos[0].window: the window (rolling 30d) holds 2592000 units of 1s (resolution), "
        "more than the 527040 coalmine keeps (hint: use a resolution of at least 5s, or a "
        "shorter window)"
    )
    alerting = "\n    alerting: [{severity: page, factor: 2, long: 1h, short: 5m, for: 300d}]"
    assert edited(tmp_path, "window: 30d", "window: 1d\n    resolution: 1s" + alerting) == (
        "8: slos[0].alerting[0].for: 'for' of rule 'page-1h' holds more than 527040 units of "
        "1s (resolution) (hint: alert conditions usually hold for minutes, e.g. for: 2m)"
    )


def test_traffic_must_be_finite(tmp_path: Path) -> None:
    assert edited(tmp_path, "window: 30d", "window: 30d\n    traffic: .inf") == (
        "7: slos[0].traffic: expected a finite number, got inf "
        "(hint: events per time such as 10/s or 60/h)"
    )


# --------------------------------------------------------------------------- no SLOs


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", 1),
        ("# nothing yet\n", 1),
        ("~\n", 1),
        (
            "# a data source, but no SLO\n---\napiVersion: openslo/v1\nkind: Service\n"
            "metadata: {name: shop}\nspec: {}\n",
            3,
        ),
    ],
)
def test_an_input_without_slos_is_an_error(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    assert error(path) == f"{path}:{line}: slos: no SLOs found {MINIMAL}"


def test_dev_null_and_an_empty_directory_hold_no_slos(tmp_path: Path) -> None:
    assert error("/dev/null") == f"/dev/null:1: slos: no SLOs found {MINIMAL}"
    assert error(tmp_path) == f"{tmp_path}: no .yaml or .yml files to read {MINIMAL}"


# --------------------------------------------------------------------------- names, hints


SERVICE_HINT = (
    "(hint: the service's name in coalmine.yaml: lowercase letters, digits, '-', '_' and '.', "
    "starting and ending with a letter or digit)"
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"shop{{"', "'shop{{'"),  # breaks the alert annotations' templates
        ('"shop\\"} or vector(1) #"', "'shop\"} or vector(1) #'"),  # PromQL injection
        ('"shop\\nx"', "'shop\\nx'"),  # an unterminated PromQL string
        ("Shop", "'Shop'"),
        ("-shop", "'-shop'"),
        ("a" * 254, "'" + "a" * 254 + "'"),
    ],
)
def test_service_names_are_restricted(tmp_path: Path, value: str, shown: str) -> None:
    assert edited(tmp_path, "service: shop", f"service: {value}") == (
        f"3: slos[0].service: invalid service name {shown} {SERVICE_HINT}"
    )


def test_service_names_like_coalmine_yaml_are_fine(tmp_path: Path) -> None:
    for name in ("shop", "maestro-api", "shop.eu", "shop_v2", "a" * 253):
        (slo,) = load_slos(
            [write(tmp_path, GOOD.replace("service: shop", f"service: {name}"))]
        ).slos
        assert slo.service == name


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "objective: 99.9",
            'objective: "99.9%"',
            "4: slos[0].objective: expected a number, got the string '99.9%' "
            "(hint: objective is a percent number such as 99.9, without %)",
        ),
        (
            "objective: 99.9",
            "objective: true",
            "4: slos[0].objective: expected a number, got the boolean true "
            "(hint: objective is a percent number such as 99.9, without %)",
        ),
        (
            GOOD,
            "slos: hello\n",
            "1: slos: expected a list, got the string 'hello' "
            f"(hint: slos is a list; {MINIMAL[7:]}",
        ),
        (
            GOOD,
            "slos: [hello]\n",
            "1: slos[0]: expected a mapping, got the string 'hello' "
            f"(hint: each SLO is a mapping; {MINIMAL[7:]}",
        ),
        (
            GOOD,
            "hello\n",
            "1: expected a mapping, got the string 'hello' (hint: a document holds slos: [...] "
            f"(SLOSet) or an OpenSLO object (apiVersion: openslo/v1); {MINIMAL[7:]}",
        ),
    ],
)
def test_shape_errors_have_a_hint(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert edited(tmp_path, old, new) == expected


# --------------------------------------------------------------------------- probe SLIs

PROBE_SLI = "sli: {type: availability, source: router}"


@pytest.mark.parametrize(
    ("sli", "expected"),
    [
        (
            "sli: {type: availability, source: probe, flows: [checkout]}",
            "5: slos[0].sli: missing required field 'environment' (hint: name the environment "
            "whose probe runs count, e.g. environment: prod (a flow's runs in other "
            "environments do not count))",
        ),
        (
            "sli: {type: availability, source: probe}",
            "5: slos[0].sli: missing required field 'environment' (hint: name the environment "
            "whose probe runs count, e.g. environment: prod (a flow's runs in other "
            "environments do not count))",
        ),
        (
            'sli: {type: availability, source: probe, environment: ""}',
            "5: slos[0].sli.environment: must not be empty",
        ),
        (
            "sli: {type: availability, source: probe, environment: prod, flows: []}",
            "5: slos[0].sli.flows: name at least one flow (hint: or remove flows: and bind the "
            "flows to this SLO with slo: <name> in each flow)",
        ),
        (
            "sli: {type: availability, source: router, environment: prod}",
            "5: slos[0].sli.environment: 'environment' is a field of source probe, not router "
            "(hint: set source: probe, or remove 'environment')",
        ),
    ],
)
def test_probe_slis_name_their_environment(tmp_path: Path, sli: str, expected: str) -> None:
    assert edited(tmp_path, PROBE_SLI, sli) == expected


def test_a_probe_sli_may_rely_on_flows_that_bind_it(tmp_path: Path) -> None:
    text = GOOD.replace(PROBE_SLI, "sli: {type: availability, source: probe, environment: prod}")
    (slo,) = load_slos([write(tmp_path, text)]).slos
    assert slo.sli.describe() == "availability from probe in prod"


# --------------------------------------------------------------------------- the CLI


def test_slo_validate_exits_2_without_a_traceback(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(GOOD.replace("30d", "100000d"))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    probe = tmp_path / "probe.yaml"
    probe.write_text(GOOD.replace("source: router", "source: probe, flows: [checkout]"))
    cases = [
        (big, f"{big}:6: slos[0].window: 100000d is longer than 366d"),
        (empty, f"{empty}:1: slos: no SLOs found (hint: a minimal slos.yaml"),
        (probe, f"{probe}:5: slos[0].sli: missing required field 'environment' (hint: name"),
    ]
    for path, expected in cases:
        done = subprocess.run(
            [str(COALMINE), "slo", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and done.stdout == ""
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(f"coalmine: error: {expected}")
        assert done.stderr.count("\n") == 1

"""Backtesting: data validation, the simulated-clock driver, and `coalmine analyze replay`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from coalmine.analysis import replay as rp
from coalmine.analysis.types import Phase, ProviderResult
from coalmine.metrics import router as router_metrics
from coalmine.spec.loader import load_bundle
from coalmine.spec.model import Metric
from coalmine.traffic.window import MeasurementWindow

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "examples" / "replay" / "templates.yaml"
ROLLOUTS = ROOT / "examples" / "rollouts.yaml"
_BIN = Path(sys.executable).with_name("coalmine")
COALMINE = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "coalmine.cli.main"]


# --------------------------------------------------------------------------- synthetic data


def stream(
    duration: float = 300.0,
    *,
    fault_at: float | None = None,
    error_every: int = 20,
    canary_every: int = 1,
) -> list[dict[str, Any]]:
    """Both versions at 10 requests/s, at t = 0.05, 0.15, ... (never on a look, which falls on
    whole seconds when the run starts at 0). From ``fault_at`` on, every ``error_every``-th canary
    request is a 500 (5% for 20). ``canary_every`` > 1 thins the canary out. Latencies are the
    same for both versions."""
    lines = []
    for k in range(round(duration * 10)):
        t = round(0.05 + 0.1 * k, 2)
        latency = 20.0 + (k % 10)
        lines.append({"t": t, "version": "stable", "latency_ms": latency, "status": 200})
        if k % canary_every:
            continue
        bad = fault_at is not None and t >= fault_at and k % error_every == 0
        lines.append(
            {"t": t, "version": "canary", "latency_ms": latency, "status": 500 if bad else 200}
        )
    return lines


def data_of(lines: Iterable[dict[str, Any]], source: str = "test.jsonl") -> rp.ReplayData:
    return rp.parse_data([json.dumps(line) for line in lines], source)


def metrics(name: str = "canary-health", path: Path = TEMPLATES, **args: str) -> tuple[Metric, ...]:
    arg_list = [f"{k}={v}" for k, v in args.items()]
    found, _ = rp.resolve_metrics(load_bundle([path]), [name], rp.parse_args(arg_list))
    return found


def write(path: Path, lines: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COALMINE, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


# --------------------------------------------------------------------------- canary-health
#
# canary-health (examples/replay/templates.yaml): error-rate and latency-p99, each with
# initialDelay 1m, interval 20s, failureLimit 1, inconclusiveLimit 2, a 1m window and
# minRequests 20. Started at t=0, the looks are at 60, 80, 100, 120, 140, 160, ...
#
# With 5% canary errors from t=120 (every 20th canary request, k = 1200, 1220, ...):
#   t=120: window (60, 120]: no error                        -> Successful
#   t=140: window (80, 140]: 10 errors in 600 canary requests = 1.67% > 1% and > 2 x 0
#                                                              -> Failed (1 failure, limit 1)
#   t=160: window (100, 160]: 20 of 600 = 3.33%              -> Failed, 2 > failureLimit 1
# so error-rate, and the run, fail at the sixth look, t=160.


def test_canary_error_jump_fails_at_the_expected_look() -> None:
    result = rp.replay(metrics(), data_of(stream(fault_at=120.0)), start=0.0)

    assert result.run.phase == Phase.FAILED and not result.run.terminated
    assert result.decided_at == 160.0
    looks = result.measurements("error-rate")
    assert [e.t for e in looks] == [60.0, 80.0, 100.0, 120.0, 140.0, 160.0]
    assert [e.phase for e in looks] == ["Successful"] * 4 + ["Failed"] * 2
    assert looks[3].value == {"canary": 0.0, "stable": 0.0}
    assert looks[4].value == pytest.approx({"canary": 10 / 600, "stable": 0.0})
    assert looks[5].value == pytest.approx({"canary": 20 / 600, "stable": 0.0})
    assert looks[4].details["canary"]["requests"] == 600
    assert looks[4].details["canary"]["errors"] == 10
    decided = [e for e in result.timeline if e.kind == "metric" and e.metric == "error-rate"]
    assert [(e.t, e.phase) for e in decided] == [(160.0, "Failed")]
    assert "2 of 6 measurements failed (failureLimit 1)" in decided[0].message
    assert result.timeline[-1].kind == "run" and result.timeline[-1].phase == "Failed"
    # latency-p99 was measured in the same look, after the run had already failed
    assert [e.counted for e in result.measurements("latency-p99")][-1] is False
    rows = rp.timeline_rows(result)
    failing = [r for r in rows if r[1] == "error-rate" and r[2] == "Failed" and r[3]]
    assert [(r[0], r[3]) for r in failing] == [
        ("+2m20s", "{canary: 0.0166667, stable: 0}"),
        ("+2m40s", "{canary: 0.0333333, stable: 0}"),
    ]
    assert rp.outcome_line(result).startswith("outcome: Failed, decided at +2m40s")


def test_a_clean_stream_keeps_running_until_the_data_ends() -> None:
    result = rp.replay(metrics(), data_of(stream()), start=0.0)

    expected = [60.0 + 20 * i for i in range(12)]  # 60 .. 280; the next look, 300, has no data
    for name in ("error-rate", "latency-p99"):
        looks = result.measurements(name)
        assert [e.t for e in looks] == expected
        assert {e.phase for e in looks} == {"Successful"}
    runs = [e for e in result.timeline if e.kind == "run"]
    assert len(runs) == 1 and runs[0] is result.timeline[-1]  # nothing decided before the end
    assert result.run.terminated and result.decided_at == 299.95
    assert result.run.phase == Phase.SUCCESSFUL
    assert result.run.message.startswith(f"terminated ({rp.DATA_ENDED})")
    assert result.run.metric("error-rate").successful == 12


def test_too_few_canary_requests_is_inconclusive() -> None:
    # one canary request every 5 s: 12 in a 1m window, fewer than minRequests 20
    result = rp.replay(metrics(), data_of(stream(canary_every=50)), start=0.0)

    looks = result.measurements("error-rate")
    assert [(e.t, e.phase) for e in looks] == [(t, "Inconclusive") for t in (60.0, 80.0, 100.0)]
    assert all(e.message.startswith("no data: canary had 12 requests") for e in looks)
    assert result.run.phase == Phase.INCONCLUSIVE and result.decided_at == 100.0
    assert "3 of 3 measurements inconclusive (inconclusiveLimit 2)" in result.run.message


def test_replay_starts_at_the_first_data_time_by_default() -> None:
    result = rp.replay(metrics(), data_of(stream(fault_at=120.0)))
    assert result.run.started_at == 0.05
    assert result.measurements("error-rate")[0].t == 60.05


# --------------------------------------------------------------------------- same code path


def test_router_numbers_equal_a_live_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Irregular traffic: every router look of the replay gives exactly what a live
    MeasurementWindow, fed the same records as the proxy does, gives at that time, and the
    replay got it through coalmine.metrics.router (its evaluate() ran once per look)."""
    rng = random.Random(3)
    lines = []
    t = 0.0
    while t < 240:
        t += rng.expovariate(15.0)
        version = "canary" if rng.random() < 0.3 else rng.choice(["stable", "baseline"])
        status = rng.choice([200] * 40 + [404, 500, 503])
        lines.append(
            {
                "t": round(t, 4),
                "version": version,
                "latency_ms": rng.lognormvariate(3, 0.5),
                "status": status,
            }
        )
    # and a canary request exactly at every whole 5 s, so some fall exactly on a look (t <= now)
    lines += [
        {"t": float(x), "version": "canary", "latency_ms": 25.0, "status": 200}
        for x in range(5, 240, 5)
    ]
    lines.sort(key=lambda line: line["t"])
    calls = []
    real = router_metrics.evaluate

    def spy(*args: Any) -> ProviderResult:
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(router_metrics, "evaluate", spy)
    template = metrics(window="45s")
    result = rp.replay(template, data_of(lines), start=0.0)
    looks = result.measurements()
    assert len(looks) == len(calls) >= 18

    now = [0.0]
    live = MeasurementWindow(now=lambda: now[0])
    fed = 0
    for look in looks:
        while fed < len(lines) and lines[fed]["t"] <= look.t:
            line = lines[fed]
            side = "canary" if line["version"] == "canary" else "stable"
            live.record(side, line["t"], line["latency_ms"], line["status"])
            fed += 1
        now[0] = look.t
        spec = next(m for m in template if m.name == look.metric)
        config = spec.provider_config
        quantile = float(config.get("quantile", 0.99))
        expected = real(
            live.stats(45.0, (quantile,)), config["query"], quantile, 20, config.get("version")
        )
        assert look.value == expected.value
        assert look.details == expected.details


def test_provider_registry_is_one_dict() -> None:
    assert set(rp.REPLAY_PROVIDERS) == {"coalmine/router", "coalmine/judge"}

    class Fixed:
        async def measure(self, metric: Metric, context: Any) -> ProviderResult:
            return ProviderResult(value=0.5 if context.now < 150 else 1.5)

    factories = {**rp.REPLAY_PROVIDERS, "prometheus": lambda data, clock: Fixed()}
    result = rp.replay(
        metrics("canary-saturation"), data_of(stream()), start=0.0, factories=factories
    )
    assert [e.value for e in result.measurements()] == [0.5] * 4 + [1.5] * 3
    assert result.run.phase == Phase.FAILED  # result <= 1.25 fails 3 times (failureLimit 2)
    assert result.decided_at == 210.0


def test_the_judge_replays_with_every_request_since_the_run_started() -> None:
    """examples/rollouts.yaml's canary-health, whatever its metrics are today (router or judge):
    the 5% canary errors from t=120 fail it, and not before; the clean stream does not."""
    template = metrics("canary-health", ROLLOUTS)
    failing = rp.replay(template, data_of(stream(fault_at=120.0)), start=0.0)
    assert failing.run.phase == Phase.FAILED
    assert failing.decided_at is not None and 120 < failing.decided_at < 300
    assert all(e.t > 120 for e in failing.measurements() if e.phase == "Failed")
    clean = rp.replay(template, data_of(stream()), start=0.0)
    assert clean.run.phase != Phase.FAILED and clean.run.terminated


def test_judge_replay_sees_only_data_since_the_run_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from coalmine.metrics import judge as judge_plugin

    seen: list[tuple[float, float, int, bool]] = []
    real = judge_plugin.judge

    def spy(spec: Any, data: Any, final_look: bool = False) -> Any:
        times = [r.t for r in data.requests] or [float("nan")]
        seen.append((min(times), max(times), len(data.requests), final_look))
        return real(spec, data, final_look=final_look)

    monkeypatch.setattr(judge_plugin, "judge", spy)
    config = {"metrics": [{"name": "errors", "kind": "ratio", "relativeTolerance": 2}]}
    metric = Metric(
        name="judge", provider={"plugin": {"coalmine/judge": config}}, interval=30.0, count=3
    )
    result = rp.replay([metric], data_of(stream()), start=10.0)
    assert [e.t for e in result.measurements()] == [10.0, 40.0, 70.0]
    assert [s[3] for s in seen] == [False, False, True]  # final_look at the count's last look
    assert seen[0][2] == 0  # at the start nothing is newer than the start
    for (first, last, n, _), look in zip(seen[1:], (40.0, 70.0), strict=True):
        assert first == 10.05 and last == look - 0.05 and n == round((look - 10.0) * 20)


# --------------------------------------------------------------------------- samples


def test_a_prometheus_metric_replays_from_its_samples() -> None:
    lines = stream(120.0) + [
        {"t": float(t), "version": "canary", "metric": "cpu-ratio", "value": v}
        for t, v in ((20, 1.1), (50, 1.4), (80, 1.5), (120, 1.3))
    ]
    result = rp.replay(metrics("canary-saturation"), data_of(lines), start=0.0)
    looks = result.measurements("cpu-ratio")
    assert [(e.t, e.value, e.phase) for e in looks] == [
        (30.0, 1.1, "Successful"),
        (60.0, 1.4, "Failed"),
        (90.0, 1.5, "Failed"),
        (120.0, 1.3, "Failed"),
    ]
    assert looks[1].details["canary"] == {"t": 50.0, "line": 2402, "value": 1.4}
    assert result.run.phase == Phase.FAILED and result.decided_at == 120.0


def test_samples_of_both_versions_give_a_map_and_none_yet_is_no_data() -> None:
    metric = Metric(
        name="cpu",
        provider={"web": {"url": "http://x/cpu"}},
        interval=10.0,
        count=3,
        inconclusive_limit=2,
        success_condition="result.canary <= result.stable * 1.2",
    )
    lines = [
        {"t": 5.0, "version": "canary", "metric": "cpu", "value": 1.0},
        {"t": 12.0, "version": "baseline", "metric": "cpu", "value": 1.0},
        {"t": 15.0, "version": "canary", "metric": "cpu", "value": 2.0},
        {"t": 30.0, "version": "canary", "metric": "cpu", "value": 0.5},
    ]
    result = rp.replay([metric], data_of(lines), start=0.0)
    looks = result.measurements()
    assert [(e.t, e.phase, e.value) for e in looks] == [
        (0.0, "Inconclusive", None),
        (10.0, "Inconclusive", None),
        (20.0, "Failed", {"canary": 2.0, "stable": 1.0}),
    ]
    assert looks[1].message == "no data: no stable sample of 'cpu' yet"


def test_a_network_metric_without_samples_cannot_be_replayed() -> None:
    with pytest.raises(rp.ReplayError) as caught:
        rp.replay(metrics("canary-saturation"), data_of(stream(60.0)))
    err = caught.value
    assert "metric 'cpu-ratio' uses provider 'prometheus'" in err.message
    assert err.file == str(TEMPLATES) and err.line is not None
    assert '"metric": "cpu-ratio"' in (err.hint or "")


# --------------------------------------------------------------------------- the data file


def bad(*lines: str) -> rp.ReplayDataError:
    with pytest.raises(rp.ReplayDataError) as caught:
        rp.parse_data(list(lines), "samples.jsonl")
    return caught.value


GOOD = '{"t": 1, "version": "canary", "latency_ms": 3.5, "status": 200}'


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": "abc"}', "status",
         'expected an integer, got "abc"'),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": 200.5}', "status",
         "expected an integer, got 200.5"),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": 700}', "status",
         "expected an HTTP status from 100 to 599, got 700"),
        ('{"t": 2, "version": "canary", "status": 200}', "latency_ms",
         "missing in a request record"),
        ('{"t": 2, "version": "canary", "latency": 3, "status": 200}', "latency",
         "unknown field in a request record"),
        ('{"t": -1, "version": "canary", "latency_ms": 3, "status": 200}', "t",
         "expected a number of at least 0, got -1"),
        ('{"t": "5", "version": "canary", "latency_ms": 3, "status": 200}', "t",
         'expected a number, got "5"'),
        ('{"t": 2, "version": "Canary", "latency_ms": 3, "status": 200}', "version",
         'expected one of stable, baseline, canary, got "Canary"'),
        ('{"t": 2, "version": "canary", "metric": "cpu", "value": true}', "value",
         "expected a number, got true"),
        ('{"t": 2, "version": "canary", "metric": "", "value": 1}', "metric",
         'expected the metric\'s name, got ""'),
        ('{"t": 2, "version": "canary", "metric": "cpu", "value": 1, "status": 200}', "status",
         "a line is a request record or a metric sample, not both"),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": 200, "value": 1}', "value",
         "a line is a request record or a metric sample, not both"),
    ],
)  # fmt: skip
def test_a_bad_line_names_its_line_and_field(line: str, field: str, message: str) -> None:
    err = bad(GOOD, "", line)
    assert (err.file, err.line, err.field) == ("samples.jsonl", 3, field)
    assert message in err.message
    assert err.one_line().startswith(f"samples.jsonl:3: field '{field}': {message}")
    # the published schema rejects it too
    assert list(Draft202012Validator(rp.data_schema()).iter_errors(json.loads(line)))


def test_unknown_fields_get_a_did_you_mean() -> None:
    err = bad('{"t": 1, "versoin": "canary", "latency_ms": 3, "status": 200}')
    assert err.one_line() == (
        "samples.jsonl:1: field 'versoin': unknown field in a request record "
        "(hint: did you mean 'version'?)"
    )


def test_malformed_json_and_non_objects() -> None:
    err = bad(GOOD, '{"t": 2, "version": "canary" "latency_ms": 3}')
    assert err.line == 2 and err.field is None
    assert err.message.startswith("not valid JSON: Expecting ',' delimiter (column 30)")
    assert bad("[1, 2]").message == "expected a JSON object, got a list"
    assert "NaN" in bad('{"t": NaN, "version": "canary", "latency_ms": 3, "status": 200}').message


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"t": 2, "version": "canary", "latency_ms": NaN, "status": 200}', "latency_ms",
         "expected a finite number, got NaN"),
        ('{"t": -Infinity, "version": "canary", "latency_ms": 3, "status": 200}', "t",
         "expected a finite number, got -Infinity"),
        ('{"t": 2, "version": "canary", "latency_ms": 1e999, "status": 200}', "latency_ms",
         "expected a finite number, got Infinity"),
        ('{"t": ' + "9" * 5000 + ', "version": "canary", "latency_ms": 3, "status": 200}', "t",
         "expected a finite number, got a 5000-digit number"),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": ' + "2" * 5000 + "}",
         "status", "expected an integer, got a 5000-digit number"),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": 200, "t": 3}', "t",
         "the field appears twice in the line"),
        ('{"t": "x", "version": "canary", "latency_ms": 3, "status": 200}', "t",
         'expected a number, got "x"'),
        ('{"t": 2, "version": "canary", "latency_ms": -1, "status": 200}', "latency_ms",
         "expected a number of at least 0, got -1"),
        ('{"t": 2, "version": "canary", "latency_ms": 3, "status": 99}', "status",
         "expected an HTTP status from 100 to 599, got 99"),
        ('{"t": 2, "version": "canary", "metric": "cpu", "value": "high"}', "value",
         'expected a number, got "high"'),
    ],
)  # fmt: skip
def test_unusable_numbers_and_repeated_fields_name_the_field_with_a_hint(
    line: str, field: str, message: str
) -> None:
    err = bad(GOOD, line)
    assert (err.line, err.field) == (2, field)
    assert err.one_line().startswith(f"samples.jsonl:2: field '{field}': {message} (hint: ")


def test_deeply_nested_json_is_a_data_error_not_a_crash() -> None:
    err = bad(GOOD, "[" * 5000 + "]" * 5000)
    assert err.line == 2 and err.message == "not valid data: nested too deeply"


def test_a_runaway_line_is_refused_by_its_number_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + "\n" + "x" * (rp.MAX_LINE_BYTES * 50) + "\n" + GOOD + "\n")
    with pytest.raises(rp.ReplayDataError) as caught:
        rp.load_data(path)
    assert (caught.value.line, caught.value.message) == (2, "the line is longer than 64 KiB")


def test_bytes_that_are_not_utf8_are_named_by_their_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(("\n".join([GOOD] * 3000) + "\n").encode() + b'{"t": 9, "v\xff": 1}\n')
    with pytest.raises(rp.ReplayDataError) as caught:
        rp.load_data(path)
    assert caught.value.line == 3001
    assert caught.value.message == "not UTF-8 text (invalid start byte at column 12)"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n")  # a BOM and CRLF are fine
    assert rp.load_data(path).lines == 1


def test_an_empty_file_is_an_error() -> None:
    for lines in ([], ["", "  ", "\n"]):
        err = bad(*lines)
        assert err.line is None and err.message.startswith("no data: the file has no")


def test_a_file_uses_one_kind_of_time() -> None:
    err = bad(GOOD, '{"t": 1700000000.5, "version": "canary", "latency_ms": 3, "status": 200}')
    assert (err.line, err.field) == (2, "t")
    assert "t 1700000000.5 is epoch seconds but line 1 has t 1" in err.message
    epoch = rp.parse_data([GOOD.replace('"t": 1', '"t": 1700000000')])
    assert epoch.epoch and not rp.parse_data([GOOD]).epoch


def test_lines_are_sorted_with_a_note_and_versions_are_mapped() -> None:
    data = rp.parse_data(
        [
            '{"t": 5, "version": "baseline", "latency_ms": 1, "status": 200}',
            '{"t": 3, "version": "canary", "latency_ms": 2, "status": 200.0}',
            "",
            '{"t": 4, "version": "stable", "metric": "cpu", "value": -0.5}',
            '{"t": 3, "version": "stable", "latency_ms": 3, "status": 503}',
        ]
    )
    assert [(r.t, r.side, r.line) for r in data.requests] == [
        (3.0, "canary", 2),
        (3.0, "stable", 5),
        (5.0, "stable", 1),
    ]
    assert data.requests[0].status == 200 and data.lines == 4
    assert data.notes == (
        "the data names both 'stable' and 'baseline': both are the compared-with side",
        "3 line(s) were earlier than a line before them (lines 2, 4, 5); the data was sorted by t",
    )
    assert (data.start, data.end) == (3.0, 5.0)


def test_the_schema_accepts_what_the_loader_accepts() -> None:
    schema = rp.data_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    path = ROOT / "examples" / "replay" / "samples.jsonl"
    lines = path.read_text().splitlines()
    data = rp.load_data(path)
    assert data.lines == len(lines) and data.samples
    for line in lines:
        assert not list(validator.iter_errors(json.loads(line))), line


# --------------------------------------------------------------------------- the command


def test_the_command_prints_the_timeline_and_is_deterministic(tmp_path: Path) -> None:
    data = write(tmp_path / "fail.jsonl", stream(fault_at=120.0))
    args = ["analyze", "replay", "--template", str(TEMPLATES), "--name", "canary-health"]
    first = run_cli(*args, "--data", str(data), "--start", "0", "--json")
    second = run_cli(*args, "--data", str(data), "--start", "0", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert doc["outcome"]["phase"] == "Failed" and doc["outcome"]["decided_after_s"] == 160.0
    assert doc["run"]["phase"] == "Failed" and doc["run"]["name"] == "replay"
    assert [e["offset_s"] for e in doc["timeline"] if e["phase"] == "Failed" and e["value"]] == [
        140.0,
        160.0,
    ]
    text = run_cli(*args, "--data", str(data), "--start", "+0s", "--args", "window=1m")
    # +0s: the first line, t=0.05; the look at 140.05 also sees the error at t=140.05 (11 of 600)
    assert text.returncode == 0, text.stderr
    assert "{canary: 0.0183333, stable: 0}" in text.stdout
    assert "outcome: Failed, decided at +2m40s (t=160.05)" in text.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (GOOD + '\n{"t": 2, "version": "canary", "latency_ms": 3, "status": "abc"}\n',
         "data.jsonl:2: field 'status': expected an integer, got \"abc\""),
        (GOOD + '\n{"t": 2, "version": "canary", "latency_ms": 3,\n',
         "data.jsonl:2: not valid JSON"),
        ('{"t": 1, "version": "canary", "status": 200}\n',
         "data.jsonl:1: field 'latency_ms': missing in a request record"),
        ('{"t": 1, "version": "canary", "latency_ms": 3, "stauts": 200}\n',
         "data.jsonl:1: field 'stauts': unknown field in a request record (hint: did you mean"),
        ("\n", "data.jsonl: no data: the file has no request records or metric samples"),
    ],
)  # fmt: skip
def test_the_command_reports_bad_data_in_one_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    (tmp_path / "data.jsonl").write_text(content)
    done = subprocess.run(
        [*COALMINE, "analyze", "replay", "--template", str(TEMPLATES), "--name", "canary-health",
         "--data", "data.jsonl"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"coalmine: error: {expected}")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_the_schema_command_prints_the_published_schema() -> None:
    done = run_cli("schema", "replay-data")
    assert done.returncode == 0 and json.loads(done.stdout) == rp.data_schema()

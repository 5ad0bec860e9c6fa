from __future__ import annotations

import pytest

from coalmine.demo.faults import Fault, FaultSet, combine, parse_fault
from coalmine.errors import CoalmineError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error-rate=0.05", Fault("error-rate", error_rate=0.05)),
        ("error-rate=5%", Fault("error-rate", error_rate=0.05)),
        ("error-rate=0", Fault("error-rate", error_rate=0.0)),
        ("error-rate=1", Fault("error-rate", error_rate=1.0)),
        ("error-rate=100%", Fault("error-rate", error_rate=1.0)),
        ("error_rate=.5", Fault("error-rate", error_rate=0.5)),
        (" error-rate = 2.5% ", Fault("error-rate", error_rate=0.025)),
        ("latency=+150ms", Fault("latency", added_latency_ms=150.0)),
        ("latency=150ms", Fault("latency", added_latency_ms=150.0)),
        ("latency=+0.2s", Fault("latency", added_latency_ms=200.0)),
        ("latency=2s", Fault("latency", added_latency_ms=2000.0)),
        ("crash", Fault("crash")),
        ("CRASH", Fault("crash")),
    ],
)
def test_parse_good(text: str, expected: Fault) -> None:
    fault = parse_fault(text)
    assert fault.kind == expected.kind
    assert fault.error_rate == pytest.approx(expected.error_rate)
    assert fault.added_latency_ms == pytest.approx(expected.added_latency_ms)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "boom",
        "error-rate",
        "error-rate=",
        "error-rate=1.5",
        "error-rate=150%",
        "error-rate=-0.1",
        "error-rate=abc",
        "latency",
        "latency=150",
        "latency=-150ms",
        "latency=150m",
        "latency=fast",
        "crash=true",
        "error-rate=0.05\nlatency=1s",
    ],
)
def test_parse_bad(text: str) -> None:
    with pytest.raises(CoalmineError) as info:
        parse_fault(text)
    err = info.value
    assert err.field == "--fault"
    message = str(err)
    assert "\n" not in message
    assert "--fault" in message
    for form in ("error-rate=", "latency=", "crash"):
        assert form in message


def test_describe() -> None:
    assert parse_fault("error-rate=0.05").describe() == "5% of requests answer 500"
    assert parse_fault("latency=+150ms").describe() == "every request takes 150 ms longer"
    assert parse_fault("crash").describe() == "the process crashes"


def test_combine() -> None:
    faults = [parse_fault(t) for t in ("error-rate=0.5", "error-rate=50%", "latency=100ms")]
    combined = combine(faults)
    assert combined.error_rate == pytest.approx(0.75)
    assert combined.added_latency_ms == 100.0
    assert not combined.crash
    assert combined.to_json() == {"error_rate": 0.75, "added_latency_ms": 100.0}
    assert "75% of requests answer 500" in combined.describe()
    assert combine([parse_fault("crash")]).to_json()["crash"] is True
    assert combine([]) == FaultSet()
    assert FaultSet().empty
    assert FaultSet().describe() == "no fault"

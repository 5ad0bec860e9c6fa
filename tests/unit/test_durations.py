"""Durations: Argo's units everywhere, days and weeks only where asked for (SLO windows)."""

from __future__ import annotations

import pytest

from coalmine.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("90", 90.0), (2, 2.0)],
)
def test_argo_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_days_only_when_asked_for() -> None:
    with pytest.raises(ValueError, match="30s, 5m or 1h"):
        parse_duration("30d")
    assert parse_duration("30d", days=True) == 30 * 86400
    assert parse_duration("1w1d", days=True) == 8 * 86400


@pytest.mark.parametrize("bad", ["", "5x", "m5", "-1s", True, -3, "1h 30m"])
def test_bad_durations_say_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad, days=True)


def test_format_is_the_shortest_readable_form() -> None:
    assert format_duration(90) == "1m30s" and format_duration(0.25) == "250ms"
    assert parse_duration(format_duration(5400)) == 5400

"""Durations in Argo Rollouts' style: ``30s``, ``5m``, ``1h``, ``1h30m``, ``250ms``, or a number of
seconds. Parsed once, at load time, into float seconds."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object, *, days: bool = False) -> float:
    """Return the duration in seconds; raise ``ValueError`` with a readable reason.

    ``days`` also accepts days and weeks (``30d``, ``1w``, ``1d12h``), as SLO windows need;
    Argo Rollouts' durations stop at hours."""
    examples = "5m, 1h or 30d" if days else "30s, 5m or 1h"
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as {examples}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a duration such as {examples}, got {value!r}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos or (match.group(2) in ("d", "w") and not days):
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"expected a duration such as {examples}, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``90`` -> ``1m30s``, ``0.25`` -> ``250ms``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")

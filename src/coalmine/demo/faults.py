"""Faults the demo can inject into a canary: parsed from ``--fault`` flags, sent to the service.

Three forms: ``error-rate=0.05`` (or ``5%``), ``latency=+150ms`` (or ``150ms``, ``+0.2s``) and
``crash``. Several flags combine into one :class:`FaultSet`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from coalmine.errors import CoalmineError

FaultKind = Literal["error-rate", "latency", "crash"]

_FLAG = "--fault"
_HINT = "use one of: error-rate=0.05 (or 5%), latency=+150ms (or +0.2s), crash"
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RATE = re.compile(rf"{_NUMBER}\s*(%?)")
_LATENCY = re.compile(rf"\+?\s*{_NUMBER}\s*(ms|s)")


@dataclass(frozen=True)
class Fault:
    """One injected fault."""

    kind: FaultKind
    error_rate: float = 0.0
    added_latency_ms: float = 0.0

    def describe(self) -> str:
        """Human text, e.g. ``5% of requests answer 500``."""
        if self.kind == "error-rate":
            return f"{_percent(self.error_rate)} of requests answer 500"
        if self.kind == "latency":
            return f"every request takes {_number(self.added_latency_ms)} ms longer"
        return "the process crashes"


@dataclass(frozen=True)
class FaultSet:
    """Several faults merged: error rates compound, latencies add, any crash crashes."""

    error_rate: float = 0.0
    added_latency_ms: float = 0.0
    crash: bool = False

    @property
    def empty(self) -> bool:
        return not (self.error_rate or self.added_latency_ms or self.crash)

    def to_json(self) -> dict[str, Any]:
        """The body for ``POST /_demo/fault`` on the sample service."""
        body: dict[str, Any] = {
            "error_rate": self.error_rate,
            "added_latency_ms": self.added_latency_ms,
        }
        if self.crash:
            body["crash"] = True
        return body

    def describe(self) -> str:
        parts = []
        if self.error_rate:
            parts.append(Fault("error-rate", error_rate=self.error_rate).describe())
        if self.added_latency_ms:
            parts.append(Fault("latency", added_latency_ms=self.added_latency_ms).describe())
        if self.crash:
            parts.append(Fault("crash").describe())
        return "; ".join(parts) if parts else "no fault"


def combine(faults: Iterable[Fault]) -> FaultSet:
    """Merge the faults of several ``--fault`` flags."""
    ok = 1.0
    latency = 0.0
    crash = False
    for fault in faults:
        ok *= 1.0 - fault.error_rate
        latency += fault.added_latency_ms
        crash = crash or fault.kind == "crash"
    return FaultSet(error_rate=_clean(1.0 - ok), added_latency_ms=latency, crash=crash)


def parse_fault(text: str) -> Fault:
    """Parse one ``--fault`` value; raise :class:`CoalmineError` naming the flag."""
    raw = text.strip()
    key, sep, value = raw.partition("=")
    key = key.strip().lower().replace("_", "-")
    value = value.strip()
    if key == "crash" and not sep:
        return Fault("crash")
    if key == "error-rate" and sep:
        match = _RATE.fullmatch(value)
        if not match:
            _fail(f"error-rate needs a fraction (0.05) or a percentage (5%), got {raw!r}")
        rate = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
        if not 0.0 <= rate <= 1.0:
            _fail(f"error-rate must be between 0 and 1 (0% and 100%), got {raw!r}")
        return Fault("error-rate", error_rate=rate)
    if key == "latency" and sep:
        match = _LATENCY.fullmatch(value)
        if not match:
            _fail(f"latency needs a duration such as +150ms or +0.2s, got {raw!r}")
        ms = float(match.group(1)) * (1.0 if match.group(2) == "ms" else 1000.0)
        if not math.isfinite(ms):
            _fail(f"latency must be finite, got {raw!r}")
        return Fault("latency", added_latency_ms=ms)
    _fail(f"unknown fault {raw!r}")


def _fail(message: str) -> NoReturn:
    raise CoalmineError(message.replace("\n", " "), field=_FLAG, hint=_HINT)


def _clean(value: float) -> float:
    return round(value, 12)


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(rate: float) -> str:
    return f"{rate * 100:.4g}%"

"""Per-version request measurements over a sliding window.

Each response is one sample ``(t, latency_ms, status)`` appended to its version's time-ordered
deque; ``t`` is when the response finished. Samples older than ``retention_s`` are pruned on
every record, and each deque is capped at ``max_samples`` so memory stays bounded under any load.

Quantiles are exact: the window's latencies are sorted and interpolated linearly between the two
closest ranks (numpy's default, "type 7"): ``q`` -> position ``q * (n - 1)``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from coalmine.traffic.base import Stats, VersionStats

VERSIONS = ("stable", "canary")  # always measured; a router with a baseline adds "baseline"
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

Sample = tuple[float, float, int]  # t, latency_ms, status


def quantile_key(q: float) -> str:
    """``0.5`` -> ``p50``, ``0.99`` -> ``p99``, ``0.999`` -> ``p99.9``."""
    return f"p{round(q * 100, 6):g}"


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks of an ascending, non-empty sequence."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def status_class(status: int) -> str:
    return f"{min(max(status // 100, 1), 5)}xx"


class MeasurementWindow:
    """Thread-unsafe (the router records from one event loop); ``record`` is O(1) amortised."""

    def __init__(
        self,
        *,
        retention_s: float = 900.0,
        max_samples: int = 1_000_000,
        now: Callable[[], float] = time.time,
        versions: Iterable[str] = VERSIONS,
    ) -> None:
        self.retention_s = retention_s
        self.now = now
        self.max_samples = max_samples
        self._samples: dict[str, deque[Sample]] = {}
        self._last: dict[str, float | None] = {}
        for version in (*VERSIONS, *versions):
            self.add_version(version)

    @property
    def versions(self) -> tuple[str, ...]:
        """The measured versions, in the order they were added (stable, canary first)."""
        return tuple(self._samples)

    def add_version(self, version: str) -> None:
        """Measure ``version`` too (idempotent); it then appears in stats, even with no data."""
        if version not in self._samples:
            self._samples[version] = deque(maxlen=self.max_samples)
            self._last[version] = None

    def record(self, version: str, at: float, latency_ms: float, status: int) -> None:
        samples = self._samples[version]
        samples.append((at, latency_ms, status))
        last = self._last[version]
        if last is None or at > last:
            self._last[version] = at
        cutoff = at - self.retention_s
        while samples[0][0] < cutoff:
            samples.popleft()

    def _since(self, version: str, start: float) -> list[Sample]:
        """Samples with ``t > start``, oldest first; walks back from the newest only."""
        out = []
        for sample in reversed(self._samples[version]):
            if sample[0] <= start:
                break
            out.append(sample)
        out.reverse()
        return out

    def version_stats(
        self, version: str, window_s: float, quantiles: Iterable[float], now: float
    ) -> VersionStats:
        samples = [s for s in self._since(version, now - window_s) if s[0] <= now]
        status = dict.fromkeys(("2xx", "3xx", "4xx", "5xx"), 0)
        for _, _, code in samples:
            cls = status_class(code)
            status[cls] = status.get(cls, 0) + 1
        n = len(samples)
        errors = status["5xx"]
        latencies = sorted(s[1] for s in samples)
        return VersionStats(
            requests=n,
            status=status,
            errors=errors,
            error_rate=errors / n if n else None,
            request_rate=n / window_s if window_s > 0 else 0.0,
            latency_ms={quantile_key(q): quantile(latencies, q) for q in quantiles} if n else {},
            last_request_at=self._last[version],
        )

    def stats(
        self,
        window_s: float,
        quantiles: Iterable[float] = (0.5, 0.99),
        now: float | None = None,
    ) -> Stats:
        """Every measured version over the last ``window_s`` seconds ending at ``now``."""
        if window_s <= 0:
            raise ValueError(f"window must be positive, got {window_s}")
        at = self.now() if now is None else now
        qs = tuple(quantiles)
        return Stats(
            window_s=window_s,
            versions={v: self.version_stats(v, window_s, qs, at) for v in self._samples},
        )

    def records(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Raw samples with ``t > since``, oldest first, at most ``limit`` of them."""
        merged = [
            (t, v, lat, code) for v in self._samples for t, lat, code in self._since(v, since)
        ]
        merged.sort(key=lambda r: r[0])
        return [
            {"t": t, "version": v, "latency_ms": lat, "status": code}
            for t, v, lat, code in merged[: max(limit, 0)]
        ]

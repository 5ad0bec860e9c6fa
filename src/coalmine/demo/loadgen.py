"""An asyncio load generator for the demo: constant arrival rate, many tenants, per-version stats.

Requests start on a fixed schedule (``rate`` per second). When ``concurrency`` requests are
already in flight a due request is counted as *dropped by the generator* instead of delaying the
schedule, so a slow canary shows up as drops rather than as a silently lower rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

VERSION_HEADER = "X-Coalmine-Version"
UNKNOWN = "unknown"
HISTORY_S = 600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One answered (or failed) request; ``status`` is 0 for connection errors and timeouts."""

    time: float  # epoch seconds when the answer arrived
    status: int
    latency_s: float
    version: str
    tenant: str

    @property
    def error(self) -> bool:
        return self.status == 0 or self.status >= 500


class LoadGenerator:
    """Sends ``rate`` requests per second to ``url``; see :meth:`snapshot` for the results."""

    def __init__(
        self,
        url: str,
        rate: float,
        tenants: int = 1000,
        tenant_header: str = "X-Tenant",
        test_tenants: Sequence[str] = (),
        concurrency: int = 64,
        timeout: float = 5.0,
        seed: int = 0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.url = url
        self.rate = float(rate)
        self.tenant_header = tenant_header
        self.concurrency = concurrency
        self.timeout = timeout
        self._tenants = [f"tenant-{k:04d}" for k in range(tenants)] + list(test_tenants)
        if not self._tenants:
            raise ValueError("at least one tenant is needed")
        self._rng = random.Random(seed)
        self._samples: deque[Sample] = deque()
        self._dropped_at: deque[float] = deque()
        self._last_seen: dict[str, float] = {}
        self._totals: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self.sent = 0
        self.dropped = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._started_at: float | None = None

    # -- running ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop scheduling requests (call from the generator's event loop)."""
        self._stop.set()

    async def run(self, until: asyncio.Event | None = None, duration: float | None = None) -> None:
        """Send load until ``until`` is set, ``duration`` seconds pass, or :meth:`stop`."""
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
            start = loop.time()
            self._started_at = time.time()
            end = start + duration if duration is not None else None
            interval = 1.0 / self.rate
            index = 0
            while not self._stop.is_set() and not (until is not None and until.is_set()):
                due = start + index * interval
                if end is not None and due >= end:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await self._sleep(delay, until)
                    continue
                index += 1
                self._launch(session)
            await self._drain()

    async def _sleep(self, delay: float, until: asyncio.Event | None) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if until is not None:
            waiters.append(asyncio.ensure_future(until.wait()))
        try:
            await asyncio.wait(waiters, timeout=delay)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _launch(self, session: aiohttp.ClientSession) -> None:
        if len(self._in_flight) >= self.concurrency:
            self.dropped += 1
            self._dropped_at.append(time.time())
            return
        self.sent += 1
        tenant = self._rng.choice(self._tenants)
        task = asyncio.ensure_future(self._request(session, tenant))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self.timeout + 1.0)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    async def _request(self, session: aiohttp.ClientSession, tenant: str) -> None:
        began = time.perf_counter()
        status, version = 0, UNKNOWN
        try:
            async with session.get(self.url, headers={self.tenant_header: tenant}) as response:
                await response.read()
                status = response.status
                version = response.headers.get(VERSION_HEADER) or UNKNOWN
        except Exception:  # any failure to get an answer counts as a connection error
            status, version = 0, UNKNOWN
        self._record(Sample(time.time(), status, time.perf_counter() - began, version, tenant))

    def _record(self, sample: Sample) -> None:
        self._samples.append(sample)
        self._totals[sample.version] += 1
        if sample.error:
            self._errors[sample.version] += 1
        if sample.status:
            self._last_seen[sample.version] = sample.time
        self._trim(sample.time)

    def _trim(self, now: float) -> None:
        horizon = now - HISTORY_S
        while self._samples and self._samples[0].time < horizon:
            self._samples.popleft()
        while self._dropped_at and self._dropped_at[0] < horizon:
            self._dropped_at.popleft()

    # -- results ---------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def samples(self, window_s: float | None = None) -> list[Sample]:
        """The kept samples (at most the last ten minutes), optionally only the last window."""
        if window_s is None:
            return list(self._samples)
        since = time.time() - window_s
        return [s for s in self._samples if s.time >= since]

    def last_seen(self, version: str) -> float | None:
        """Epoch time of the last answer that carried ``version``, or None."""
        return self._last_seen.get(version)

    def snapshot(self, window_s: float) -> dict[str, Any]:
        """Per-version rate, error rate and latency percentiles over the last ``window_s``."""
        now = time.time()
        self._trim(now)
        since = now - window_s
        # A window longer than the run so far would understate the rate.
        span = window_s
        if self._started_at is not None:
            span = max(min(window_s, now - self._started_at), 1e-9)
        recent = [s for s in self._samples if s.time >= since]
        by_version: dict[str, list[Sample]] = {}
        for sample in recent:
            by_version.setdefault(sample.version, []).append(sample)
        versions = {
            version: _stats(group, span) | {"total": self._totals[version]}
            for version, group in sorted(by_version.items())
        }
        for version in self._totals:
            versions.setdefault(version, _stats([], span) | {"total": self._totals[version]})
        dropped_recent = sum(1 for t in self._dropped_at if t >= since)
        return {
            "time": now,
            "window_s": window_s,
            "target_rate": self.rate,
            "overall": _stats(recent, span),
            "versions": versions,
            "sent": self.sent,
            "completed": sum(self._totals.values()),
            "errors": sum(self._errors.values()),
            "dropped": self.dropped,
            "dropped_rate": dropped_recent / span,
            "in_flight": len(self._in_flight),
            "tenants_seen": len({s.tenant for s in recent}),
        }


def _stats(samples: list[Sample], span: float) -> dict[str, Any]:
    count = len(samples)
    errors = sum(1 for s in samples if s.error)
    ok_latencies = sorted(s.latency_s for s in samples if s.status)
    return {
        "requests": count,
        "rate": count / span if span > 0 else 0.0,
        "errors": errors,
        "error_rate": errors / count if count else 0.0,
        "p50_ms": _percentile(ok_latencies, 0.50),
        "p99_ms": _percentile(ok_latencies, 0.99),
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1] * 1000.0

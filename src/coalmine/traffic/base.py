"""The small interface through which the controller steers any data plane.

A routing change is one atomic document: the canary weight and the header routes together,
with a generation number so that a late, stale update never overwrites a newer one. A rollback
is a single ``set_routing(Routing(canary_weight=0))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from coalmine.spec.model import HeaderMatch


@dataclass(frozen=True)
class HeaderRoute:
    name: str
    matches: tuple[HeaderMatch, ...]


@dataclass(frozen=True)
class Routing:
    canary_weight: int = 0  # 0..100: share of tenants (or of requests without a tenant)
    header_routes: tuple[HeaderRoute, ...] = ()
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Routing:
        return cls(
            canary_weight=int(data.get("canary_weight", 0)),
            header_routes=tuple(
                HeaderRoute(
                    name=r["name"],
                    matches=tuple(HeaderMatch(**m) for m in r.get("matches", ())),
                )
                for r in data.get("header_routes", ())
            ),
            generation=int(data.get("generation", 0)),
        )


@dataclass(frozen=True)
class VersionStats:
    """One version's traffic over a window, as the router measured it."""

    requests: int = 0
    status: dict[str, int] = field(default_factory=dict)  # "2xx": n, ..., "5xx": n
    errors: int = 0  # 5xx answers, including the router's own 502/504 for this upstream
    error_rate: float | None = None  # None when there were no requests
    request_rate: float = 0.0  # requests per second over the window
    latency_ms: dict[str, float] = field(default_factory=dict)  # "p50": x, "p99": y (exact)
    last_request_at: float | None = None


@dataclass(frozen=True)
class Stats:
    window_s: float
    versions: dict[str, VersionStats]  # "stable", "canary", and "baseline" when configured


class TrafficRouter(Protocol):
    async def set_routing(self, routing: Routing) -> Routing:
        """Apply atomically; returns what the router now serves. Raises RouterError."""
        ...

    async def get_routing(self) -> Routing: ...

    async def stats(self, window_s: float, quantiles: tuple[float, ...] = (0.5, 0.99)) -> Stats: ...

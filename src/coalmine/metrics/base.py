"""The interface every metric provider implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from coalmine.analysis.types import ProviderResult
from coalmine.spec.model import Metric


@dataclass(frozen=True)
class MeasureContext:
    """What a provider may know about the rollout it measures.

    ``time_scale`` > 1 when the demo runs durations faster: a provider that reads a time window
    from its configuration divides it by this factor. ``args`` are the resolved analysis args.
    """

    rollout: str
    service: str
    now: float
    args: dict[str, str] = field(default_factory=dict)
    time_scale: float = 1.0
    run_started_at: float | None = None  # sequential judges use every observation since then
    final_look: bool = False  # the metric's count is reached with this measurement
    extra: dict[str, Any] = field(default_factory=dict)


class MetricProvider(Protocol):
    """Takes one measurement. Raises nothing for expected failures: an unreachable source or a
    bad answer comes back as ``ProviderResult(phase=Phase.ERROR, message=...)``."""

    async def measure(self, metric: Metric, context: MeasureContext) -> ProviderResult: ...

"""Analysis results, with Argo Rollouts' phases and counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"

    @property
    def completed(self) -> bool:
        return self in (Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR)


@dataclass(frozen=True)
class ProviderResult:
    """What a metric provider returns for one measurement.

    ``value`` becomes ``result`` in the conditions. A provider that judges by itself (the
    statistical judge) sets ``phase``; otherwise the metric's conditions decide. ``phase`` set
    to INCONCLUSIVE with ``value`` None is how a provider says "no data" — never SUCCESSFUL.
    ``details`` is kept with the measurement for receipts (per-version values, sample sizes).
    """

    value: Any = None
    phase: Phase | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    phase: Phase
    started_at: float
    finished_at: float
    value: Any = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**{**data, "phase": Phase(data["phase"])})


@dataclass(frozen=True)
class MetricResult:
    """Argo's counters: errors do not count towards ``count``; any non-error resets
    ``consecutive_error``."""

    name: str
    phase: Phase = Phase.PENDING
    measurements: tuple[Measurement, ...] = ()
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_failed: int = 0
    dry_run: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measurements"] = [m.to_dict() for m in self.measurements]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        return cls(
            **{
                **data,
                "phase": Phase(data["phase"]),
                "measurements": tuple(Measurement.from_dict(m) for m in data["measurements"]),
            }
        )

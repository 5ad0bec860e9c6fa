"""Data model of the statistical judge: what to judge, the raw data, and the verdicts.

Everything is a frozen dataclass. Verdicts convert to plain JSON-friendly dicts with
``to_dict`` and back with ``from_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "continue", "no-data"]
OverallVerdict = Literal["pass", "fail", "continue", "no-data", "marginal"]

CANARY = "canary"
BASELINE = "baseline"


@dataclass(frozen=True)
class JudgeMetric:
    """One metric to judge.

    ``kind``:
      - ``ratio``: errors/requests, an error being a request with status >= 500;
      - ``latency``: the ``quantile`` of request latency, or the whole distribution when
        ``quantile`` is None;
      - ``gauge``: samples of a value per version (``Sample.metric == name``), e.g. CPU.

    Tolerances (see docs/judge.md): the canary is "within tolerance" when it is at most
    ``relative_tolerance`` times the baseline, or at most ``absolute_tolerance`` worse in the
    metric's units (when both are set, the canary may use the more generous of the two).
    ``bound`` is an absolute bound on the canary alone. ``dry_run`` metrics are evaluated and
    reported but never spend alpha, never count in the score and never fail the run.
    ``alpha_weight`` is the metric's share of the run's false-abort budget relative to the
    other metrics (default 1: an equal split); it changes power, never the total guarantee.
    """

    name: str
    kind: Literal["ratio", "latency", "gauge"]
    worse: Literal["higher", "lower"] = "higher"
    quantile: float | None = 0.99
    relative_tolerance: float | None = None
    absolute_tolerance: float | None = None
    bound: float | None = None
    critical: bool = False
    group: str = "default"
    weight: float = 1.0
    min_samples: int = 50
    no_data: Literal["inconclusive", "fail", "ignore"] = "inconclusive"
    dry_run: bool = False
    alpha_weight: float = 1.0

    def __post_init__(self) -> None:
        def bad(message: str) -> ValueError:
            return ValueError(f"metric {self.name!r}: {message}")

        if self.kind not in ("ratio", "latency", "gauge"):
            raise bad(f"unknown kind {self.kind!r}")
        if self.worse not in ("higher", "lower"):
            raise bad("worse must be 'higher' or 'lower'")
        if self.quantile is not None and not 0.0 < self.quantile < 1.0:
            raise bad(f"quantile must be in (0, 1), got {self.quantile:g}")
        for attr in ("relative_tolerance", "absolute_tolerance", "bound", "weight"):
            value = getattr(self, attr)
            if value is not None and not math.isfinite(value):
                raise bad(f"{attr} must be a finite number, got {value:g}")
        if self.relative_tolerance is not None and self.relative_tolerance <= 0:
            raise bad(f"relative_tolerance must be > 0, got {self.relative_tolerance:g}")
        if self.absolute_tolerance is not None and self.absolute_tolerance < 0:
            raise bad(f"absolute_tolerance must be >= 0, got {self.absolute_tolerance:g}")
        if self.weight < 0:
            raise bad(f"weight must be >= 0, got {self.weight:g}")
        if not (self.alpha_weight > 0 and math.isfinite(self.alpha_weight)):
            raise bad(f"alpha_weight must be > 0, got {self.alpha_weight:g}")
        if self.min_samples < 1:
            raise bad(f"min_samples must be >= 1, got {self.min_samples}")
        if self.no_data not in ("inconclusive", "fail", "ignore"):
            raise bad(f"unknown no_data policy {self.no_data!r}")


@dataclass(frozen=True)
class JudgeSpec:
    """The judge's configuration.

    ``alpha`` bounds the probability of a false abort over the whole run (all metrics, all
    looks). ``bucket_seconds`` is the resolution at which traffic shares are estimated and the
    tests are evaluated; ``batch_seconds`` the batch length of the one-sample latency test
    (robustness to autocorrelation); ``gauge_bucket_seconds`` the pairing window of gauges;
    ``cap_window_seconds`` the window of the latency tests' evidence cap (a failure needs
    evidence in at least two such windows; see ``metrics.wander_caps``).
    """

    metrics: tuple[JudgeMetric, ...]
    alpha: float = 0.01
    pass_score: float = 90.0
    marginal_score: float = 60.0
    group_weights: dict[str, float] = field(default_factory=dict)
    early_pass: bool = False
    bucket_seconds: float = 1.0
    batch_seconds: float = 10.0
    gauge_bucket_seconds: float = 5.0
    cap_window_seconds: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha:g}")
        for attr in ("pass_score", "marginal_score"):
            if not 0.0 <= getattr(self, attr) <= 100.0:
                raise ValueError(f"{attr} must be from 0 to 100, got {getattr(self, attr):g}")
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score must not exceed pass_score")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        for attr in (
            "bucket_seconds",
            "batch_seconds",
            "gauge_bucket_seconds",
            "cap_window_seconds",
        ):
            if not (getattr(self, attr) > 0 and math.isfinite(getattr(self, attr))):
                raise ValueError(f"{attr} must be > 0")
        self._check_weights()

    def _check_weights(self) -> None:
        """Group weights are >= 0 and some metric counts in the score: with every weight 0 the
        score is never computed, and the run could never pass."""
        for group, weight in self.group_weights.items():
            if not (weight >= 0 and math.isfinite(weight)):
                raise ValueError(f"group_weights: {group!r} must be >= 0, got {weight:g}")
        scored: dict[str, float] = {}  # group -> its live metrics' summed weight
        for m in self.metrics:
            if not m.dry_run:
                scored[m.group] = scored.get(m.group, 0.0) + m.weight
        if scored and not any(
            w > 0 and self.group_weights.get(g, w) > 0 for g, w in scored.items()
        ):
            raise ValueError(
                "the weights sum to zero: no metric counts in the score, so the run could "
                "never pass; give a metric (and its group) a weight above 0"
            )


@dataclass(frozen=True)
class Request:
    t: float
    version: str
    latency_ms: float
    status: int


@dataclass(frozen=True)
class Sample:
    t: float
    version: str
    metric: str
    value: float


@dataclass(frozen=True)
class JudgeData:
    requests: tuple[Request, ...] = ()
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    verdict: Verdict
    critical: bool
    group: str
    canary: float | None
    baseline: float | None
    n_canary: int
    n_baseline: int
    statistic: str
    value: float | None
    threshold: float | None
    interval: tuple[float, float] | None
    reason: str
    alpha: float | None = None
    dry_run: bool = False
    no_data_policy: str = "inconclusive"
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "critical": self.critical,
            "group": self.group,
            "canary": self.canary,
            "baseline": self.baseline,
            "n_canary": self.n_canary,
            "n_baseline": self.n_baseline,
            "statistic": self.statistic,
            "value": self.value,
            "threshold": self.threshold,
            "interval": list(self.interval) if self.interval is not None else None,
            "reason": self.reason,
            "alpha": self.alpha,
            "dry_run": self.dry_run,
            "no_data_policy": self.no_data_policy,
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricVerdict:
        interval = data.get("interval")
        return cls(
            **{
                **data,
                "interval": (float(interval[0]), float(interval[1]))
                if interval is not None
                else None,
            }
        )


@dataclass(frozen=True)
class JudgeVerdict:
    verdict: OverallVerdict
    score: float | None
    metrics: tuple[MetricVerdict, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "metrics": [m.to_dict() for m in self.metrics],
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeVerdict:
        return cls(
            verdict=data["verdict"],
            score=data["score"],
            metrics=tuple(MetricVerdict.from_dict(m) for m in data["metrics"]),
            reason=data["reason"],
        )

"""coalmine's statistical judge: anytime-valid sequential comparison of canary and baseline.

See docs/judge.md for the methods and their guarantees.
"""

from .core import judge, metric_alpha
from .model import (
    JudgeData,
    JudgeMetric,
    JudgeSpec,
    JudgeVerdict,
    MetricVerdict,
    Request,
    Sample,
    Verdict,
)

__all__ = [
    "JudgeData",
    "JudgeMetric",
    "JudgeSpec",
    "JudgeVerdict",
    "MetricVerdict",
    "Request",
    "Sample",
    "Verdict",
    "judge",
    "metric_alpha",
]

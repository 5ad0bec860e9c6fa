"""From loaded files to the Plan a rollout follows, and back from a stored snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coalmine.errors import SpecError
from coalmine.rollout.state import Plan
from coalmine.slo.spec import Slo
from coalmine.spec.model import Analysis, Bundle, ServiceConfig, scale_durations


def build_plan(
    bundle: Bundle,
    rollout_name: str,
    service: ServiceConfig,
    time_scale: float = 1.0,
    *,
    rollout_class: str | None = None,
    slos: tuple[Slo, ...] = (),
    accelerate: bool = False,
) -> Plan:
    """``rollout_class`` overrides the ``coalmine.dev/class`` annotation (default feature);
    ``slos`` are the service's SLOs for the release policy."""
    from coalmine.spec.resolve import resolve_analysis

    if rollout_name not in bundle.rollouts:
        known = ", ".join(sorted(bundle.rollouts)) or "none"
        raise SpecError(f"no Rollout named {rollout_name!r} in the files (found: {known})")
    rollout = bundle.rollouts[rollout_name]
    step_metrics = {
        i: resolve_analysis(bundle, step)
        for i, step in enumerate(rollout.steps)
        if isinstance(step, Analysis)
    }
    background = resolve_analysis(bundle, rollout.background.analysis) if rollout.background else ()
    if time_scale != 1:
        rollout, scaled = scale_durations(
            rollout, {"_": _holder(step_metrics, background)}, time_scale
        )
        step_metrics, background = _unpack(scaled["_"], step_metrics, background)
    stable = rollout.annotations.get("coalmine.dev/stable-version") or service.stable.version
    return Plan(
        rollout=rollout,
        step_metrics=step_metrics,
        background_metrics=background,
        stable_version=stable or "stable",
        time_scale=time_scale,
        rollout_class=rollout_class or rollout.annotations.get("coalmine.dev/class") or "feature",
        slos=tuple(s for s in slos if s.service == rollout.service),
        accelerate=accelerate,
    )


def _holder(step_metrics: dict[int, tuple[Any, ...]], background: tuple[Any, ...]) -> Any:
    """Pack every metric into one template so scale_durations scales them in one go."""
    from coalmine.spec.model import AnalysisTemplate

    metrics = [m for i in sorted(step_metrics) for m in step_metrics[i]] + list(background)
    return AnalysisTemplate(name="_", metrics=tuple(metrics))


def _unpack(
    template: Any, step_metrics: dict[int, tuple[Any, ...]], background: tuple[Any, ...]
) -> tuple[dict[int, tuple[Any, ...]], tuple[Any, ...]]:
    metrics = list(template.metrics)
    out: dict[int, tuple[Any, ...]] = {}
    for i in sorted(step_metrics):
        n = len(step_metrics[i])
        out[i], metrics = tuple(metrics[:n]), metrics[n:]
    return out, tuple(metrics)


def snapshot(
    paths: list[str],
    service: ServiceConfig,
    environment: str,
    time_scale: float,
    *,
    slo_paths: tuple[str, ...] = (),
    rollout_class: str | None = None,
    accelerate: bool = False,
) -> dict[str, Any]:
    """What the store keeps so that a restarted controller follows exactly the same plan
    (the SLO files too: the release policy does not change under a running rollout)."""
    from dataclasses import asdict

    out: dict[str, Any] = {
        "files": {str(p): Path(p).read_text() for p in paths},
        "service": asdict(service),
        "environment": environment,
        "time_scale": time_scale,
    }
    if slo_paths:
        out["slo_files"] = {str(p): Path(p).read_text() for p in slo_paths}
    if rollout_class is not None:
        out["rollout_class"] = rollout_class
    if accelerate:
        out["accelerate"] = True
    return out

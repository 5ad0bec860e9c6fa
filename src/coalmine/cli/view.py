"""The rollout as people read it: one status document, rendered as a live Rich panel, as a
plain log line, or as JSON."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from coalmine.analysis.run import RunState
from coalmine.rollout.reconcile import _describe
from coalmine.rollout.state import Plan, RolloutState
from coalmine.store.base import Decision, RolloutRecord
from coalmine.traffic.base import Stats

PHASE_STYLE = {
    "Healthy": "bold green",
    "RolledBack": "bold red",
    "Aborted": "bold red",
    "Paused": "bold yellow",
    "Progressing": "bold cyan",
    "Promoting": "bold cyan",
    "Pending": "dim",
}


def status_document(
    record: RolloutRecord,
    decisions: list[Decision],
    stats: Stats | None,
    plan: Plan | None,
    last_decisions: int = 8,
) -> dict[str, Any]:
    state = RolloutState.from_dict(record.state)
    steps = plan.rollout.steps if plan else ()
    step_text = (
        _describe(steps[state.step_index]) if plan and state.step_index < len(steps) else "done"
    )
    doc: dict[str, Any] = {
        "name": record.name,
        "revision": record.revision,
        "phase": str(state.phase),
        "pause_reason": str(state.pause_reason) if state.pause_reason else None,
        "message": state.message,
        "step": {"index": state.step_index, "total": len(steps), "description": step_text},
        "canary_weight": state.canary_weight,
        "header_routes": [r.name for r in state.header_routes],
        "version": plan.rollout.canary_version if plan else None,
        "stable_version": plan.stable_version if plan else None,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "analysis": [_run_doc(r) for r in (state.step_run, state.background_run) if r],
        "decisions": [
            {"at": d.at, "kind": d.kind, "reason": d.reason, "step": d.step}
            for d in decisions[-last_decisions:]
        ],
    }
    if stats is not None:
        doc["traffic"] = {
            "window_s": stats.window_s,
            **{
                name: {
                    "request_rate": round(vs.request_rate, 2),
                    "error_rate": vs.error_rate,
                    "p50_ms": vs.latency_ms.get("p50"),
                    "p99_ms": vs.latency_ms.get("p99"),
                    "requests": vs.requests,
                }
                for name, vs in stats.versions.items()
            },
        }
    return doc


def _run_doc(run: RunState) -> dict[str, Any]:
    return {
        "run": run.name,
        "phase": str(run.phase),
        "message": run.message,
        "metrics": [
            {
                "name": m.name,
                "phase": str(m.phase),
                "value": m.measurements[-1].value if m.measurements else None,
                "measurements": m.count + m.error,
                "failed": m.failed,
                "inconclusive": m.inconclusive,
                "errors": m.error,
                "dry_run": m.dry_run,
                "message": m.measurements[-1].message if m.measurements else "",
            }
            for m in run.metrics
        ],
    }


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        return " ".join(f"{k}={_fmt(v, pct)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value * 100:.2f}%" if pct else f"{value:.4g}"
    return str(value)


def render(doc: dict[str, Any]) -> RenderableType:
    phase = doc["phase"]
    head = Text.assemble(
        (f"{doc['name']} ", "bold"),
        (f"rev {doc['revision']}  ", "dim"),
        (phase, PHASE_STYLE.get(phase, "")),
        (f"  {doc['stable_version']} → {doc['version']}", ""),
    )
    step = doc["step"]
    line2 = Text(
        f"step {min(step['index'] + 1, step['total'])}/{step['total']}: {step['description']}   "
        f"canary weight {doc['canary_weight']}%"
        + (f"   header routes: {', '.join(doc['header_routes'])}" if doc["header_routes"] else "")
    )
    parts: list[RenderableType] = [head, line2]
    if doc.get("message"):
        parts.append(Text(doc["message"], style="italic"))
    traffic = doc.get("traffic")
    if traffic:
        table = Table(
            title=f"traffic (last {traffic['window_s']:.0f}s)",
            title_justify="left",
            box=None,
            padding=(0, 2),
        )
        for col in ("version", "req/s", "errors", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "version" else "left")
        for name in ("stable", "canary"):
            v = traffic.get(name) or {}
            table.add_row(
                name,
                _fmt(v.get("request_rate")),
                _fmt(v.get("error_rate"), pct=True),
                _fmt(v.get("p50_ms")),
                _fmt(v.get("p99_ms")),
            )
        parts.append(table)
    for run in doc["analysis"]:
        table = Table(
            title=f"analysis {run['run']}: {run['phase']}",
            title_justify="left",
            box=None,
            padding=(0, 2),
        )
        for col in ("metric", "phase", "last result", "n", "failed", "inconcl."):
            table.add_column(col)
        for m in run["metrics"]:
            style = {
                "Failed": "red",
                "Error": "red",
                "Inconclusive": "yellow",
                "Successful": "green",
            }.get(m["phase"], "")
            table.add_row(
                m["name"] + (" (dry run)" if m["dry_run"] else ""),
                Text(m["phase"], style=style),
                _fmt(m["value"]),
                str(m["measurements"]),
                str(m["failed"]),
                str(m["inconclusive"]),
            )
        parts.append(table)
    if doc["decisions"]:
        table = Table(title="decisions", title_justify="left", box=None, padding=(0, 2))
        table.add_column("time")
        table.add_column("decision")
        table.add_column("reason", overflow="fold")
        for d in doc["decisions"]:
            table.add_row(
                time.strftime("%H:%M:%S", time.localtime(d["at"])), d["kind"], d["reason"]
            )
        parts.append(table)
    return Panel(Group(*parts), title="coalmine", border_style=PHASE_STYLE.get(phase, "white"))


def plain_line(doc: dict[str, Any]) -> str:
    """One line for logs and CI."""
    t = doc.get("traffic") or {}
    c, s = t.get("canary") or {}, t.get("stable") or {}
    step = doc["step"]
    return (
        f"{time.strftime('%H:%M:%S')} {doc['name']} {doc['phase']} "
        f"step={min(step['index'] + 1, step['total'])}/{step['total']} "
        f"weight={doc['canary_weight']}% "
        f"stable[rps={_fmt(s.get('request_rate'))} err={_fmt(s.get('error_rate'), True)} "
        f"p99={_fmt(s.get('p99_ms'))}] "
        f"canary[rps={_fmt(c.get('request_rate'))} err={_fmt(c.get('error_rate'), True)} "
        f"p99={_fmt(c.get('p99_ms'))}]"
    )

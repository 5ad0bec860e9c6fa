"""Probe results and scheduler state in the state database (tables from migration 0002; the
``slo`` column from 0004).

``probe_runs`` keeps one row per flow run: the columns the judge and the SLO engine filter on
(``slo`` is the SLO the flow is bound to, NULL for runs stored before 0004 or of unbound
flows), plus the whole (already redacted) :class:`FlowResult` as JSON. ``probe_schedule`` keeps the
next slot of every scheduled target so that ``probes serve`` resumes after a crash.

The score of a run (the judge's ``query: score``) is the share of the flow's journey that
worked: steps whose final attempt passed ÷ steps of the flow, ``finally`` steps excluded
(they are clean-up, not the journey) and skipped steps counted as not passed. Unlike a ratio
of passed assertions it also degrades when a step fails before any assertion is evaluated
(connection refused, timeout). A run without journey steps scores 1 on success, else 0.
A version's score over a window is the mean of its runs' scores.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from coalmine.metrics.probe import ProbeQuery, ProbeSummary
from coalmine.metrics.router import quantile_key
from coalmine.probes.model import (
    AssertionResult,
    Attempt,
    FlowResult,
    StepResult,
    Timing,
)
from coalmine.store.sql import SqlStore, metadata
from coalmine.traffic.window import quantile

SUMMARY_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

probe_runs = sa.Table(
    "probe_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(253), nullable=False),
    sa.Column("service", sa.String(253), nullable=False),
    sa.Column("environment", sa.String(253), nullable=False),
    sa.Column("location", sa.String(253), nullable=False),
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("scheduled_at", sa.Double, nullable=True),
    sa.Column("duration_s", sa.Double, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("first_attempt_success", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("failed_step", sa.String(253), nullable=True),
    sa.Column("score", sa.Double, nullable=False),
    sa.Column("result", _json, nullable=False),
    sa.Column("slo", sa.String(253), nullable=True),
    sa.Index(None, "service", "version", "started_at"),
    sa.Index(None, "flow", "started_at"),
    sa.Index(None, "started_at"),
    sa.Index(None, "slo", "started_at"),
)

probe_schedule = sa.Table(
    "probe_schedule",
    metadata,
    sa.Column("flow", sa.String(253), primary_key=True),
    sa.Column("environment", sa.String(253), primary_key=True),
    sa.Column("location", sa.String(253), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),  # "" when unpinned
    sa.Column("interval_s", sa.Double, nullable=False),
    sa.Column("next_due", sa.Double, nullable=False),
    sa.Column("last_started_at", sa.Double, nullable=True),
)


# --------------------------------------------------------------------------- results as JSON


def result_to_dict(result: FlowResult) -> dict[str, Any]:
    """The JSON form of a result (stored, ``/results``, JSON-lines sinks). Steps also carry
    ``passed`` / ``first_passed`` so that readers need not recompute them."""
    data = dataclasses.asdict(result)
    for step_dict, step in zip(data["steps"], result.steps, strict=True):
        step_dict["passed"] = step.passed
        step_dict["first_passed"] = step.first_passed
    data["steps"] = list(data["steps"])
    for step_dict in data["steps"]:
        step_dict["attempts"] = list(step_dict["attempts"])
        for attempt in step_dict["attempts"]:
            attempt["assertions"] = list(attempt["assertions"])
    return data


def result_from_dict(data: dict[str, Any]) -> FlowResult:
    """Inverse of :func:`result_to_dict` (extra keys are ignored)."""
    steps = tuple(
        StepResult(
            name=s["name"],
            method=s["method"],
            url=s["url"],
            attempts=tuple(
                Attempt(
                    started_at=a["started_at"],
                    duration_s=a["duration_s"],
                    status=a["status"],
                    timing=Timing(**a["timing"]),
                    assertions=tuple(AssertionResult(**x) for x in a.get("assertions", ())),
                    error=a.get("error", ""),
                    reason=a.get("reason", ""),
                    passed=a.get("passed", False),
                )
                for a in s["attempts"]
            ),
            allow_failure=s.get("allow_failure", False),
            is_finally=s.get("is_finally", False),
            skipped=s.get("skipped", False),
        )
        for s in data.get("steps", ())
    )
    return FlowResult(
        flow=data["flow"],
        service=data["service"],
        environment=data["environment"],
        location=data["location"],
        version=data.get("version"),
        started_at=data["started_at"],
        duration_s=data["duration_s"],
        steps=steps,
        success=data["success"],
        first_attempt_success=data["first_attempt_success"],
        reason=data.get("reason", ""),
        failed_step=data.get("failed_step"),
        scheduled_at=data.get("scheduled_at"),
        error=data.get("error", ""),
        slo=data.get("slo"),
    )


def run_score(result: FlowResult) -> float:
    """Share of the journey's steps (not ``finally``) whose final attempt passed."""
    journey = [s for s in result.steps if not s.is_finally]
    if not journey:
        return 1.0 if result.success else 0.0
    return sum(1 for s in journey if s.passed and not s.skipped) / len(journey)


# --------------------------------------------------------------------------- schedule state


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """Where one target's schedule stands: ``next_due`` is the next slot of its grid (the run
    starts up to ``jitter`` after it)."""

    flow: str
    environment: str
    location: str
    version: str | None
    interval_s: float
    next_due: float
    last_started_at: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.flow, self.environment, self.location, self.version or "")


# --------------------------------------------------------------------------- the store


class ProbeStore:
    """Probe tables on a migrated :class:`SqlStore` (``open_store`` runs migration 0002).

    Methods are synchronous, one short transaction each; async callers use
    ``asyncio.to_thread``. Database failures are :class:`coalmine.errors.StoreError`.
    """

    def __init__(self, store: SqlStore) -> None:
        self.sql = store

    # results

    def record(self, result: FlowResult) -> int:
        """Store one run; returns its id."""
        return self.record_many([result])[0]

    def record_many(self, results: Sequence[FlowResult]) -> list[int]:
        if not results:
            return []
        ids: list[int] = []
        with self.sql._tx(f"record {len(results)} probe run(s)", write=True) as conn:
            for result in results:
                new_id: int = conn.execute(
                    sa.insert(probe_runs).values(**_run_row(result)).returning(probe_runs.c.id)
                ).scalar_one()
                ids.append(int(new_id))
        return ids

    def recent(self, flow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest results (JSON form), newest first."""
        stmt = sa.select(probe_runs.c.result).order_by(
            probe_runs.c.started_at.desc(), probe_runs.c.id.desc()
        )
        if flow is not None:
            stmt = stmt.where(probe_runs.c.flow == flow)
        stmt = stmt.limit(max(0, limit))
        with self.sql._tx("read recent probe results") as conn:
            return [dict(row.result) for row in conn.execute(stmt)]

    def summary(
        self, query: ProbeQuery, quantiles: Iterable[float] = SUMMARY_QUANTILES
    ) -> ProbeSummary | None:
        """What the runs the query covers saw; None when there were none. Latency is the flow
        duration of every run, failed ones included (a timing-out canary must look slow, not
        absent)."""
        c = probe_runs.c
        stmt = sa.select(c.duration_s, c.success, c.score).where(
            c.service == query.service,
            c.environment == query.environment,
            c.version == query.version,
            c.started_at >= query.since,
            c.started_at <= query.until,
        )
        if query.flow is not None:
            stmt = stmt.where(c.flow == query.flow)
        with self.sql._tx(f"read the probe runs of {query.service}") as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return None
        runs = len(rows)
        successes = sum(1 for r in rows if r.success)
        durations_ms = sorted(float(r.duration_s) * 1000.0 for r in rows)
        return ProbeSummary(
            runs=runs,
            successes=successes,
            success_ratio=successes / runs,
            score=sum(float(r.score) for r in rows) / runs,
            latency_ms={quantile_key(q): quantile(durations_ms, q) for q in quantiles},
        )

    def prune(self, before: float) -> int:
        """Delete runs that started before ``before``; returns how many."""
        with self.sql._tx("prune old probe runs", write=True) as conn:
            deleted = conn.execute(sa.delete(probe_runs).where(probe_runs.c.started_at < before))
        return int(deleted.rowcount or 0)

    # scheduler state

    def schedule_states(self) -> dict[tuple[str, str, str, str], ScheduleState]:
        with self.sql._tx("read the probe schedule") as conn:
            rows = conn.execute(sa.select(probe_schedule)).all()
        states = [
            ScheduleState(
                flow=r.flow,
                environment=r.environment,
                location=r.location,
                version=r.version or None,
                interval_s=r.interval_s,
                next_due=r.next_due,
                last_started_at=r.last_started_at,
            )
            for r in rows
        ]
        return {s.key: s for s in states}

    def put_schedule(self, states: Iterable[ScheduleState]) -> None:
        rows = [
            {
                "flow": s.flow,
                "environment": s.environment,
                "location": s.location,
                "version": s.version or "",
                "interval_s": s.interval_s,
                "next_due": s.next_due,
                "last_started_at": s.last_started_at,
            }
            for s in states
        ]
        if not rows:
            return
        with self.sql._tx("save the probe schedule", write=True) as conn:
            insert: Any = (
                postgresql.insert(probe_schedule)
                if conn.dialect.name == "postgresql"
                else sqlite.insert(probe_schedule)
            )
            stmt = insert.on_conflict_do_update(
                index_elements=[
                    probe_schedule.c.flow,
                    probe_schedule.c.environment,
                    probe_schedule.c.location,
                    probe_schedule.c.version,
                ],
                set_={
                    "interval_s": insert.excluded.interval_s,
                    "next_due": insert.excluded.next_due,
                    "last_started_at": insert.excluded.last_started_at,
                },
            )
            conn.execute(stmt, rows)


def _run_row(result: FlowResult) -> dict[str, Any]:
    return {
        "flow": result.flow,
        "service": result.service,
        "environment": result.environment,
        "location": result.location,
        "version": result.version,
        "started_at": result.started_at,
        "scheduled_at": result.scheduled_at,
        "duration_s": result.duration_s,
        "success": result.success,
        "first_attempt_success": result.first_attempt_success,
        "reason": result.reason,
        "failed_step": result.failed_step,
        "score": run_score(result),
        "result": result_to_dict(result),
        "slo": result.slo,
    }


# --------------------------------------------------------------------------- for the judge


class StoreProbeResults:
    """The ``ProbeResults`` the ``coalmine/probe`` provider reads, over ``probe_runs``."""

    def __init__(self, store: ProbeStore, quantiles: Iterable[float] = SUMMARY_QUANTILES) -> None:
        self.store = store
        self.quantiles = tuple(quantiles)

    async def summary(self, query: ProbeQuery) -> ProbeSummary | None:
        return await asyncio.to_thread(self.store.summary, query, self.quantiles)

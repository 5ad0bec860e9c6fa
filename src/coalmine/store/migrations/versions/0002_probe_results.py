"""Synthetic probe results and the probe scheduler's state.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-15

``probe_runs`` holds one row per flow run (the redacted result as JSON plus the columns the judge
and the SLO engine filter on); ``probe_schedule`` holds the next slot of every scheduled target
so that ``coalmine probes serve`` resumes after a crash without a burst of catch-up runs.
Spelled out here (not imported from ``coalmine.probes.store``), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "probe_runs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_probe_runs"),
    )
    op.create_index(
        "ix_probe_runs_service_version_started_at",
        "probe_runs",
        ["service", "version", "started_at"],
    )
    op.create_index("ix_probe_runs_flow_started_at", "probe_runs", ["flow", "started_at"])
    op.create_index("ix_probe_runs_started_at", "probe_runs", ["started_at"])
    op.create_table(
        "probe_schedule",
        sa.Column("flow", sa.String(253), nullable=False),
        sa.Column("environment", sa.String(253), nullable=False),
        sa.Column("location", sa.String(253), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),  # "" when unpinned
        sa.Column("interval_s", sa.Double, nullable=False),
        sa.Column("next_due", sa.Double, nullable=False),
        sa.Column("last_started_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint(
            "flow", "environment", "location", "version", name="pk_probe_schedule"
        ),
    )


def downgrade() -> None:
    op.drop_table("probe_schedule")
    op.drop_index("ix_probe_runs_started_at", table_name="probe_runs")
    op.drop_index("ix_probe_runs_flow_started_at", table_name="probe_runs")
    op.drop_index("ix_probe_runs_service_version_started_at", table_name="probe_runs")
    op.drop_table("probe_runs")
